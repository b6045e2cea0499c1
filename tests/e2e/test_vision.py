"""Images through --mmproj (tiny random projector + llama): OpenAI and Anthropic shapes, cache."""

from __future__ import annotations

import base64
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from conftest import Server, module_server, shared_model


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """tools/mtmd/test-1.jpeg from the pinned llama-cpp-python sdist: a real photo."""
    sdist = Path(os.environ.get("CHIMERA_CACHE", Path.home() / ".cache" / "chimera")) / "sdist" / "llama_cpp_python-0.3.36.tar.gz"
    if not sdist.exists():
        pytest.skip("the llama-cpp-python sdist is not in the wheel cache")
    with tarfile.open(sdist) as tar:
        member = tar.getmember("llama_cpp_python-0.3.36/vendor/llama.cpp/tools/mtmd/test-1.jpeg")
        data = tar.extractfile(member)
        assert data is not None
        return data.read()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from module_server("-m", str(shared_model("tiny-random-llama-spm.gguf")),
                             "--mmproj", str(shared_model("tiny-random-mmproj-64.gguf")), "-c", "4096")


def _msgs(jpeg: bytes) -> list:
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    return [{"role": "user", "content": [{"type": "text", "text": "Describe:"}, {"type": "image_url", "image_url": {"url": url}}]}]


def test_image_in_chat(server: Server, jpeg: bytes) -> None:
    client = server.client()
    text_only = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Describe:"}], max_tokens=4)
    r = client.chat.completions.create(model="m", messages=_msgs(jpeg), max_tokens=6, temperature=0, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 6 and isinstance(r.choices[0].message.content, str)
    image_tokens = r.usage.prompt_tokens_details.image_tokens
    assert image_tokens and image_tokens > 0
    assert r.usage.prompt_tokens >= text_only.usage.prompt_tokens + image_tokens - 2
    again = client.chat.completions.create(model="m", messages=_msgs(jpeg), max_tokens=6, temperature=0, extra_body={"ignore_eos": True})
    assert again.usage.prompt_tokens_details.cached_tokens >= r.usage.prompt_tokens - 1, "the image is reused from the cache"
    stream = client.chat.completions.create(model="m", messages=_msgs(jpeg), max_tokens=6, temperature=0, stream=True,
                                            extra_body={"ignore_eos": True})
    assert sum(1 for c in stream if c.choices and c.choices[0].delta.content is not None) >= 1


def test_models_and_props_report_vision(server: Server) -> None:
    assert "vision" in server.client().models.list().data[0].model_extra["capabilities"]
    assert httpx.get(server.base + "/props").json()["modalities"] == {"vision": True, "audio": False}
    for path in ("/models", "/v1/models"):  # llama-server's own list beside OpenAI's data
        listed = server.http().get(path).json()["models"][0]
        assert {"completion", "multimodal"} <= set(listed["capabilities"]) and listed["model"] == listed["name"]


def test_bad_media_is_400(server: Server) -> None:
    client = server.client()
    for url, needle in (("http://example.com/cat.png", "--allow-remote-media"),
                        ("file://cat.jpg", "--media-path"),
                        ("data:image/png;base64,aGVsbG8=", "could not be decoded"),
                        ("data:image/png;base64,!!!", "base64")):
        with pytest.raises(openai.BadRequestError) as exc:
            client.chat.completions.create(model="m", max_tokens=2, messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "x"}]}])
        assert needle in exc.value.message
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="m", max_tokens=2, messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, {"type": "text", "text": "x"}]}])
    assert "does not read audio" in exc.value.message


