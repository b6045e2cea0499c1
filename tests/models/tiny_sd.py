"""A minimal FLUX.2-klein model set that stable-diffusion.cpp loads and runs on CPU (txt2img,
img2img, inpainting, LoRA) in a fraction of a second per 64x64 image. numpy only: the PyTorch
zip checkpoints and safetensors files are written here without torch.

Why FLUX.2-klein: stable-diffusion.cpp reads the Flux DiT's depth, width and text-context width
from the tensor shapes, its Qwen3 text encoder may have no transformer layers at all (then it is
an embedding and a final RMSNorm), and the tiny autoencoder ("taef2") is a fixed 64-channel conv
net. The other families hard-code a CLIP-L, a T5-XXL or a DiT of 100M+ parameters.

With `init="identity"` (the default) the DiT and the text encoder are all zeros (the DiT predicts
zero velocity) and the autoencoder roughly passes its input through (latent = 3 * (avgpool8(rgb)
- 0.5) in channels 0..2). So txt2img gives grey block noise that varies with the seed and a LoRA
but not the prompt, img2img at low strength gives back the init image, and inpainting keeps the
unmasked area. The files are almost all zeros, so they compress to about 40 KB in all.
`init="random"` makes the prompt matter too (about 7 MB); `init="zeros"` makes every image black.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np

Tensor = tuple[str, np.ndarray]  # name, values in PyTorch order; float16 or float32 as stored
InitMode = Literal["identity", "zeros", "random"]

# the Qwen3 tokenizer built into stable-diffusion.cpp emits ids up to 151668 and ggml_get_rows
# aborts on an id past the embedding, so the text encoder keeps the real vocabulary size
QWEN_VOCAB = 151936
TAE_CHANNELS = 64  # fixed by stable-diffusion.cpp's tiny autoencoder
LATENT_SCALE = 3.0  # identity mode: latent = LATENT_SCALE * (rgb - 0.5)

MODEL = "tiny-flux2-klein.ckpt"  # DiT and text encoder: --sd-model (model_path=)
TAESD = "tiny-taef2.ckpt"  # tiny autoencoder: --sd-taesd (taesd_path=), required
SPLIT_DIT = "split/tiny-flux2-klein-dit.ckpt"  # --sd-diffusion-model (diffusion_model_path=)
SPLIT_LLM = "split/tiny-qwen3.ckpt"  # --sd-llm (llm_path=)
SPLIT_TAESD = "split/tiny-taef2.ckpt"
LORA = "loras/tiny-lora.safetensors"  # lora_model_dir=<set>/loras, prompt tag <lora:tiny-lora:1>


# --- file formats ------------------------------------------------------------------------------
def _pickle_str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE


def _pickle_int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)  # BININT


def _pickle_tuple(items: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(_pickle_int(i) for i in items) + b"t"  # MARK ... TUPLE


_ORDERED_DICT = b"ccollections\nOrderedDict\n)R"  # GLOBAL, EMPTY_TUPLE, REDUCE: OrderedDict()


def _state_dict_pickle(tensors: list[tuple[str, np.ndarray]]) -> bytes:
    """Protocol-2 pickle of an OrderedDict of tensors, each rebuilt by
    torch._utils._rebuild_tensor_v2 from persistent storage N (archive/data/N)."""
    out = [b"\x80\x02" + _ORDERED_DICT + b"("]
    for i, (name, a) in enumerate(tensors):
        storage = b"HalfStorage" if a.dtype == np.float16 else b"FloatStorage"
        strides = tuple(int(np.prod(a.shape[k + 1:])) for k in range(a.ndim))
        persistent_id = (b"(" + _pickle_str("storage") + b"ctorch\n" + storage + b"\n" + _pickle_str(str(i))
                         + _pickle_str("cpu") + _pickle_int(a.size) + b"tQ")  # TUPLE, BINPERSID
        out.append(_pickle_str(name) + b"ctorch._utils\n_rebuild_tensor_v2\n(" + persistent_id + _pickle_int(0)
                   + _pickle_tuple(a.shape) + _pickle_tuple(strides) + b"\x89" + _ORDERED_DICT + b"tR")
    out.append(b"u.")  # SETITEMS, STOP
    return b"".join(out)


def write_torch_zip(path: Path, tensors: list[Tensor]) -> int:
    """A PyTorch zip checkpoint (archive/data.pkl, archive/data/N), DEFLATE-compressed, with fixed
    timestamps so that the bytes are the same on every run. stable-diffusion.cpp reads it with its
    own pickle parser, which executes nothing. Returns the file's size."""
    arrays = [(name, np.ascontiguousarray(_storage_dtype(a)).reshape(a.shape or (1,))) for name, a in tensors]
    entries = [("archive/data.pkl", _state_dict_pickle(arrays))]
    entries += [(f"archive/data/{i}", a.tobytes()) for i, (_, a) in enumerate(arrays)]
    entries.append(("archive/version", b"3\n"))
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries:
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data,
                       compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return path.stat().st_size


