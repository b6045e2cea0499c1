"""Vertex AI's custom-container contract (AIP_MODE=PREDICTION): port, predict and health routes."""

from __future__ import annotations

import httpx

from conftest import Server, free_port, shared_model

KEY = "sk-vertex"


def test_predict_dispatches_instances_by_request_format(start_server: type[Server]) -> None:
    port = free_port()
    s = start_server("-m", str(shared_model("tiny-random-llama-spm.gguf")), "-np", "2", "--api-key", KEY,
                     env={"AIP_MODE": "PREDICTION", "AIP_HTTP_PORT": str(port), "AIP_PREDICT_ROUTE": "v1/predictions",
                          "AIP_HEALTH_ROUTE": "/isalive"})
    s.port, s.base = port, f"http://127.0.0.1:{port}"  # AIP_HTTP_PORT wins over --port
    s.wait_ready()
    assert httpx.get(s.base + "/isalive").status_code == 200  # public, like /health
    auth = {"Authorization": f"Bearer {KEY}"}
    chat = {"@requestFormat": "chatCompletions", "max_tokens": 3, "stream": True,
            "messages": [{"role": "user", "content": "Say hello"}]}
    r = httpx.post(s.base + "/v1/predictions", headers=auth, timeout=120, json={"instances": [
        chat, {**chat, "messages": [{"role": "user", "content": "Say world"}]},
        {"@requestFormat": "/tokenize", "content": "hello world"},
        {"@requestFormat": "completion", "prompt": "Once", "n_predict": 2},
        {"@requestFormat": "nothing"}, {"max_tokens": 1}, "text",
        {"@requestFormat": "chatCompletions", "messages": []}]})
    assert r.status_code == 200, r.text
    p = r.json()["predictions"]
    assert len(p) == 8
    for chat_reply in p[:2]:  # streaming is turned off: whole responses
        assert chat_reply["object"] == "chat.completion" and chat_reply["usage"]["completion_tokens"] >= 1
    assert p[2]["tokens"] and "content" in p[3]
    assert "no handler registered for @requestFormat: nothing" in p[4]["error"]["message"]
    assert "@requestFormat" in p[5]["error"]["message"] and "JSON object" in p[6]["error"]["message"]
    assert p[7]["error"]["param"] == "messages"  # the route's own 400, in place
    assert httpx.post(s.base + "/v1/predictions", json={"instances": []}).status_code == 401  # behind the key
    for body, needle in (({"instances": {}}, "instances"), ({"instances": [{}] * 129}, "128"), ([], "JSON object")):
        bad = httpx.post(s.base + "/v1/predictions", headers=auth, json=body)
        assert bad.status_code == 400 and needle in bad.json()["error"]["message"], bad.text


def test_without_aip_mode_there_is_no_predict_route(start_server: type[Server]) -> None:
    s = start_server("-m", str(shared_model("tiny-random-llama-spm.gguf")), env={"AIP_PREDICT_ROUTE": "/predict"}).wait_ready()
    assert s.http().post("/predict", json={"instances": []}).status_code in (404, 405)
