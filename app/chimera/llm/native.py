"""The llama.cpp library: loading its backends once, routing its log, and describing it.

The CPU wheel is built with GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS (native/cmake-args.sh): the
CPU backend exists as one library per x86-64 level beside libggml, and ggml picks the best one
for this CPU when we load them from that directory. GPU backends (CUDA, Vulkan) are loaded the
same way when their libraries are present.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("chimera.llama")

_DEV_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}


@dataclass
class Native:
    lib_dir: Path
    ggml: ctypes.CDLL
    llama: Any  # the llama_cpp.llama_cpp module
    hold: ctypes.PyDLL  # libllama again, for short calls that keep the GIL (see held_functions)
    keep: list[Any] = field(default_factory=list)  # ctypes callbacks that must stay alive
    last_error: str = ""  # llama.cpp's last error log line (its functions return NULL without a reason)


def _held_functions(llama: Any) -> ctypes.PyDLL:
    """libllama through ctypes.PyDLL: calls keep the GIL instead of releasing it.

    A ctypes call normally releases the GIL and takes it back afterwards; on the engine thread
    that hand-back can wait for the trio thread's switch interval on every call. Sampling one
    slot takes microseconds, so the engine thread keeps the GIL for it; only llama_decode (which
    runs for milliseconds) goes through the releasing binding.
    """
    hold = ctypes.PyDLL(llama._lib._name)
    vp, i32 = ctypes.c_void_p, ctypes.c_int32
    for name, args, res in (
        ("llama_sampler_sample", [vp, vp, i32], i32),
        ("llama_get_logits_ith", [vp, i32], ctypes.POINTER(ctypes.c_float)),
        ("llama_memory_seq_rm", [vp, i32, i32, i32], ctypes.c_bool),
        ("llama_vocab_is_eog", [vp, i32], ctypes.c_bool),
    ):
        fn = getattr(hold, name)
        fn.argtypes = args
        fn.restype = res
    return hold


def _declare(ggml: ctypes.CDLL) -> None:
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    sigs = {
        "ggml_backend_load_all_from_path": ([cp], None),
        "ggml_backend_reg_count": ([], ctypes.c_size_t),
        "ggml_backend_reg_get": ([ctypes.c_size_t], vp),
        "ggml_backend_reg_name": ([vp], cp),
        "ggml_backend_dev_count": ([], ctypes.c_size_t),
        "ggml_backend_dev_get": ([ctypes.c_size_t], vp),
        "ggml_backend_dev_name": ([vp], cp),
        "ggml_backend_dev_description": ([vp], cp),
        "ggml_backend_dev_type": ([vp], ctypes.c_int),
        "ggml_backend_dev_memory": ([vp, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)], None),
        "ggml_backend_reg_get_proc_address": ([vp, cp], vp),
        "ggml_backend_reg_by_name": ([cp], vp),
        "ggml_backend_register": ([vp], None),
        "ggml_backend_dev_by_name": ([cp], vp),
        "ggml_backend_dev_by_type": ([ctypes.c_int], vp),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(ggml, name)
        fn.argtypes = args
        fn.restype = res


def _libggml_path(lib_dir: Path) -> Path:
    """The libggml that libllama itself links (by its soname): wheels hold copies, not symlinks,
    of libggml.so / libggml.so.0, and only the linked copy holds llama's backend registry."""
    for name in ("libggml.so.0", "libggml.0.dylib", "ggml.dll", "libggml.so", "libggml.dylib"):
        if (lib_dir / name).exists():
            return lib_dir / name
    raise RuntimeError(f"libggml not found in {lib_dir}")


@functools.cache
def load() -> Native:
    """Import llama-cpp-python, load every ggml backend from its library dir, init llama."""
    import llama_cpp.llama_cpp as llama

    lib_dir = Path(llama.__file__).parent / "lib"
    ggml = ctypes.CDLL(str(_libggml_path(lib_dir)), mode=ctypes.RTLD_GLOBAL)
    _declare(ggml)
    native = Native(lib_dir=lib_dir, ggml=ggml, llama=llama, hold=_held_functions(llama))
    _route_log(native)
    if ggml.ggml_backend_reg_count() == 0:
        ggml.ggml_backend_load_all_from_path(os.fsencode(lib_dir))
    if ggml.ggml_backend_reg_count() == 0:
        raise RuntimeError(f"no ggml backend could be loaded from {lib_dir}")
    llama.llama_backend_init()
    return native