def write_safetensors(path: Path, tensors: list[Tensor]) -> int:
    """A safetensors file (F16 / F32). Returns the file's size."""
    header: dict[str, dict[str, object]] = {}
    blobs, offset = [], 0
    for name, a in tensors:
        data = np.ascontiguousarray(_storage_dtype(a)).tobytes()
        header[name] = {"dtype": "F16" if a.dtype == np.float16 else "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for data in blobs:
            f.write(data)
    return path.stat().st_size


def _storage_dtype(a: np.ndarray) -> np.ndarray:
    if a.dtype not in (np.float16, np.float32):
        raise TypeError(f"only float16 and float32 tensors can be written, not {a.dtype}")
    return a


# --- weights -----------------------------------------------------------------------------------
class Init:
    """Where the weights come from: zeros (identity, zeros) or scaled normal draws (random)."""

    def __init__(self, mode: InitMode = "identity", seed: int = 0) -> None:
        self.mode = mode
        self.rng = np.random.default_rng(seed)

    def weight(self, *shape: int) -> np.ndarray:
        """A weight in PyTorch order (out, in, ...), float32."""
        if self.mode != "random":
            return np.zeros(shape, np.float32)
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        w: np.ndarray = self.rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))
        return w.astype(np.float32)


def _f16(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float16)


def _ones(n: int) -> np.ndarray:
    return np.ones(n, np.float32)


def _zeros(n: int) -> np.ndarray:
    return np.zeros(n, np.float32)


def flux2_klein_dit(init: Init, hidden: int = 128, depth: int = 1, depth_single: int = 1,
                    ctx_dim: int = 1) -> list[Tensor]:
    """stable-diffusion.cpp's Flux runner as FLUX.2-klein: 128 in/out channels (a 32-channel
    latent, patched 2x2), SiLU-gated MLPs of ratio 3, no biases, shared modulation. It is told
    apart by `double_stream_modulation_img.lin.weight` and the absence of `single_blocks.47.`.
    The head size is 128 (the rope axes are 4 x 32) and is read from a block's key norm, so
    `hidden` is a multiple of 128 and there is at least one block. Names have no prefix."""
    if hidden % 128 or depth + depth_single < 1:
        raise ValueError("hidden must be a multiple of 128, with at least one block")
    h, mlp, head = hidden, 3 * hidden, 128
    t: list[Tensor] = []

    def linear(name: str, n_out: int, n_in: int) -> None:
        t.append((name, _f16(init.weight(n_out, n_in))))

    def qk_norm(prefix: str) -> None:
        t.append((prefix + "norm.query_norm.scale", _ones(head)))
        t.append((prefix + "norm.key_norm.scale", _ones(head)))

    linear("img_in.weight", h, 128)
    linear("time_in.in_layer.weight", h, 256)
    linear("time_in.out_layer.weight", h, h)
    linear("txt_in.weight", h, ctx_dim)
    linear("double_stream_modulation_img.lin.weight", 6 * h, h)
    linear("double_stream_modulation_txt.lin.weight", 6 * h, h)
    linear("single_stream_modulation.lin.weight", 3 * h, h)
    for i in range(depth):
        for stream in ("img", "txt"):
            b = f"double_blocks.{i}.{stream}_"
            linear(b + "attn.qkv.weight", 3 * h, h)
            linear(b + "attn.proj.weight", h, h)
            qk_norm(b + "attn.")
            linear(b + "mlp.0.weight", 2 * mlp, h)
            linear(b + "mlp.2.weight", h, mlp)
    for i in range(depth_single):
        b = f"single_blocks.{i}."
        linear(b + "linear1.weight", 3 * h + 2 * mlp, h)
        linear(b + "linear2.weight", h, h + mlp)
        qk_norm(b)
    linear("final_layer.linear.weight", 128, h)
    linear("final_layer.adaLN_modulation.1.weight", 2 * h, h)
    return t


def qwen3_text_encoder(init: Init, hidden: int = 1) -> list[Tensor]:
    """stable-diffusion.cpp's Qwen3 text encoder with no layers: RMSNorm(embedding), `hidden` wide
    (the DiT's text-context width). Names have no prefix."""
    emb = init.weight(QWEN_VOCAB, hidden) * 0.02
    return [("model.embed_tokens.weight", _f16(emb)), ("model.norm.weight", _ones(hidden))]


ConvKind = Literal["zero", "avg", "id", "enc_out", "dec_in"]
# identity mode: the RGB channels 0..2 pass through a conv's centre tap as scale * x + shift
_PASS_THROUGH = {"id": (1.0, 0.0), "enc_out": (LATENT_SCALE, -0.5 * LATENT_SCALE),
                 "dec_in": (1.0 / LATENT_SCALE, 0.5)}


