"""Every operation of /openapi.json fuzzed with schemathesis against a real server that has every
feature on (tiny models): valid and invalid generated bodies, query strings and paths.

Criteria: no 5xx (the server's own failures; the tiny models make no engine failure expected),
every error in the API's own shape (Anthropic's on /v1/messages, Ollama's on /api/, OpenAI's
elsewhere), and afterwards the server is healthy, no slot is busy and no file descriptor leaked.
FUZZ_EXAMPLES (default 12) sets the examples per operation; docs/dev/testing.md says how to run
it longer.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from conftest import Server, module_server, sd_args, shared_model

KEY = "fuzz-key"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
AUTH = {"Authorization": f"Bearer {KEY}"}
STATE: dict[str, Any] = {}


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _fd_kinds(pid: int) -> Counter[str]:
    """What the open descriptors are (socket, pipe, anon_inode, or a file's folder)."""
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            kinds[target.split(":")[0] if ":" in target else os.path.dirname(target)] += 1
    return kinds


@pytest.fixture(scope="module")
def server(whisper_model: Path, sd_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("fuzz")
    for s in module_server(
        "-m", str(shared_model("tiny-random-smollm2-vocab.gguf")), "-np", "4", "-c", "2048",
        "--rag-model", str(shared_model("tiny-random-bert-embed.gguf")),
        "--rerank-model", str(shared_model("tiny-random-bert-rerank.gguf")),
        "--whisper-model", str(whisper_model), "--persist-chats", "--chat-db", str(d / "chats.db"),
        "--rag-db", str(d / "rag.db"), "--slot-save-path", str(d / "slots"), *sd_args(sd_models),
        "--sd-max-pixels", "16384", "--sd-max-steps", "4", "--max-body-size", "4000000", "--api-key", KEY,
        "--keep-alive-timeout", "2",
        api_key=KEY,
    ):
        httpx.post(s.base + "/v1/chat/completions", headers=AUTH, json={"messages": [{"role": "user", "content": "hi"}],
                                                                       "max_tokens": 2}, timeout=60)
        STATE["fds"] = _fds(s.proc.pid)
        yield s


def _description() -> dict[str, Any]:
    """The server's /openapi.json, built in-process from the same code (collection needs it before
    a server runs); test_description_is_served checks the server serves the same."""
    from chimera.config import Settings
    from chimera.http.app import create_app
    from chimera.services import Services

    app = create_app(Services(settings=Settings(), api_keys=(KEY,)))
    return dict(app.extensions["QUART_SCHEMA"].openapi_provider.schema())


DESCRIPTION = _description()
schema = schemathesis.openapi.from_dict(DESCRIPTION)


def test_description_is_served(server: Server) -> None:
    assert httpx.get(server.base + "/openapi.json").status_code == 401, "behind the API key like every route"
    served = httpx.get(server.base + "/openapi.json", headers=AUTH).json()
    assert served == DESCRIPTION
    assert len(served["paths"]) >= 50


def _error_shape(path: str, body: Any) -> None:
    if path.startswith("/api/"):  # Ollama's
        assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    elif path.startswith("/v1/messages"):
        assert body["type"] == "error" and isinstance(body["error"]["type"], str) and body["error"]["message"]
    else:
        err = body["error"]
        assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str)
        assert "code" in err and "param" in err


@schema.exclude(path=["/v1/chimera/shutdown", "/models/sse"]).parametrize()  # sse: an endless stream (test_models_dir.py)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_operation(case: Any, server: Server) -> None:
    response = case.call(base_url=server.base, headers=AUTH, timeout=120)
    STATE.setdefault("calls", Counter())[f"{response.status_code // 100}xx"] += 1
    # 501: a feature this server does not offer (documented); anything else 5xx is a fault
    assert response.status_code < 500 or response.status_code == 501, \
        f"{case.method} {case.path}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        _error_shape(case.path, response.json())


def test_server_is_healthy_afterwards(server: Server) -> None:
    print(f"\nfuzzing: {sum(STATE.get('calls', {}).values())} requests, by status: {dict(STATE.get('calls', {}))}")
    assert httpx.get(server.base + "/health").status_code == 200
    deadline = time.monotonic() + 10
    while any(s["is_processing"] for s in httpx.get(server.base + "/slots", headers=AUTH).json()):
        assert time.monotonic() < deadline, "a slot stayed busy after the fuzzing"
        time.sleep(0.1)
    deadline = time.monotonic() + 10  # kept-alive connections of the fuzzing client close on their own
    while _fds(server.proc.pid) > STATE["fds"] + 2:
        assert time.monotonic() < deadline, \
            f"{_fds(server.proc.pid)} file descriptors open, {STATE['fds']} before: {_fd_kinds(server.proc.pid)}"
        time.sleep(0.2)
    r = httpx.post(server.base + "/v1/chat/completions", headers=AUTH, timeout=60,
                   json={"messages": [{"role": "user", "content": "still there?"}], "max_tokens": 4})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
