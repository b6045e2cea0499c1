"""/cors-proxy (--ui-mcp-proxy): off by default, forwards only the headers the caller names, streams
the answer back; against local HTTP servers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from conftest import Server, module_server, shared_model

KEY = "sk-proxy-test"


class Target(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def do_GET(self) -> None:  # noqa: N802
        Target.seen.append({"method": "GET", "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        if self.path.startswith("/events"):  # three events, 0.3 s apart: must arrive as they come
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Mcp-Session-Id", "s-1")
            self.end_headers()
            for i in range(3):
                self.wfile.write(f"data: {i}\n\n".encode())
                self.wfile.flush()
                time.sleep(0.3)
            return
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "target=secret")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("Content-Length", "0"))
        Target.seen.append({"method": "POST", "body": self.rfile.read(n)})
        self.send_response(204 if self.path == "/empty" else 201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Target)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from module_server("-m", str(shared_model("tiny-random-llama-spm.gguf")), "--ui-mcp-proxy", "--api-key", KEY,
                             api_key=KEY)


def test_only_the_named_headers_travel(server: Server, target: str) -> None:
    Target.seen.clear()
    r = httpx.get(server.base + "/cors-proxy", params={"url": target + "/capture?x=1"}, headers={
        "Authorization": f"Bearer {KEY}", "X-Api-Key": KEY, "Cookie": "session=secret", "Proxy-Authorization": "Basic s",
        "X-Llama-Server-Proxy-Header-Accept": "application/json",
        "x-llama-server-proxy-header-authorization": "Bearer for-the-target"})
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert "set-cookie" not in r.headers  # the target's cookies are not set on this server's origin
    seen = Target.seen[-1]
    assert seen["path"] == "/capture?x=1"
    assert seen["headers"]["accept"] == "application/json" and seen["headers"]["authorization"] == "Bearer for-the-target"
    assert not {"cookie", "x-api-key", "proxy-authorization"} & set(seen["headers"])


def test_post_body_and_no_content(server: Server, target: str) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    r = httpx.post(server.base + "/cors-proxy", params={"url": target + "/rpc"}, content=b'{"jsonrpc": "2.0"}', headers=auth)
    assert r.status_code == 201 and Target.seen[-1]["body"] == b'{"jsonrpc": "2.0"}'
    r = httpx.post(server.base + "/cors-proxy", params={"url": target + "/empty"}, json={}, headers=auth)
    assert r.status_code == 204 and r.content == b""


def test_an_event_stream_arrives_as_it_is_sent(server: Server, target: str) -> None:
    arrivals = []
    with httpx.stream("GET", server.base + "/cors-proxy", params={"url": target + "/events"},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as r:
        assert r.headers["content-type"] == "text/event-stream" and r.headers["mcp-session-id"] == "s-1"
        for line in r.iter_lines():
            if line.startswith("data:"):
                arrivals.append((line, time.monotonic()))
    assert [a for a, _ in arrivals] == ["data: 0", "data: 1", "data: 2"]
    assert arrivals[-1][1] - arrivals[0][1] > 0.4, "relayed as it came, not buffered to the end"


@pytest.mark.parametrize("url,status,needle", [
    (None, 400, "?url="),
    ("ftp://127.0.0.1/x", 400, "scheme"),
    ("http://user:pw@127.0.0.1/", 400, "authentication"),
    ("http:///nohost", 400, "missing host"),
    ("http://127.0.0.1:9/", 502, "failed"),  # nothing listens on the discard port
])
def test_bad_targets(server: Server, url: str | None, status: int, needle: str) -> None:
    r = httpx.get(server.base + "/cors-proxy", params={"url": url} if url else {}, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == status and needle in r.json()["error"]["message"], r.text


def test_behind_the_api_key_and_off_by_default(server: Server, start_server: type[Server], target: str) -> None:
    assert httpx.get(server.base + "/cors-proxy", params={"url": target}).status_code == 401
    off = start_server("-m", str(shared_model("tiny-random-llama-spm.gguf"))).wait_ready()
    r = httpx.get(off.base + "/cors-proxy", params={"url": target})
    assert r.status_code == 403 and "--ui-mcp-proxy" in r.json()["error"]["message"]
    again = start_server("-m", str(shared_model("tiny-random-llama-spm.gguf")), "--ui-mcp-proxy", "--no-ui-mcp-proxy").wait_ready()
    assert httpx.get(again.base + "/cors-proxy", params={"url": target}).status_code == 403
