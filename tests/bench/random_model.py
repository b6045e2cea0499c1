"""A Llama-shaped GGUF with random f16 weights, for speed benchmarks where no real model of that
size can be had offline (speed does not depend on the weights' values).

The tokenizer is SmolLM2's (BPE, with its chat template), padded with control tokens up to the
shape's vocabulary size, so sampling and the output layer cost what they cost on the real model.
The writer is tests/models/tiny_gguf.py's, which also makes the tests' tiny random models.

    python tests/bench/random_model.py OUT.gguf [--shape llama-3.2-1b|tiny]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.tiny_gguf import LlamaShape, write_llama  # noqa: E402

SHAPES: dict[str, dict[str, Any]] = {
    # Llama-3.2-1B: 16 layers, 2048 wide, 32 heads (8 KV heads), 8192 FFN, 128256 tokens, tied embeddings
    "llama-3.2-1b": dict(n_layer=16, n_embd=2048, n_head=32, n_head_kv=8, n_ff=8192, n_vocab=128256,
                         n_ctx=131072, rope_base=500000.0),
    # for tests: a few MB, loads and generates in milliseconds
    "tiny": dict(n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, n_vocab=50000, n_ctx=4096, rope_base=10000.0),
}


def write_random_model(out: Path, shape: str, tokenizer_from: Path, seed: int = 0) -> Path:
    return write_llama(out, tokenizer_from, LlamaShape(**SHAPES[shape]), seed=seed, name=f"random {shape}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.2-1b")
    ap.add_argument("--tokenizer-from", type=Path, default=None, help="a GGUF whose tokenizer to copy (default: SmolLM2)")
    args = ap.parse_args()
    src = args.tokenizer_from
    if src is None:
        from chimera.models import prepare

        src = prepare("llm")
    print(write_random_model(args.out, args.shape, src))


if __name__ == "__main__":
    main()