NUMA = {"distribute": 1, "isolate": 2, "numactl": 3}


@functools.cache
def init_numa(strategy: str) -> None:
    """--numa: llama.cpp's NUMA strategy, once per process, before a model loads."""
    load().llama.llama_numa_init(NUMA[strategy])


def _route_log(native: Native) -> None:
    """Send llama.cpp's log to Python logging (debug level; errors stay visible)."""
    llama = native.llama
    pending: list[bytes] = []

    def on_log(level: int, text: bytes, _user: Any) -> None:
        pending.append(text or b"")
        if not text or not text.endswith(b"\n"):
            return
        line = b"".join(pending).decode("utf-8", "replace").rstrip()
        pending.clear()
        if level == 4:  # GGML_LOG_LEVEL_ERROR
            native.last_error = line
            log.error("%s", line)
        elif level == 3:
            log.warning("%s", line) if log.isEnabledFor(logging.DEBUG) else None
        else:
            log.debug("%s", line)

    cb = llama.llama_log_callback(on_log)
    native.keep.append(cb)
    llama.llama_log_set(cb, ctypes.c_void_p(0))


class _Feature(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p)]


_GET_FEATURES = ctypes.CFUNCTYPE(ctypes.POINTER(_Feature), ctypes.c_void_p)


def backend_features(native: Native, reg: int) -> dict[str, str]:
    """A backend's features (for the CPU: the instruction sets of the variant that was picked)."""
    fp = native.ggml.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_get_features")
    if not fp:
        return {}
    feats = _GET_FEATURES(fp)(reg)
    out, i = {}, 0
    while feats and feats[i].name:
        out[feats[i].name.decode()] = (feats[i].value or b"").decode()
        i += 1
    return out


def build_info() -> str:
    """llama.cpp's build string in llama-server's `b<build number>-<commit>` form. The binding's
    build has no git checkout, where llama.cpp's own build numbers it 0; libllama's version
    stands in for the commit."""
    return f"b0-{(load().llama.llama_version() or b'').decode()}"


def device_list(n: Native, rpc_memory: bool = True) -> list[dict[str, Any]]:
    """Every ggml device with its memory; `rpc`: a device of an RPC server (`--rpc`), whose
    description is its endpoint. rpc_memory False: RPC devices are not asked (after an RPC
    server died, asking would wait for ever); their memory is None."""
    g = n.ggml
    out = []
    for i in range(g.ggml_backend_dev_count()):
        dev = g.ggml_backend_dev_get(i)
        name = g.ggml_backend_dev_name(dev).decode()
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        asked = rpc_memory or not name.startswith("RPC")
        if asked:
            g.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        out.append({
            "name": name,
            "description": g.ggml_backend_dev_description(dev).decode(errors="replace"),
            "type": _DEV_TYPES.get(g.ggml_backend_dev_type(dev), "unknown"),
            "memory_total": total.value if asked else None,
            "memory_free": free.value if asked else None,
            "rpc": name.startswith("RPC"),
        })
    return out


def describe(rpc_memory: bool = True) -> dict[str, Any]:
    """Versions, loaded backends, devices and CPU features, for /v1/chimera/info."""
    import importlib.metadata

    n = load()
    g = n.ggml
    backends, features = [], {}
    for i in range(g.ggml_backend_reg_count()):
        reg = g.ggml_backend_reg_get(i)
        name = g.ggml_backend_reg_name(reg).decode()
        backends.append(name)
        features[name] = backend_features(n, reg)
    devices = device_list(n, rpc_memory)
    variants = sorted(p.name for p in n.lib_dir.glob("libggml-cpu-*"))
    return {
        "binding": importlib.metadata.version("llama-cpp-python"),
        "version": (n.llama.llama_version() or b"").decode(),
        "backends": backends,
        "devices": devices,
        "cpu_variants_available": variants,
        "cpu_features": sorted(k for k, v in features.get("CPU", {}).items() if v == "1"),
        "backend_features": features,
        "gpu_offload": bool(n.llama.llama_supports_gpu_offload()),
        "mmap": bool(n.llama.llama_supports_mmap()),
        "mlock": bool(n.llama.llama_supports_mlock()),
    }


def give_heap_back() -> None:
    """Return freed heap pages to the OS (glibc's malloc_trim): a model's KV cache and compute
    buffers are freed as many mid-sized blocks that glibc keeps in its heap otherwise, so the
    resident size of a server that unloads models would climb with each load. No-op elsewhere."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
