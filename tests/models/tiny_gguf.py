"""Random-weight GGUF models that llama.cpp loads: a Llama chat model, a BERT embedder or
reranker, and a LLaVA-style vision projector (mmproj). numpy + gguf only.

The weights are random, so the output is gibberish, but it is deterministic for a seed, and the
files exercise the real loaders, tokenizers and graphs. The tokenizer of a model (every
`tokenizer.*` key, chat template included) is copied from a donor GGUF.

Tensor shapes are given in numpy order (rows = outputs, columns = inputs); GGUF stores them
reversed (ggml `ne` = [inputs, outputs]).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf import GGUFValueType

TOKENIZER_PREFIX = "tokenizer."


# --- tokenizers --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One metadata key/value of a GGUF file, with its GGUF types."""

    key: str
    value: Any
    vtype: GGUFValueType
    sub_type: GGUFValueType | None = None


def read_tokenizer(donor: Path) -> list[Field]:
    """Every `tokenizer.*` key of `donor`, in file order."""
    reader = gguf.GGUFReader(str(donor))
    fields = []
    for key, f in reader.fields.items():
        if not key.startswith(TOKENIZER_PREFIX):
            continue
        vtype = GGUFValueType(f.types[0])
        sub_type = GGUFValueType(f.types[-1]) if vtype == GGUFValueType.ARRAY else None
        if sub_type == GGUFValueType.ARRAY:
            raise ValueError(f"{donor}: nested array {key} is not supported")
        fields.append(Field(key, f.contents(), vtype, sub_type))
    return fields


def vocab_size(tokenizer: list[Field]) -> int:
    return len(_get(tokenizer, "tokenizer.ggml.tokens").value)


def pad_vocab(tokenizer: list[Field], n_vocab: int) -> list[Field]:
    """The tokenizer with `<|reserved_N|>` control tokens appended up to `n_vocab` tokens, so the
    embedding and output layers have that many rows."""
    pad = n_vocab - vocab_size(tokenizer)
    if pad < 0:
        raise ValueError(f"vocabulary {n_vocab} is smaller than the tokenizer's {vocab_size(tokenizer)}")
    extra: dict[str, list[Any]] = {
        "tokenizer.ggml.tokens": [f"<|reserved_{i}|>" for i in range(pad)],
        "tokenizer.ggml.token_type": [int(gguf.TokenType.CONTROL)] * pad,
        "tokenizer.ggml.scores": [0.0] * pad,
    }
    return [dataclasses.replace(f, value=list(f.value) + extra[f.key]) if f.key in extra and pad else f
            for f in tokenizer]


def _get(tokenizer: list[Field], key: str) -> Field:
    for f in tokenizer:
        if f.key == key:
            return f
    raise KeyError(key)


def _add_fields(w: gguf.GGUFWriter, fields: list[Field]) -> None:
    for f in fields:
        w.add_key_value(f.key, f.value, f.vtype, f.sub_type)


# --- writing -----------------------------------------------------------------------------------
class _Random:
    """Draws small normal weights in a fixed order from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape: int, scale: float = 0.02, dtype: type = np.float16) -> np.ndarray:
        return (self.rng.standard_normal(shape, dtype=np.float32) * scale).astype(dtype)


def _ones(n: int) -> np.ndarray:
    return np.ones(n, np.float32)


def _zeros(n: int) -> np.ndarray:
    return np.zeros(n, np.float32)


def _write(w: gguf.GGUFWriter, out: Path) -> Path:
    """Write `w` to a temporary name beside `out`, then rename it into place."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        w.write_header_to_file(tmp)
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


# --- llama -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LlamaShape:
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx: int
    rope_base: float = 10000.0
    n_vocab: int | None = None  # None: the tokenizer's size; more: padded with control tokens


# 2 layers, 64 wide: a few MB, loads and generates in milliseconds
TINY_LLAMA = LlamaShape(n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, n_ctx=2048)


