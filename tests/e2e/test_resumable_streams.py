"""Resumable streams (X-Conversation-Id): replay from an offset, a generation that outlives its
client, stop (DELETE), lookup, a request stopped while its model loads; against a real server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Server, module_server, shared_model

BODY = {"model": "m", "stream": True, "max_tokens": 24, "temperature": 0, "ignore_eos": True,
        "messages": [{"role": "user", "content": "Count to ten."}]}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from module_server("-m", str(shared_model("tiny-random-llama-spm.gguf")), "-np", "2")


def events(raw: str) -> list[Any]:
    return [json.loads(line[6:]) if line[6:] != "[DONE]" else "[DONE]"
            for line in raw.split("\n") if line.startswith("data: ")]


def text_of(raw: str) -> str:
    return "".join((e["choices"][0]["delta"].get("content") or "") for e in events(raw)
                   if e != "[DONE]" and e.get("choices"))


def test_replay_from_zero_and_from_an_offset_then_stop(server: Server) -> None:
    http = server.http()
    with http.stream("POST", "/v1/chat/completions", json=BODY, headers={"X-Conversation-Id": "conv-1::org/m"}) as r:
        live = "".join(r.iter_text())
    assert text_of(live) and live.rstrip().endswith("data: [DONE]")
    whole = http.get("/v1/stream", params={"conv_id": "conv-1::org/m", "from": 0})
    assert whole.status_code == 200 and whole.text == live  # byte for byte what the client got
    tail = http.get("/v1/stream", params={"conv_id": "conv-1::org/m", "from": 100})
    assert tail.text == live[100:]
    found = http.post("/v1/streams/lookup", json={"conversation_ids": ["conv-1", "other"]}).json()
    assert [(f["conversation_id"], f["is_done"], f["total_bytes"]) for f in found] == [("conv-1::org/m", True, len(live.encode()))]
    assert http.post("/v1/streams/lookup", json={"conversation_ids": ["conv"]}).json() == []  # no prefix guessing
    assert http.delete("/v1/stream", params={"conv_id": "conv-1::org/m"}).status_code == 204
    assert http.get("/v1/stream", params={"conv_id": "conv-1::org/m", "from": 0}).status_code == 404
    assert http.delete("/v1/stream", params={"conv_id": "conv-1::org/m"}).status_code == 204  # idempotent


def test_the_generation_outlives_its_client(server: Server) -> None:
    body = json.dumps({**BODY, "max_tokens": 200}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"X-Conversation-Id: conv-2\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert b"200" in sock.recv(64)  # the stream started
    sock.close()  # a page reload
    deadline = time.monotonic() + 120
    while True:
        found = server.http().post("/v1/streams/lookup", json={"conversation_ids": ["conv-2"]}).json()
        if found and found[0]["is_done"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    replay = server.http().get("/v1/stream", params={"conv_id": "conv-2"}).text
    finals = [e for e in events(replay) if e != "[DONE]" and e["choices"] and e["choices"][0].get("finish_reason")]
    assert finals and finals[-1]["choices"][0]["finish_reason"] == "length", "generated to the end without a client"
    usage = [e["usage"] for e in events(replay) if e != "[DONE]" and e.get("usage")]
    assert not usage or usage[-1]["completion_tokens"] == 200


def test_a_reader_follows_a_live_stream_and_delete_stops_it(server: Server) -> None:
    http = server.http()
    started = threading.Event()
    got: list[str] = []

    def producer() -> None:
        with httpx.stream("POST", server.base + "/v1/chat/completions", json={**BODY, "max_tokens": 5000},
                          headers={"X-Conversation-Id": "conv-3"}, timeout=120) as r:
            for chunk in r.iter_text():
                got.append(chunk)
                started.set()

    t = threading.Thread(target=producer)
    t.start()
    assert started.wait(60)
    seen = b""
    with http.stream("GET", "/v1/stream", params={"conv_id": "conv-3", "from": 0}) as follow:
        for chunk in follow.iter_bytes():
            seen += chunk
            if seen.count(b"data: ") >= 5:
                break
    t0 = time.monotonic()
    assert http.delete("/v1/stream", params={"conv_id": "conv-3"}).status_code == 204
    t.join(60)
    assert not t.is_alive() and time.monotonic() - t0 < 30, "the stop ended the generation"
    assert seen.startswith("".join(got).encode()[: len(seen)])  # the follower read the same bytes
    assert http.get("/v1/stream", params={"conv_id": "conv-3"}).status_code == 404


def test_bad_reads(server: Server) -> None:
    http = server.http()
    assert http.get("/v1/stream").status_code == 400
    assert http.get("/v1/stream", params={"conv_id": "nobody"}).status_code == 404
    with http.stream("POST", "/v1/chat/completions", json={**BODY, "max_tokens": 2}, headers={"X-Conversation-Id": "c4"}) as r:
        r.read()
    assert http.get("/v1/stream", params={"conv_id": "c4", "from": "-1"}).status_code == 400
    assert http.post("/v1/streams/lookup", json={"conversation_ids": "c4"}).status_code == 400
    bad = http.post("/v1/chat/completions", json={**BODY, "messages": []}, headers={"X-Conversation-Id": "c5"})
    assert bad.status_code == 400  # not a stream: the client gets the error, no session is kept
    assert http.get("/v1/stream", params={"conv_id": "c5"}).status_code == 404


def test_stop_while_the_model_loads(start_server: type[Server], tmp_path: Path, smollm: Path) -> None:
    (tmp_path / "slow.gguf").symlink_to(smollm)
    (tmp_path / "other.gguf").symlink_to(shared_model("tiny-random-llama-spm.gguf"))
    s = start_server("--models-dir", str(tmp_path)).wait_ready()
    out: dict[str, Any] = {}

    def ask() -> None:
        r = httpx.post(s.base + "/v1/chat/completions", json={**BODY, "model": "slow"},
                       headers={"X-Conversation-Id": "c6"}, timeout=120)
        out["status"], out["body"] = r.status_code, r.text

    t = threading.Thread(target=ask)
    t.start()
    deadline = time.monotonic() + 30
    while s.http().get("/v1/stream", params={"conv_id": "c6"}).status_code != 503:  # pending: its model loads
        assert time.monotonic() < deadline and t.is_alive(), out
        time.sleep(0.01)
    assert s.http().delete("/v1/stream", params={"conv_id": "c6"}).status_code == 204
    t.join(60)
    assert out["status"] == 400 and "cancelled" in out["body"], out
    assert s.http().get("/v1/stream", params={"conv_id": "c6"}).status_code == 404
