"""llama.cpp context parameters from the settings: sizes, threads, KV cache types, RoPE and YaRN.
The model's context and a draft model's context are built from the same function."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings

# ggml's type ids of the KV cache types llama-server offers
KV_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20, "bf16": 30}
ROPE_SCALING = {"none": 0, "linear": 1, "yarn": 2}


def rope(p: Any, s: Settings) -> None:
    """llama-server's RoPE and YaRN flags onto the context parameters (unset: the model's own)."""
    if s.rope_scaling is not None:
        p.rope_scaling_type = ROPE_SCALING[s.rope_scaling]
    if s.rope_freq_base is not None:
        p.rope_freq_base = s.rope_freq_base
    if s.rope_freq_scale is not None:
        p.rope_freq_scale = s.rope_freq_scale
    elif s.rope_scale is not None:
        p.rope_freq_scale = 1.0 / s.rope_scale
    for name in ("yarn_orig_ctx", "yarn_ext_factor", "yarn_attn_factor", "yarn_beta_slow", "yarn_beta_fast"):
        value = getattr(s, name)
        if value is not None:
            setattr(p, name, value)


def context_params(ll: Any, s: Settings, *, n_ctx: int, n_seq: int, unified: bool, threads: int | None,
                   threads_batch: int | None, type_k: str, type_v: str, whole_batch: bool = False) -> Any:
    """llama_context_params for a context of n_ctx cells over n_seq sequences (whole_batch: a
    non-causal model needs each input whole in one micro-batch)."""
    p = ll.llama_context_default_params()
    p.n_ctx = n_ctx
    p.n_seq_max = n_seq
    p.n_batch = s.batch_size
    p.n_ubatch = s.batch_size if whole_batch else min(s.ubatch_size, s.batch_size)
    p.n_threads = threads or max(1, os.cpu_count() or 2)
    p.n_threads_batch = threads_batch or p.n_threads
    p.flash_attn_type = {"on": 1, "off": 0, "auto": -1}[s.flash_attn]
    p.type_k, p.type_v = KV_TYPES[type_k], KV_TYPES[type_v]
    p.kv_unified = unified
    p.no_perf = True
    return p