def write_llama(out: Path, tokenizer_from: Path, shape: LlamaShape = TINY_LLAMA, *, seed: int = 0,
                name: str = "tiny-random-llama") -> Path:
    """A Llama-architecture model with random f16 weights and `tokenizer_from`'s tokenizer. The
    output layer is tied to the token embedding."""
    tokenizer = read_tokenizer(tokenizer_from)
    if shape.n_vocab is not None:
        tokenizer = pad_vocab(tokenizer, shape.n_vocab)
    n_vocab, e, hd = vocab_size(tokenizer), shape.n_embd, shape.n_embd // shape.n_head

    w = gguf.GGUFWriter(None, "llama")
    w.add_name(name)
    w.add_context_length(shape.n_ctx)
    w.add_embedding_length(e)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(shape.rope_base)
    w.add_rope_dimension_count(hd)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    _add_fields(w, tokenizer)
    w.add_vocab_size(n_vocab)

    rnd = _Random(seed)
    w.add_tensor("token_embd.weight", rnd(n_vocab, e))
    w.add_tensor("output_norm.weight", _ones(e))
    for i in range(shape.n_layer):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", _ones(e))
        w.add_tensor(b + "attn_q.weight", rnd(shape.n_head * hd, e))
        w.add_tensor(b + "attn_k.weight", rnd(shape.n_head_kv * hd, e))
        w.add_tensor(b + "attn_v.weight", rnd(shape.n_head_kv * hd, e))
        w.add_tensor(b + "attn_output.weight", rnd(e, shape.n_head * hd))
        w.add_tensor(b + "ffn_norm.weight", _ones(e))
        w.add_tensor(b + "ffn_gate.weight", rnd(shape.n_ff, e))
        w.add_tensor(b + "ffn_up.weight", rnd(shape.n_ff, e))
        w.add_tensor(b + "ffn_down.weight", rnd(e, shape.n_ff))
    return _write(w, out)


# --- bert --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BertShape:
    n_layer: int = 2
    n_embd: int = 32
    n_head: int = 2
    n_ff: int = 64
    n_ctx: int = 512


def write_bert(out: Path, tokenizer_from: Path, *, rerank: bool = False, shape: BertShape = BertShape(),
               seed: int = 0) -> Path:
    """A BERT model with random weights and `tokenizer_from`'s WordPiece tokenizer: an embedder
    (mean pooling) or, with `rerank`, a reranker (rank pooling and a classifier head that gives
    one score)."""
    tokenizer = read_tokenizer(tokenizer_from)
    n_vocab, e, ff = vocab_size(tokenizer), shape.n_embd, shape.n_ff

    w = gguf.GGUFWriter(None, "bert")
    w.add_name("tiny-random-bert" + ("-reranker" if rerank else ""))
    w.add_context_length(shape.n_ctx)
    w.add_embedding_length(e)
    w.add_feed_forward_length(ff)
    w.add_block_count(shape.n_layer)
    w.add_head_count(shape.n_head)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_pooling_type(gguf.PoolingType.RANK if rerank else gguf.PoolingType.MEAN)
    if not any(f.key == gguf.Keys.Tokenizer.TOKEN_TYPE_COUNT for f in tokenizer):
        w.add_token_type_count(2)
    _add_fields(w, tokenizer)

    rnd = _Random(seed)
    w.add_tensor("token_embd.weight", rnd(n_vocab, e))
    w.add_tensor("token_types.weight", rnd(2, e, dtype=np.float32))
    w.add_tensor("position_embd.weight", rnd(shape.n_ctx, e, dtype=np.float32))
    _add_norm(w, "token_embd_norm", e)
    for i in range(shape.n_layer):
        b = f"blk.{i}."
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(b + t + ".weight", rnd(e, e))
            w.add_tensor(b + t + ".bias", _zeros(e))
        _add_norm(w, b + "attn_output_norm", e)
        w.add_tensor(b + "ffn_up.weight", rnd(ff, e))
        w.add_tensor(b + "ffn_up.bias", _zeros(ff))
        w.add_tensor(b + "ffn_down.weight", rnd(e, ff))
        w.add_tensor(b + "ffn_down.bias", _zeros(e))
        _add_norm(w, b + "layer_output_norm", e)
    if rerank:  # the BERT/RoBERTa head: tanh(cls.weight @ x[CLS] + cls.bias), then cls.output -> 1 score
        w.add_tensor("cls.weight", rnd(e, e))
        w.add_tensor("cls.bias", _zeros(e))
        w.add_tensor("cls.output.weight", rnd(1, e, scale=0.5))
        w.add_tensor("cls.output.bias", _zeros(1))
    return _write(w, out)


