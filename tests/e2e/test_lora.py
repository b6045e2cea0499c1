"""LoRA adapters: a generated adapter changes greedy output; scale 0 restores the base; two
concurrent requests with different adapter sets each get their own result."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import Server

BODY = {"prompt": "The capital of France is", "max_tokens": 12, "temperature": 0, "ignore_eos": True, "cache_prompt": False}


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rank-4 LoRA for SmolLM2's attention Q and output projections, random but large enough
    to change the greedy continuation; written with the gguf package."""
    import gguf

    out = tmp_path_factory.mktemp("lora") / "smollm2-lora.gguf"
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", 4.0)
    n_embd, rank = 576, 4
    for layer in range(30):
        for name in ("attn_q", "attn_output"):
            w.add_tensor(f"blk.{layer}.{name}.weight.lora_a", rng.normal(0, 0.5, (rank, n_embd)).astype(np.float32))
            w.add_tensor(f"blk.{layer}.{name}.weight.lora_b", rng.normal(0, 0.5, (n_embd, rank)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def complete(base: str, **extra: object) -> str:
    r = httpx.post(base + "/v1/completions", json=BODY | extra, timeout=300)
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["text"])


def test_lora_changes_output_and_scale_zero_restores(start_server: type[Server], smollm: Path, adapter: Path) -> None:
    base_srv = start_server("-m", str(smollm)).wait_ready()
    base = complete(base_srv.base)
    s = start_server("-m", str(smollm), "--lora", str(adapter), "-np", "2", "-c", "4096").wait_ready()
    assert httpx.get(s.base + "/lora-adapters").json() == [{"id": 0, "path": str(adapter), "scale": 1.0}]
    with_lora = complete(s.base)
    assert with_lora != base, "the adapter changes the greedy output"
    assert complete(s.base, lora=[{"id": 0, "scale": 0.0}]) == base, "per-request scale 0 is the base model"
    r = httpx.post(s.base + "/lora-adapters", json=[{"id": 0, "scale": 0.0}])
    assert r.status_code == 200 and r.json()[0]["scale"] == 0.0
    assert complete(s.base) == base, "re-weighting to 0 restores the base output"
    assert complete(s.base, lora=[{"id": 0, "scale": 1.0}]) == with_lora
    bad = httpx.post(s.base + "/lora-adapters", json=[{"id": 3, "scale": 1.0}])
    assert bad.status_code == 400
    assert httpx.post(s.base + "/v1/completions", json=BODY | {"lora": [{"id": 9}]}).status_code == 400


def test_concurrent_requests_with_different_adapters(start_server: type[Server], smollm: Path, adapter: Path) -> None:
    s = start_server("-m", str(smollm), "--lora-scaled", str(adapter), "1.0", "-np", "4", "-c", "4096").wait_ready()
    on, off = complete(s.base), complete(s.base, lora=[{"id": 0, "scale": 0.0}])
    assert on != off
    got: dict[str, list[str]] = {"on": [], "off": []}

    def run(kind: str) -> None:
        extra = {} if kind == "on" else {"lora": [{"id": 0, "scale": 0.0}]}
        got[kind].append(complete(s.base, **extra))

    threads = [threading.Thread(target=run, args=(k,)) for k in ("on", "off", "on", "off")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == {"on": [on, on], "off": [off, off]}