def taesd(init: Init, z_channels: int = 32, midblock_gn: bool = True) -> list[Tensor]:
    """stable-diffusion.cpp's tiny autoencoder as "taef2" (32 latent channels, GroupNorm pools in
    the middle blocks): encoder and decoder. Conv kernels are f16 (3x3 rows cannot be
    block-quantized), biases f32. In identity mode every residual block is all zeros (a plain
    ReLU) and the RGB channels go straight through."""
    c = TAE_CHANNELS
    t: list[Tensor] = []

    def conv(name: str, c_out: int, c_in: int, k: int, bias: bool = True, kind: ConvKind = "zero") -> None:
        w, b = np.zeros((c_out, c_in, k, k), np.float32), _zeros(c_out)
        if init.mode != "identity":
            w = init.weight(c_out, c_in, k, k)
        elif kind == "avg":  # a 3x3 conv with stride 2 and padding 1 acting as a 2x2 average pool
            for ch in range(3):
                w[ch, ch, 1:3, 1:3] = 0.25
        elif kind != "zero":
            scale, shift = _PASS_THROUGH[kind]
            for ch in range(3):
                w[ch, ch, k // 2, k // 2] = scale
                b[ch] = shift
        t.append((name + ".weight", _f16(w)))
        if bias:
            t.append((name + ".bias", b))

    def block(name: str, group_norm: bool = False) -> None:
        for j in (0, 2, 4):
            conv(f"{name}.conv.{j}", c, c, 3)
        if group_norm:
            conv(name + ".pool.0", 4 * c, c, 1, bias=False)
            t.append((name + ".pool.1.weight", _ones(4 * c)))
            t.append((name + ".pool.1.bias", _zeros(4 * c)))
            conv(name + ".pool.3", c, 4 * c, 1, bias=False)

    enc, dec = "encoder.layers.", "decoder.layers."
    conv(enc + "0", c, 3, 3, kind="id")
    block(enc + "1")
    for down, blocks, gn in (("2", (3, 4, 5), False), ("6", (7, 8, 9), False), ("10", (11, 12, 13), midblock_gn)):
        conv(enc + down, c, c, 3, bias=False, kind="avg")
        for i in blocks:
            block(enc + str(i), gn)
    conv(enc + "14", z_channels, c, 3, kind="enc_out")

    conv(dec + "0", c, z_channels, 3, kind="dec_in")
    for i in (2, 3, 4):
        block(dec + str(i), midblock_gn)
    ups: tuple[tuple[str, tuple[int, ...]], ...] = (("6", (7, 8, 9)), ("11", (12, 13, 14)), ("16", (17,)))
    for up, up_blocks in ups:
        conv(dec + up, c, c, 3, bias=False, kind="id")
        for i in up_blocks:
            block(dec + str(i))
    conv(dec + "18", 3, c, 3, kind="id")
    return t


def lora_tensors(targets: list[tuple[str, int, int]], rank: int = 4, alpha: float = 4.0, seed: int = 1234,
                 scale: float = 0.1) -> list[Tensor]:
    """A LoRA on DiT modules given as (module, out_features, in_features), with kohya-style keys
    `diffusion_model.<module>.lora_down.weight` / `.lora_up.weight` / `.alpha`, which
    stable-diffusion.cpp maps onto `model.diffusion_model.<module>.weight`. Shapes that do not
    fit the model, or modules it does not have, make adapters the server must refuse."""
    rng = np.random.default_rng(seed)
    t: list[Tensor] = []
    for module, n_out, n_in in targets:
        key = f"diffusion_model.{module}."
        t.append((key + "lora_down.weight", _f16((rng.standard_normal((rank, n_in)) * scale).astype(np.float32))))
        t.append((key + "lora_up.weight", _f16((rng.standard_normal((n_out, rank)) * scale).astype(np.float32))))
        t.append((key + "alpha", np.array([alpha], np.float32)))
    return t


def tiny_lora_targets(hidden: int = 128) -> list[tuple[str, int, int]]:
    """The modules the set's LoRA adapts: they exist in the default DiT and change the image."""
    return [("img_in", hidden, 128), ("final_layer.linear", 128, hidden),
            ("single_blocks.0.linear2", hidden, 4 * hidden), ("double_blocks.0.img_attn.qkv", 3 * hidden, hidden)]


# --- the set -----------------------------------------------------------------------------------
def write_sd_set(out_dir: Path, init: InitMode = "identity", seed: int = 0) -> dict[str, int]:
    """Write the model set into `out_dir`: the single-file model and its autoencoder, the same
    model split into DiT and text encoder (with the autoencoder beside them) under split/, and a
    LoRA under loras/. The bytes are the same on every run. Returns {relative path: size}."""
    weights = Init(init, seed)
    dit, llm, tae = flux2_klein_dit(weights), qwen3_text_encoder(weights), taesd(weights)
    files: dict[str, list[Tensor]] = {
        MODEL: [("model.diffusion_model." + n, a) for n, a in dit] + [("text_encoders.llm." + n, a) for n, a in llm],
        TAESD: tae,
        SPLIT_DIT: dit,
        SPLIT_LLM: llm,
        SPLIT_TAESD: tae,
    }
    sizes = {}
    for rel, tensors in files.items():
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        sizes[rel] = write_torch_zip(out_dir / rel, tensors)
    (out_dir / LORA).parent.mkdir(parents=True, exist_ok=True)
    sizes[LORA] = write_safetensors(out_dir / LORA, lora_tensors(tiny_lora_targets()))
    return sizes
