"""Start-up, readiness and graceful shutdown of a real server process."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path

import httpx

from conftest import Server


def test_shutdown_route_answers_202_then_exits_0(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm)).wait_ready()
    r = httpx.post(s.base + "/v1/chimera/shutdown")
    assert r.status_code == 202
    assert s.proc.wait(30) == 0


def test_sigterm_lets_in_flight_request_finish(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm), "--shutdown-timeout", "60").wait_ready()
    client = s.client()
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Tell me a long story."}],
        max_tokens=150, temperature=0, stream=True, stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = iter(stream)
    first = next(chunks)
    assert first.choices[0].delta.role == "assistant"
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # a new connection is refused while the old one drains
    try:
        httpx.get(s.base + "/health", timeout=2)
        refused = False
    except httpx.HTTPError:
        refused = True
    rest = list(chunks)
    finish = [c.choices[0].finish_reason for c in rest if c.choices and c.choices[0].finish_reason]
    usage = [c.usage for c in rest if c.usage]
    assert finish == ["length"]
    assert usage[-1].completion_tokens == 150
    assert refused, "the listener must stop accepting once shutdown starts"
    assert s.proc.wait(30) == 0


def test_sigterm_with_an_idle_connection_finishes_the_stream_and_exits(start_server: type[Server], smollm: Path) -> None:
    """Default grace period, two slots: an idle kept-alive connection is closed at once on
    SIGTERM, the stream in flight finishes with 'length', and the process exits right after it
    (an idle connection whose timer was lost held the exit to the end of the grace period)."""
    s = start_server("-m", str(smollm), "-np", "2", "-c", "2048").wait_ready()
    idle = httpx.Client(base_url=s.base, timeout=30)
    assert idle.get("/health").status_code == 200  # leaves one kept-alive connection
    client = s.client()
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Tell me a long story."}],
        max_tokens=120, stream=True, extra_body={"ignore_eos": True})
    chunks = iter(stream)
    next(chunks)
    s.proc.send_signal(signal.SIGTERM)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    ended = time.monotonic()
    assert finish == ["length"]
    assert s.proc.wait(30) == 0
    assert time.monotonic() - ended < 3, "the exit waited for the idle connection"
    idle.close()


def test_shutdown_timeout_cancels_stragglers(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm), "--shutdown-timeout", "0.5", "-np", "1", "-c", "2048").wait_ready()
    got: dict[str, object] = {}

    def long_request() -> None:
        try:
            with httpx.stream("POST", s.base + "/v1/completions", timeout=60,
                              json={"prompt": "Once", "max_tokens": 2000, "ignore_eos": True, "stream": True}) as r:
                assert r.status_code == 200
                lines = [line for line in r.iter_lines() if line.startswith("data: ")]
                got["lines"] = len(lines)
                got["last"] = lines[-2:]
        except httpx.HTTPError as e:
            got["error"] = e

    t = threading.Thread(target=long_request)
    t.start()
    time.sleep(1.0)
    started = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(30) == 0
    assert time.monotonic() - started < 6, "stragglers are cancelled after --shutdown-timeout"
    t.join(30)
    assert 0 < int(got.get("lines", 0)) < 2000, got  # type: ignore[call-overload]
    error_event, done = got["last"]  # type: ignore[misc]
    assert "shutting down" in error_event and done == "data: [DONE]"


def test_sigterm_right_after_clients_leave_exits_cleanly(start_server: type[Server], smollm: Path) -> None:
    """Clients drop their streams and SIGTERM follows at once: the engine thread is still inside a
    decode when the server winds down, and the process must wait for it rather than exit under it
    (which died with SIGSEGV)."""
    for _ in range(3):
        s = start_server("-m", str(smollm), "-np", "4", "-c", "4096").wait_ready()
        readers = []  # an abandoned line iterator would close its connection early
        with httpx.Client(base_url=s.base, timeout=60) as http, contextlib.ExitStack() as streams:
            for i in range(3):
                r = streams.enter_context(http.stream("POST", "/v1/chat/completions", json={
                    "messages": [{"role": "user", "content": f"Story {i}"}], "max_tokens": 900,
                    "ignore_eos": True, "stream": True}))
                readers.append(r.iter_lines())
                for line in readers[-1]:
                    if '"content":"' in line and '"content":""' not in line:
                        break
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(30) == 0


def test_second_sigint_exits_at_once(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm), "--shutdown-timeout", "120", "-np", "1", "-c", "2048").wait_ready()

    def long_request() -> None:
        try:
            httpx.post(s.base + "/v1/completions", timeout=60,
                       json={"prompt": "Once", "max_tokens": 2000, "ignore_eos": True})
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=long_request)
    t.start()
    time.sleep(1.0)
    s.proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert s.proc.poll() is None, "the first SIGINT waits for the in-flight request"
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(10) == 130
    t.join(30)


def test_health_reports_loading_then_ok(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm))
    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            r = httpx.get(s.base + "/health", timeout=2)
        except httpx.HTTPError:
            time.sleep(0.02)
            continue
        seen.add((r.status_code, r.json()["status"]))
        if r.status_code == 200:
            break
        time.sleep(0.01)
    assert (200, "ok") in seen
    assert all(code == 503 and status == "loading" for code, status in seen - {(200, "ok")})


def test_bad_model_path_exits_2(start_server: type[Server]) -> None:
    s = start_server("-m", "/nonexistent/model.gguf")
    assert s.proc.wait(30) == 2
    assert "no such file" in s.output()


def test_not_a_model_reports_error_on_health(start_server: type[Server], tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 100)
    s = start_server("-m", str(bad))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            r = httpx.get(s.base + "/health", timeout=2)
            if r.json()["status"] == "error":
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    assert r.status_code == 503 and "could not load" in r.json()["error"]
    chat = httpx.post(s.base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 503


def test_models_answer_503_until_the_chat_model_is_loaded(start_server: type[Server], smollm: Path, minilm: Path) -> None:
    """Like llama-server: no 200 from /v1/models that lacks the chat model (the side models of a
    server still loading were listed alone)."""
    s = start_server("-m", str(smollm), "--rag-model", str(minilm), "--log-format", "json")
    statuses = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            r = httpx.get(s.base + "/v1/models", timeout=2)
        except httpx.HTTPError:
            time.sleep(0.01)
            continue
        statuses.append(r.status_code)
        if r.status_code == 200:
            ids = [m["id"] for m in r.json()["data"]]
            assert ids[0] == smollm.name.removesuffix(".gguf"), ids
            break
        assert r.status_code == 503 and r.json()["error"]["code"] == "loading"
        assert r.headers["Retry-After"]
    assert statuses[-1] == 200 and 503 in statuses, statuses
    s.stop()
    import json

    lines = [ln for ln in s.output().splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]  # --log-format json: every line is one JSON object
    assert any(r["msg"].startswith("listening on") and r["url"] == s.base for r in records)
