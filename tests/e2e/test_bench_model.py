"""The benchmarks' random-weight model (tests/bench/random_model.py) is a model chimera serves."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import Server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from random_model import SHAPES, write_random_model  # noqa: E402


def test_random_model_loads_and_generates(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    path = write_random_model(tmp_path / "tiny.gguf", "tiny", smollm)
    s = start_server("-m", str(path), "-np", "2", "-c", "1024").wait_ready()
    with s.http() as http:
        card = http.get("/v1/models").json()["data"][0]
    assert card["id"] == "tiny" and card["meta"]["n_vocab"] == SHAPES["tiny"]["n_vocab"]
    assert card["meta"]["n_embd"] == SHAPES["tiny"]["n_embd"]
    r = s.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=12,
                                           extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 12 and r.choices[0].finish_reason == "length"
    # SmolLM2's 49152 tokens, then the padding up to the shape's vocabulary, as control tokens
    with s.http() as http:
        assert http.post("/tokenize", json={"content": "<|reserved_7|>"}).json()["tokens"] == [49152 + 7]