def _add_norm(w: gguf.GGUFWriter, name: str, n: int) -> None:
    """A LayerNorm that starts as the identity (weight 1, bias 0)."""
    w.add_tensor(name + ".weight", _ones(n))
    w.add_tensor(name + ".bias", _zeros(n))


# --- vision projector --------------------------------------------------------------------------
@dataclass(frozen=True)
class MmprojShape:
    image_size: int = 64
    patch: int = 16
    n_embd: int = 32
    n_head: int = 2
    n_ff: int = 64
    n_layer: int = 2
    proj_hidden: int = 64


IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]  # CLIP's
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]


def write_mmproj(out: Path, text_n_embd: int, shape: MmprojShape = MmprojShape(), *, seed: int = 0) -> Path:
    """A LLaVA-style projector (CLIP ViT, then a 2-layer GELU MLP, projector type "mlp") for
    llama.cpp's mtmd. Its output width must equal the text model's n_embd: mtmd checks that when
    it starts."""
    e, ff, p = shape.n_embd, shape.n_ff, shape.patch
    w = gguf.GGUFWriter(None, "clip")
    w.add_name("tiny-random-mmproj")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_audio_encoder", False)
    w.add_string("clip.projector_type", "mlp")
    w.add_bool("clip.use_gelu", True)
    for key, value in (("image_size", shape.image_size), ("patch_size", p), ("embedding_length", e),
                       ("feed_forward_length", ff), ("block_count", shape.n_layer),
                       ("attention.head_count", shape.n_head), ("projection_dim", text_n_embd)):
        w.add_uint32("clip.vision." + key, value)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    w.add_array("clip.vision.image_mean", IMAGE_MEAN)
    w.add_array("clip.vision.image_std", IMAGE_STD)

    rnd = _Random(seed)
    n_pos = (shape.image_size // p) ** 2 + 1  # the patches and the class token
    w.add_tensor("v.patch_embd.weight", rnd(e, 3, p, p))
    w.add_tensor("v.patch_embd.bias", _zeros(e))
    w.add_tensor("v.class_embd", rnd(e, dtype=np.float32))
    w.add_tensor("v.position_embd.weight", rnd(n_pos, e, dtype=np.float32))
    _add_norm(w, "v.pre_ln", e)
    for i in range(shape.n_layer):
        b = f"v.blk.{i}."
        for t in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(b + t + ".weight", rnd(e, e))
            w.add_tensor(b + t + ".bias", _zeros(e))
        _add_norm(w, b + "ln1", e)
        _add_norm(w, b + "ln2", e)
        w.add_tensor(b + "ffn_up.weight", rnd(ff, e))
        w.add_tensor(b + "ffn_up.bias", _zeros(ff))
        w.add_tensor(b + "ffn_down.weight", rnd(e, ff))
        w.add_tensor(b + "ffn_down.bias", _zeros(e))
    w.add_tensor("mm.0.weight", rnd(shape.proj_hidden, e))
    w.add_tensor("mm.0.bias", _zeros(shape.proj_hidden))
    w.add_tensor("mm.2.weight", rnd(text_n_embd, shape.proj_hidden))
    w.add_tensor("mm.2.bias", _zeros(text_n_embd))
    return _write(w, out)
