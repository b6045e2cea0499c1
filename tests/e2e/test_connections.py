"""What a connection carries, tried with raw sockets against a real server: Connection: close,
HTTP/1.0, pipelining, stalled headers, many idle keep-alive connections, early answers to
large or refused bodies, and a client that leaves in the middle of a stream."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Server, module_server


@pytest.fixture(scope="module")
def server(smollm: Path) -> Iterator[Server]:
    yield from module_server("-m", str(smollm), "-np", "2", "-c", "4096", "--max-body-size", "65536",
                             "--keep-alive-timeout", "5")


def _raw(server: Server, data: bytes, timeout: float = 10.0) -> tuple[bytes, float]:
    """Send `data` on a fresh socket and read until the server closes it: (bytes, seconds)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        started = time.monotonic()
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out, time.monotonic() - started
            out += chunk


def test_connection_close_is_honoured(server: Server) -> None:
    out, took = _raw(server, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and b'"ok"' in out
    assert took < 2, f"the server kept the connection open {took:.1f} s after answering"


def test_http_1_0_gets_an_answer_and_eof(server: Server) -> None:
    out, took = _raw(server, b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.") and b" 200 " in out.split(b"\r\n")[0] + b" "
    assert took < 2


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    body = json.dumps({"content": "hello world"}).encode()
    reqs = (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            + b"POST /tokenize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
            + b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    out, _ = _raw(server, reqs)
    assert out.count(b"HTTP/1.1 200") == 3
    first, second, third = out.index(b'"status"'), out.index(b'"tokens"'), out.index(b'"object"')
    assert first < second < third


def test_stalled_headers_are_cut_off(server: Server) -> None:
    """A client that sends half its headers and stops is closed after --keep-alive-timeout (5 s),
    and other clients are served meanwhile."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0")
        started = time.monotonic()
        assert httpx.get(server.base + "/health", timeout=5).status_code == 200
        assert s.recv(1024) == b""
        took = time.monotonic() - started
    assert 4 < took < 15, took


def test_many_idle_keep_alive_connections(server: Server) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    idle = []
    try:
        for _ in range(500):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            idle.append(s)
            s.sendall(request)
        for s in idle:  # every one answered
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        r = httpx.post(server.base + "/tokenize", json={"content": "still answering"}, timeout=10)
        assert r.status_code == 200 and r.json()["tokens"]
    finally:
        for s in idle:
            s.close()


def test_body_over_the_limit_gets_413_not_a_hang(server: Server) -> None:
    with httpx.Client(base_url=server.base, timeout=httpx.Timeout(10.0)) as c:
        r = c.post("/v1/chat/completions", content=b"x" * 200_000, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
        # the same kept-alive client goes on working
        assert c.post("/tokenize", json={"content": "after"}).status_code == 200


def test_body_far_over_the_limit_is_answered_and_closed(server: Server) -> None:
    """A body larger than what the server will drain gets the 413 with Connection: close."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000000000000\r\n\r\n" + b"x" * 1000)
        out = b""
        while b"\r\n\r\n" not in out:
            out += s.recv(4096)
        head = out.split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 413") and b"connection: close" in head


def test_socket_closed_mid_stream_frees_the_slot(server: Server) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "Tell me a very long story."}], "stream": True,
                       "max_tokens": 2000, "ignore_eos": True}).encode()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    got = b""
    while got.count(b"data: ") < 5:
        got += s.recv(4096)
    assert any(x["is_processing"] for x in httpx.get(server.base + "/slots").json())
    s.close()
    deadline = time.monotonic() + 10
    while any(x["is_processing"] for x in httpx.get(server.base + "/slots").json()):
        assert time.monotonic() < deadline, "the slot of a disconnected client was not freed"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def keyed(smollm: Path, whisper_model: Path) -> Iterator[Server]:
    yield from module_server("-m", str(smollm), "--api-key", "sekret", "--whisper-model", str(whisper_model),
                             api_key="wrong")


def test_refused_uploads_on_one_kept_alive_client(keyed: Server, whisper_model: Path) -> None:
    """401s answered before a multipart body was read leave the connection usable."""
    audio = (whisper_model.parent / "jfk.wav").read_bytes()
    with httpx.Client(base_url=keyed.base, timeout=httpx.Timeout(10.0)) as c:
        for route in ("/v1/audio/transcriptions", "/v1/audio/translations", "/v1/images/edits",
                      "/v1/images/variations", "/v1/audio/transcriptions"):
            r = c.post(route, files={"file": ("a.wav", audio)}, data={"model": "whisper-1"})
            assert r.status_code == 401, (route, r.text)
        ok = c.post("/v1/audio/transcriptions", files={"file": ("a.wav", audio)},
                    headers={"Authorization": "Bearer sekret"})
        assert ok.status_code == 200 and "country" in ok.json()["text"].lower()


def test_body_over_the_default_limit_gets_413(keyed: Server) -> None:
    """110 MB against the default --max-body-size of 100 MB: the 413 arrives (the body is
    drained), not a write timeout."""
    with httpx.Client(base_url=keyed.base, timeout=httpx.Timeout(20.0), headers={"Authorization": "Bearer sekret"}) as c:
        r = c.post("/v1/chat/completions", content=b"x" * (110 * 1024 * 1024), headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert c.post("/tokenize", json={"content": "after"}).status_code == 200


def test_idle_keep_alive_connection_is_closed_after_the_timeout(server: Server) -> None:
    """After a kept-alive exchange the idle timer runs again (it was lost when the end of the
    response was cancelled, so idle connections stayed open for ever)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        for _ in range(3):
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            got = b""
            while not got.endswith(b'"ok"}'):  # headers and body may come in separate reads
                got += s.recv(4096)
            assert got.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert s.recv(4096) == b""
        assert time.monotonic() - started < 12
