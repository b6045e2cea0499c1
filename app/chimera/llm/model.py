"""A loaded GGUF model and its vocabulary: tokenize, detokenize, pieces, metadata."""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest
from .native import Native, init_numa, load

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("chimera.llm")


def _progress_reporter(name: str) -> Callable[[float], None]:
    """A tqdm bar on a terminal, log lines at each quarter otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=100, desc=f"loading {name}", unit="%", leave=False, file=sys.stderr)

        def update(p: float) -> None:
            bar.update(int(p * 100) - bar.n)
            if p >= 1.0:
                bar.close()

        return update
    marks = [0.25, 0.5, 0.75, 1.0]

    def log_update(p: float) -> None:
        while marks and p >= marks[0]:
            log.info("loading %s: %d%%", name, int(marks.pop(0) * 100))

    return log_update


SPLIT_MODES = {"none": 0, "layer": 1, "row": 2, "tensor": 3}
# llama.cpp's enum llama_load_mode, by llama-server's --load-mode names
LOAD_MODES = {"auto": -1, "none": 0, "mmap": 1, "mlock": 2, "mmap+mlock": 3, "dio": 4}


@dataclass(frozen=True)
class Placement:
    """Where and how the weights are loaded (llama-server's -ngl, --no-mmap, --mlock, -sm, -mg,
    -ts, --device)."""
    n_gpu_layers: int = 999
    mode: str = "auto"  # --load-mode; the older --no-mmap and --mlock map onto it
    mmap: bool = True
    mlock: bool = False
    numa: str | None = None
    split_mode: str = "layer"
    main_gpu: int = 0
    tensor_split: tuple[float, ...] = ()
    devices: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()  # --override-kv KEY=TYPE:VALUE

    @classmethod
    def of(cls, settings: Settings) -> Placement:
        return cls(settings.n_gpu_layers, settings.load_mode, not settings.no_mmap, settings.mlock, settings.numa,
                   settings.split_mode, settings.main_gpu, settings.tensor_split, settings.device, settings.override_kv)

    def load_mode(self) -> int:
        """--load-mode, or what the older --no-mmap / --mlock ask for."""
        if self.mode != "auto" or (self.mmap and not self.mlock):
            return LOAD_MODES[self.mode]
        if not self.mmap:
            return LOAD_MODES["mlock" if self.mlock else "none"]
        return LOAD_MODES["mmap+mlock"]


def _devices(native: Native, names: tuple[str, ...]) -> Any:
    """A NULL-terminated array of the named ggml devices ('none': none, so the CPU alone)."""
    g = native.ggml
    found = {}
    for i in range(g.ggml_backend_dev_count()):
        dev = g.ggml_backend_dev_get(i)
        found[g.ggml_backend_dev_name(dev).decode().lower()] = dev
    picked = []
    for name in names:
        if name.lower() == "none":
            continue
        if name.lower() not in found:
            raise RuntimeError(f"--device: no device {name!r} (this build has: {', '.join(sorted(found)) or 'none'}; see --list-devices)")
        picked.append(found[name.lower()])
    return (ctypes.c_void_p * (len(picked) + 1))(*picked, None)


KV_OVERRIDE_TAGS = {"int": 0, "float": 1, "bool": 2, "str": 3}  # enum llama_model_kv_override_type


def _kv_overrides(ll: Any, items: tuple[str, ...]) -> Any:
    """An array of llama_model_kv_override for llama.cpp, ended by an entry with an empty key."""
    from ..llama_flags import parse_override

    arr = (ll.llama_model_kv_override * (len(items) + 1))()
    for entry, item in zip(arr, items):
        key, kind, value = parse_override(item)
        entry.key = key.encode()
        entry.tag = KV_OVERRIDE_TAGS[kind]
        if kind == "int":
            entry.value.val_i64 = int(value)
        elif kind == "float":
            entry.value.val_f64 = float(value)
        elif kind == "bool":
            entry.value.val_bool = bool(value)
        else:
            entry.value.val_str = str(value).encode()
    return arr


class Model:
    def __init__(self, native: Native, ptr: Any, path: Path) -> None:
        self.native = native
        self.ll = native.llama
        self.ptr = ptr
        self.path = path
        self.vocab = self.ll.llama_model_get_vocab(ptr)
        self.n_vocab = int(self.ll.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(self.ll.llama_model_n_ctx_train(ptr))
        self.n_embd = int(self.ll.llama_model_n_embd(ptr))
        self.add_bos = bool(self.ll.llama_vocab_get_add_bos(self.vocab))
        self.has_encoder = bool(self.ll.llama_model_has_encoder(ptr))
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[tuple[int, bool], bytes] = {}

    @classmethod
    def load(cls, path: Path, placement: Placement | None = None, progress: Callable[[float], None] | None = None) -> Model:
        """Load the weights, reporting progress on the terminal (and to `progress`)."""
        native = load()
        ll = native.llama
        params = ll.llama_model_default_params()
        place = placement or Placement()
        if place.numa is not None:
            init_numa(place.numa)
        params.n_gpu_layers = place.n_gpu_layers
        params.load_mode = place.load_mode()
        params.split_mode = SPLIT_MODES[place.split_mode]
        params.main_gpu = place.main_gpu
        keep: list[Any] = []
        if place.tensor_split:
            n = int(ll.llama_max_devices())
            if len(place.tensor_split) > n:
                raise RuntimeError(f"--tensor-split: {len(place.tensor_split)} values, but this build has at most {n} devices")
            split = (ctypes.c_float * n)(*place.tensor_split)
            keep.append(split)
            params.tensor_split = ctypes.cast(split, ctypes.POINTER(ctypes.c_float))
        if place.devices:
            devs = _devices(native, place.devices)
            keep.append(devs)
            params.devices = ctypes.addressof(devs)
        if place.overrides:
            arr = _kv_overrides(ll, place.overrides)
            keep.append(arr)
            params.kv_overrides = ctypes.cast(arr, ctypes.POINTER(ll.llama_model_kv_override))
        report = _progress_reporter(path.name)

        @ll.llama_progress_callback
        def on_progress(fraction: float, _user: Any) -> bool:
            report(fraction)
            if progress is not None:
                progress(fraction)
            return True

        params.progress_callback = on_progress
        ptr = ll.llama_model_load_from_file(str(path).encode(), params)
        if not ptr:
            raise RuntimeError(f"llama.cpp could not load {path} (not a GGUF model, or an unsupported architecture)")
        model = cls(native, ptr, path)
        model._keep = [on_progress, *keep]  # type: ignore[attr-defined]
        return model

    # -- metadata ---------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(4096)
        n = self.ll.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            self.ll.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    def metadata(self) -> dict[str, str]:
        """Every GGUF metadata key and its value as llama.cpp prints it (arrays abbreviated)."""
        out: dict[str, str] = {}
        buf = ctypes.create_string_buffer(4096)
        for i in range(int(self.ll.llama_model_meta_count(self.ptr))):
            n = self.ll.llama_model_meta_key_by_index(self.ptr, i, buf, len(buf))
            if n < 0:
                continue
            key = buf.value.decode("utf-8", "replace")
            n = self.ll.llama_model_meta_val_str_by_index(self.ptr, i, buf, len(buf))
            if n >= 0:
                out[key] = buf.value.decode("utf-8", "replace")
        return out

    def chat_template(self) -> str | None:
        t = self.ll.llama_model_chat_template(self.ptr, None)
        return t.decode("utf-8", "replace") if t else None

    def description(self) -> str:
        buf = ctypes.create_string_buffer(256)
        self.ll.llama_model_desc(self.ptr, buf, len(buf))
        return buf.value.decode(errors="replace")

    def n_params(self) -> int:
        return int(self.ll.llama_model_n_params(self.ptr))

    def size(self) -> int:
        return int(self.ll.llama_model_size(self.ptr))

    def token_text(self, token: int) -> str:
        return self.piece(token, special=True).decode("utf-8", "replace")

    def bos_token(self) -> str:
        t = int(self.ll.llama_vocab_bos(self.vocab))
        return self.token_text(t) if t >= 0 else ""

    def eos_token(self) -> str:
        t = int(self.ll.llama_vocab_eos(self.vocab))
        return self.token_text(t) if t >= 0 else ""

    def is_eog(self, token: int) -> bool:
        return bool(self.ll.llama_vocab_is_eog(self.vocab, token))

    def eog_tokens(self) -> frozenset[int]:
        """Every end-of-generation token of the vocabulary. One call per token, keeping the GIL
        (262,144 calls for Gemma 3: releasing and retaking the GIL on each took 0.24 s)."""
        is_eog = self.native.hold.llama_vocab_is_eog
        vocab = self.vocab
        return frozenset(t for t in range(self.n_vocab) if is_eog(vocab, t))

    # -- text <-> tokens --------------------------------------------------------------------
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (ctypes.c_int32 * cap)()
        n = self.ll.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (ctypes.c_int32 * cap)()
            n = self.ll.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        return list(buf[:n])

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token (may be part of a UTF-8 character). Cached per token."""
        key = (token, special)
        cached = self._pieces.get(key)
        if cached is not None:
            return cached
        n = self.ll.llama_token_to_piece(self.vocab, token, self._piece_buf, len(self._piece_buf), 0, special)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = self.ll.llama_token_to_piece(self.vocab, token, big, len(big), 0, special)
            out = big.raw[:n]
        else:
            out = self._piece_buf.raw[:n]
        self._pieces[key] = out
        return out

    def detokenize(self, tokens: list[int], special: bool = False, param: str = "tokens") -> str:
        self.check_tokens(tokens, param)  # llama.cpp aborts the process on an id outside the vocabulary
        return b"".join(self.piece(t, special) for t in tokens).decode("utf-8", "replace")

    def check_tokens(self, tokens: list[int], param: str = "prompt") -> None:
        for t in tokens:
            if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < self.n_vocab:
                raise BadRequest(f"token id {t!r} is outside the vocabulary (0..{self.n_vocab - 1})", param=param)

    def free(self) -> None:
        if self.ptr:
            self.ll.llama_model_free(self.ptr)
            self.ptr = None
