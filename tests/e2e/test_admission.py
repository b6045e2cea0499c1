"""Admission and server-level options of the engine: queue bound, templates, context split."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from conftest import Server


def test_queue_beyond_max_queue_is_503_with_retry_after(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm), "-np", "1", "--max-queue", "1", "-c", "2048").wait_ready()
    statuses: list[int] = []

    def long_request() -> None:
        r = httpx.post(s.base + "/v1/completions", timeout=120,
                       json={"prompt": "Once", "max_tokens": 200, "ignore_eos": True})
        statuses.append(r.status_code)

    threads = [threading.Thread(target=long_request) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.3)  # the first takes the slot, the second waits in the queue
    slots = httpx.get(s.base + "/slots").json()
    assert slots[0]["is_processing"]
    r = httpx.post(s.base + "/v1/completions", json={"prompt": "x", "max_tokens": 2})
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert r.json()["error"]["code"] == "overloaded"
    for t in threads:
        t.join(120)
    assert statuses == [200, 200], "queued requests are served in turn"


def test_builtin_chat_template_override(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm), "--chat-template", "llama3").wait_ready()
    prompt = httpx.post(s.base + "/apply-template", json={"messages": [{"role": "user", "content": "Hi"}]}).json()["prompt"]
    assert "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" in prompt
    props = httpx.get(s.base + "/props").json()
    assert props["chat_template_name"] == "llama3"


def test_chat_template_file_and_ctx_split(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    tpl = tmp_path / "t.jinja"
    tpl.write_text("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] ")
    s = start_server("-m", str(smollm), "--chat-template-file", str(tpl), "-np", "2", "-c", "1024").wait_ready()
    prompt = httpx.post(s.base + "/apply-template", json={"messages": [{"role": "user", "content": "Hi"}]}).json()["prompt"]
    assert prompt == "[user] Hi\n[assistant] "
    slots = httpx.get(s.base + "/slots").json()
    assert [x["n_ctx"] for x in slots] == [512, 512]
    r = httpx.post(s.base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
    assert r.status_code == 200


def test_unknown_builtin_template_exits_2(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm), "--chat-template", "nonesuch")
    assert s.proc.wait(60) == 2
    assert "unknown template" in s.output()


def test_unexpected_error_is_sanitized_500_and_server_keeps_serving(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    tpl = tmp_path / "broken.jinja"
    tpl.write_text("{{ messages[0].content }}{{ 1 // 0 }}")  # a template bug: ZeroDivisionError
    s = start_server("-m", str(smollm), "--chat-template-file", str(tpl)).wait_ready()
    r = httpx.post(s.base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["type"] == "api_error" and "ZeroDivisionError" in err["message"] and "Traceback" not in err["message"]
    assert httpx.get(s.base + "/health").status_code == 200
    ok = httpx.post(s.base + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
    assert ok.status_code == 200
    assert "Traceback" in s.output() and "ZeroDivisionError" in s.output()
