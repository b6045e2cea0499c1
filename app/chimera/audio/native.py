"""What whisper.cpp knows that pywhispercpp does not bind: each segment's no-speech probability.

pywhispercpp's context object is a pybind11 instance that holds a small struct whose first member
is the `whisper_context *`. We read that pointer and call `libwhisper`'s own
`whisper_full_get_segment_no_speech_prob` through ctypes, on the same library the binding loaded
(found in this process's memory map). The pointer is trusted only after the library, asked
through it, reports the same vocabulary size as the binding does; otherwise there is no value.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any


def _loaded_library(stem: str) -> str | None:
    """The path of a shared library this process has mapped whose name starts with `stem`."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if Path(path).name.startswith(stem):
            return path
    return None


class NoSpeech:
    """`prob(i)`: the no-speech probability of segment i of the last `whisper_full`, or None."""

    def __init__(self, pw: Any, ctx: Any) -> None:
        self.ptr: int | None = None
        self.lib: Any = None
        path = _loaded_library("libwhisper.so")
        if path is None:
            return
        lib = ctypes.CDLL(path)
        lib.whisper_n_vocab.argtypes = [ctypes.c_void_p]
        lib.whisper_n_vocab.restype = ctypes.c_int
        lib.whisper_full_get_segment_no_speech_prob.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.whisper_full_get_segment_no_speech_prob.restype = ctypes.c_float
        holder = ctypes.c_void_p.from_address(id(ctx) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
        ptr = ctypes.c_void_p.from_address(holder).value if holder else None
        if ptr and lib.whisper_n_vocab(ptr) == pw.whisper_n_vocab(ctx):
            self.ptr, self.lib = ptr, lib

    def prob(self, segment: int) -> float | None:
        if self.ptr is None:
            return None
        return float(self.lib.whisper_full_get_segment_no_speech_prob(self.ptr, segment))
