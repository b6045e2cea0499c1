"""Foundation behaviour of a real `chimera serve` process: auth, errors, guards, meta routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server, module_server

KEY = "sk-test-123"
OTHER_KEY = "second-key"


@pytest.fixture(scope="module")
def server(smollm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    keyfile = tmp_path_factory.mktemp("keys") / "keys.txt"
    keyfile.write_text(f"# comment\n{OTHER_KEY}\n")
    yield from module_server(
        "-m", str(smollm), "--api-key", KEY, "--api-key-file", str(keyfile),
        "--max-body-size", "65536", "--cors-origins", "http://app.example,localhost", api_key=KEY,
    )


def test_health_is_public(server: Server) -> None:
    for path in ("/health", "/v1/health"):
        r = httpx.get(server.base + path)
        assert r.status_code == 200
        assert r.json() == {"status": "ok"}


def test_missing_key_is_401_in_openai_shape(server: Server) -> None:
    r = httpx.get(server.base + "/v1/models")
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["type"] == "authentication_error"
    assert "API key" in err["message"]


def test_wrong_key_rejected_by_sdk(server: Server) -> None:
    client = openai.OpenAI(base_url=server.base + "/v1", api_key="wrong", max_retries=0, _strict_response_validation=True)
    with pytest.raises(openai.AuthenticationError) as exc:
        client.models.list()
    assert exc.value.status_code == 401


def test_right_key_bearer_and_x_api_key(server: Server) -> None:
    models = server.client().models.list()
    assert [m.id for m in models.data] == ["SmolLM2-135M-Instruct.Q4_1"]
    r = httpx.get(server.base + "/v1/models", headers={"X-Api-Key": KEY})
    assert r.status_code == 200
    r = httpx.get(server.base + "/v1/models", headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert r.status_code == 200, "a key from --api-key-file must be accepted"
    card = r.json()["data"][0]
    assert card["object"] == "model" and card["owned_by"] == "chimera" and "chat" in card["capabilities"]


def test_unknown_route_is_json_404(server: Server) -> None:
    r = server.http().get("/v1/nope")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["type"] == "not_found_error"


def test_wrong_method_is_json_405(server: Server) -> None:
    r = server.http().get("/v1/chat/completions")
    assert r.status_code == 405
    assert "error" in r.json()


def test_malformed_json_is_400(server: Server) -> None:
    r = server.http().post("/v1/chat/completions", content=b'{"messages": [', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "malformed JSON" in err["message"]


def test_wrong_type_names_the_field(server: Server) -> None:
    r = server.http().post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "max_tokens"


def test_oversized_body_is_413(server: Server) -> None:
    big = {"messages": [{"role": "user", "content": "x" * 70000}]}
    r = server.http().post("/v1/chat/completions", json=big)
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_bad_host_header_rejected(server: Server) -> None:
    r = server.http().get("/v1/models", headers={"Host": "evil.example.com"})
    assert r.status_code == 403
    assert "allow-host" in r.json()["error"]["message"]
    ok = server.http().get("/v1/models", headers={"Host": f"localhost:{server.port}"})
    assert ok.status_code == 200


def test_cors_preflight(server: Server) -> None:
    r = httpx.options(
        server.base + "/v1/chat/completions",
        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"},
    )
    assert r.status_code in (200, 204)
    assert r.headers["access-control-allow-origin"] == "http://app.example"
    assert "POST" in r.headers["access-control-allow-methods"]
    for origin in ("http://evil.example", "http://notlocalhost", "http://localhost.evil.com", "http://127.0.0.1.evil.com",
                   "file://localhost"):
        other = httpx.options(server.base + "/v1/chat/completions",
                              headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers, origin
    for origin in ("http://localhost", "http://localhost:5173", "https://127.0.0.1:3000", "http://[::1]:8080"):
        loop = httpx.options(server.base + "/v1/chat/completions",  # `localhost` in the list: any loopback origin
                             headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert loop.headers["access-control-allow-origin"] == origin


def test_metrics_parse_as_prometheus(server: Server) -> None:
    server.client().models.list()
    r = server.http().get("/metrics")
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    reqs = families["chimera_http_requests"]
    assert any(s.labels.get("route") == "/v1/models" and s.labels.get("status") == "200" for s in reqs.samples)
    assert "chimera_http_request_duration_seconds" in families
    assert "chimera_llm_slots_total" in families


def test_info_lists_real_versions(server: Server) -> None:
    import importlib.metadata

    import apsw

    info = server.http().get("/v1/chimera/info").json()
    assert info["chimera"] == "0.1.0"
    assert info["llama_cpp"]["binding"] == importlib.metadata.version("llama-cpp-python")
    assert "CPU" in info["llama_cpp"]["backends"]
    assert info["llama_cpp"]["cpu_features"], "the picked CPU variant reports its features"
    assert info["sqlite"]["sqlite"] == apsw.sqlite_lib_version()
    assert info["sqlite"]["sqlite_vec"].startswith("v")
    assert info["engines"]["whisper_cpp"]["binding"] == importlib.metadata.version("pywhispercpp")
    assert info["engines"]["stable_diffusion_cpp"]["binding"] == importlib.metadata.version("stable-diffusion-cpp-python")
    assert info["settings"]["api_key"] == ["***"], "secrets are redacted"
    assert KEY not in str(info)


def test_deeply_nested_json_is_400(server: Server) -> None:
    for body in (b"[" * 5000, b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                 b'{"messages": [{"role": "user", "content": "x"}], "json_schema": ' + b'{"items": ' * 900 + b"{}" + b"}" * 901):
        r = server.http().post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_info_cli_reports_the_same_keys_as_the_route(server: Server, smollm: Path) -> None:
    import json
    import subprocess
    import sys

    route = server.http().get("/v1/chimera/info").json()
    out = subprocess.run([sys.executable, "-m", "chimera", "info", "-m", str(smollm)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    cli = json.loads(out)
    assert set(cli) == set(route)
    assert cli["ready"] is False and cli["uptime_s"] is None and route["ready"] is True
    assert cli["model"]["path"] == route["model"]["path"] == str(smollm)


def test_props(server: Server) -> None:
    props = server.http().get("/props").json()
    assert props["total_slots"] == 4
    assert "<|im_start|>" in props["chat_template"]
    assert props["n_ctx"] == props["n_ctx_slot"] == 8192  # the training context, shared by the slots


def test_header_names_go_out_in_their_usual_case(server: Server) -> None:
    """HTTP/1.1 header names are case-insensitive, but scripts that copy a response's headers
    into a plain dict (llama.cpp's own server tests do) look them up as llama-server writes them."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"OPTIONS /v1/models HTTP/1.1\r\nHost: localhost\r\nOrigin: http://app.example\r\n"
                     b"Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    names = [line.split(":", 1)[0] for line in head.split("\r\n")[1:]]
    assert "Access-Control-Allow-Origin" in names and "Content-Length" in names, head
