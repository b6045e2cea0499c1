"""A Llama-shaped GGUF with random f16 weights, for speed benchmarks where no real model of that
size can be had offline (speed does not depend on the weights' values).

The tokenizer is SmolLM2's (BPE, with its chat template), padded with control tokens up to the
shape's vocabulary size, so sampling and the output layer cost what they cost on the real model.

    python tests/bench/random_model.py OUT.gguf [--shape llama-3.2-1b|tiny]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gguf
import numpy as np

SHAPES = {
    # Llama-3.2-1B: 16 layers, 2048 wide, 32 heads (8 KV heads), 8192 FFN, 128256 tokens, tied embeddings
    "llama-3.2-1b": dict(n_layer=16, n_embd=2048, n_head=32, n_head_kv=8, n_ff=8192, n_vocab=128256,
                         n_ctx=131072, rope_base=500000.0),
    # for tests: a few MB, loads and generates in milliseconds
    "tiny": dict(n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, n_vocab=50000, n_ctx=4096, rope_base=10000.0),
}


def _field(reader: gguf.GGUFReader, key: str):  # type: ignore[no-untyped-def]
    return reader.fields[key].contents()


def write_random_model(out: Path, shape: str, tokenizer_from: Path, seed: int = 0) -> Path:
    s = SHAPES[shape]
    src = gguf.GGUFReader(str(tokenizer_from))
    tokens = list(_field(src, "tokenizer.ggml.tokens"))
    types = list(_field(src, "tokenizer.ggml.token_type"))
    if s["n_vocab"] < len(tokens):
        raise SystemExit(f"shape {shape}: vocabulary {s['n_vocab']} is smaller than the tokenizer's {len(tokens)}")
    pad = s["n_vocab"] - len(tokens)
    tokens += [f"<|reserved_{i}|>" for i in range(pad)]
    types += [int(gguf.TokenType.CONTROL)] * pad

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name(f"random {shape}")
    w.add_context_length(s["n_ctx"])
    w.add_embedding_length(s["n_embd"])
    w.add_block_count(s["n_layer"])
    w.add_feed_forward_length(s["n_ff"])
    w.add_head_count(s["n_head"])
    w.add_head_count_kv(s["n_head_kv"])
    w.add_rope_dimension_count(s["n_embd"] // s["n_head"])
    w.add_rope_freq_base(s["rope_base"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(s["n_vocab"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(str(_field(src, "tokenizer.ggml.pre")))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(list(_field(src, "tokenizer.ggml.merges")))
    w.add_bos_token_id(int(_field(src, "tokenizer.ggml.bos_token_id")))
    w.add_eos_token_id(int(_field(src, "tokenizer.ggml.eos_token_id")))
    w.add_add_bos_token(False)
    w.add_chat_template(str(_field(src, "tokenizer.chat_template")))

    rng = np.random.default_rng(seed)
    e, kv = s["n_embd"], s["n_embd"] // s["n_head"] * s["n_head_kv"]

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    ones = np.ones(e, dtype=np.float32)
    w.add_tensor("token_embd.weight", mat(s["n_vocab"], e))  # tied: also the output layer
    w.add_tensor("output_norm.weight", ones)
    for i in range(s["n_layer"]):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", ones)
        w.add_tensor(b + "attn_q.weight", mat(e, e))
        w.add_tensor(b + "attn_k.weight", mat(kv, e))
        w.add_tensor(b + "attn_v.weight", mat(kv, e))
        w.add_tensor(b + "attn_output.weight", mat(e, e))
        w.add_tensor(b + "ffn_norm.weight", ones)
        w.add_tensor(b + "ffn_gate.weight", mat(s["n_ff"], e))
        w.add_tensor(b + "ffn_up.weight", mat(s["n_ff"], e))
        w.add_tensor(b + "ffn_down.weight", mat(e, s["n_ff"]))
    tmp = out.with_name(out.name + ".tmp")
    w.write_header_to_file(tmp)
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.2-1b")
    ap.add_argument("--tokenizer-from", type=Path, default=None, help="a GGUF whose BPE tokenizer to copy (default: SmolLM2)")
    args = ap.parse_args()
    src = args.tokenizer_from
    if src is None:
        from chimera.models import prepare

        src = prepare("llm")
    print(write_random_model(args.out, args.shape, src))


if __name__ == "__main__":
    main()