def test_anthropic_image_block(server: Server, jpeg: bytes) -> None:
    claude = anthropic.Anthropic(base_url=server.base, api_key="none", max_retries=0, _strict_response_validation=True)
    msgs = [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": base64.b64encode(jpeg).decode()}},
        {"type": "text", "text": "What is this?"}]}]
    m = claude.messages.create(model="m", max_tokens=4, messages=msgs)
    counted = claude.messages.count_tokens(model="m", messages=msgs)
    assert m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0) == counted.input_tokens > 16
    # an image inside a tool_result reaches the projector too (not only text is read there)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": base64.b64encode(jpeg).decode()}}
    turns = [{"role": "user", "content": "Read the file"},
             {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {"file": "a.jpg"}}]}]
    sizes = []
    for result in ([{"type": "text", "text": "File: a.jpg"}], [{"type": "text", "text": "File: a.jpg"}, image]):
        history = turns + [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": result}]}]
        sizes.append(claude.messages.count_tokens(model="m", messages=history).input_tokens)  # type: ignore[arg-type]
        claude.messages.create(model="m", max_tokens=2, messages=history)  # type: ignore[arg-type]
    assert sizes[1] > sizes[0] + 16


def test_remote_media_when_allowed(start_server: type[Server], jpeg: bytes, tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    (tmp_path / "cat.jpg").write_bytes(jpeg)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        s = start_server("-m", str(shared_model("tiny-random-llama-spm.gguf")),
                         "--mmproj", str(shared_model("tiny-random-mmproj-64.gguf")), "--allow-remote-media").wait_ready()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/cat.jpg"
        r = s.client().chat.completions.create(model="m", max_tokens=2, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "x"}]}])
        assert r.usage.prompt_tokens_details.image_tokens > 0
    finally:
        httpd.shutdown()


def test_local_media_under_media_path(start_server: type[Server], jpeg: bytes, tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "pets").mkdir(parents=True)
    (media / "pets" / "cat.jpg").write_bytes(jpeg)
    (tmp_path / "secret.jpg").write_bytes(jpeg)  # beside the folder, not in it
    (media / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    s = start_server("-m", str(shared_model("tiny-random-llama-spm.gguf")),
                     "--mmproj", str(shared_model("tiny-random-mmproj-64.gguf")), "--media-path", str(media)).wait_ready()

    def ask(url: str) -> httpx.Response:
        return s.http().post("/v1/chat/completions", json={"max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": url}}]}]})

    for url in ("file://pets/cat.jpg", "file:////pets//./cat.jpg"):
        r = ask(url)
        assert r.status_code == 200 and r.json()["usage"]["prompt_tokens_details"]["image_tokens"] > 0, r.text
    for url, needle in (("file://../secret.jpg", "not allowed"), ("file://pets/../../secret.jpg", "not allowed"),
                        ("file://link.jpg", "not allowed"), ("file://pets/dog.jpg", "does not exist"),
                        ("file://", "not allowed")):
        r = ask(url)
        assert r.status_code == 400 and needle in r.json()["error"]["message"], (url, r.text)
        assert r.json()["error"]["param"] == "messages.0.content.1.image_url.url", r.text


def test_media_path_must_be_a_folder(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import REPO

    r = subprocess.run([sys.executable, "-m", "chimera", "serve", "-m", str(shared_model("tiny-random-llama-spm.gguf")),
                        "--media-path", str(tmp_path / "nowhere"), "--port", "0"], capture_output=True, text=True,
                       timeout=60, cwd=REPO)
    assert r.returncode == 2 and "not a directory" in r.stderr, r.stderr


def test_slow_remote_media_does_not_stall_the_server(start_server: type[Server], jpeg: bytes) -> None:
    """A remote image that takes 3 s to arrive must not stop the server meanwhile (the fetch
    blocked the event loop, so every stream and request waited for it)."""
    import http.server
    import threading
    import time

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            time.sleep(3)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(jpeg)))
            self.end_headers()
            self.wfile.write(jpeg)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        s = start_server("-m", str(shared_model("tiny-random-llama-spm.gguf")), "-np", "2",
                         "--mmproj", str(shared_model("tiny-random-mmproj-64.gguf")), "--allow-remote-media").wait_ready()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/cat.jpg"
        fetched: dict[str, object] = {}

        def remote() -> None:
            fetched["r"] = s.client().chat.completions.create(model="m", max_tokens=2, messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "x"}]}])

        t = threading.Thread(target=remote)
        t.start()
        time.sleep(0.7)  # the fetch is under way
        started = time.monotonic()
        r = httpx.post(s.base + "/v1/completions", json={"prompt": "Once", "max_tokens": 8}, timeout=30)
        took = time.monotonic() - started
        t.join(30)
        assert r.status_code == 200 and took < 1.5, f"a completion took {took:.1f} s while an image was fetched"
        assert fetched["r"].usage.prompt_tokens_details.image_tokens > 0  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
