"""How big the KV cache is and how the slots share it.

As llama-server: `-c 0` (the default) means the model's training context, and with the slot count
left to its default the slots share one unified KV cache, so a single conversation may use all of
it while several short ones run side by side. An explicit `-np` without `-kvu` splits the cache
evenly, each slot getting `-c / -np` tokens. A training context whose cache would not fit in memory
is lowered (never below MIN_AUTO_CTX), with the reason logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import DEFAULT_SLOTS, Settings

# bytes per element of each KV cache type (block types: block bytes / block elements)
KV_TYPE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32,
                 "q5_0": 22 / 32, "q5_1": 24 / 32, "iq4_nl": 18 / 32}
MIN_AUTO_CTX = 4096  # a lowered training context stays at least this (llama-server's --fit-ctx)
CTX_ALIGN = 256  # llama.cpp pads the cache to this
MEMORY_MARGIN = 1 << 30  # left free beside the weights and the cache


@dataclass(frozen=True)
class ContextPlan:
    n_ctx: int  # cells in the KV cache, all slots together
    n_slots: int
    unified: bool  # one cache shared by the slots (else an equal stream per slot)
    n_ctx_slot: int  # most tokens one sequence may hold
    note: str | None = None  # why the training context was lowered

    @property
    def shared(self) -> bool:
        """Slots compete for cells: a sequence may find the cache full before its own limit."""
        return self.unified and self.n_slots > 1 and self.n_ctx_slot * self.n_slots > self.n_ctx


def kv_bytes_per_token(meta: Callable[[str], Any], type_k: str = "f16", type_v: str = "f16") -> int:
    """The KV cache's bytes per token, from GGUF metadata (`meta(key)` gives a value or None):
    every layer's K and V rows. Sliding-window layers are counted as full ones (an upper bound)."""
    def num(key: str, default: int) -> int:
        v = meta(key)
        try:
            return int(v) if v not in (None, "") else default
        except (TypeError, ValueError):
            return default

    arch = str(meta("general.architecture") or "")
    layers = num(f"{arch}.block_count", 0)
    embd = num(f"{arch}.embedding_length", 0)
    heads = max(1, num(f"{arch}.attention.head_count", 1))
    kv_heads = num(f"{arch}.attention.head_count_kv", heads)
    k_len = num(f"{arch}.attention.key_length", embd // heads)
    v_len = num(f"{arch}.attention.value_length", embd // heads)
    per = layers * kv_heads * (k_len * KV_TYPE_BYTES[type_k] + v_len * KV_TYPE_BYTES[type_v])
    return int(per + 0.5)


def plan_context(ctx_size: int, parallel: int, kv_unified: bool | None, per_slot: int, n_ctx_train: int,
                 kv_per_token: int, available: int | None) -> ContextPlan:
    """The cache for these settings. `parallel` -1 is auto (DEFAULT_SLOTS, unified unless
    `kv_unified` is False); `per_slot` > 0 caps each sequence (llama-server's
    --kv-unified-per-slot); `available`: bytes the cache may take, None for no limit."""
    n_slots = DEFAULT_SLOTS if parallel < 1 else parallel
    unified = (parallel < 1) if kv_unified is None else kv_unified
    if per_slot > 0:
        unified = True
    train = n_ctx_train or MIN_AUTO_CTX
    note = None
    if ctx_size > 0:
        total = ctx_size
    elif per_slot > 0:
        total = per_slot * n_slots
    else:
        total = train if unified else train * n_slots
        if available is not None and kv_per_token > 0 and total * kv_per_token > available:
            fit = max(available // kv_per_token // CTX_ALIGN * CTX_ALIGN, min(MIN_AUTO_CTX * (1 if unified else n_slots), total))
            if fit < total:
                note = (f"the model's training context of {train} tokens{'' if unified else f' in each of {n_slots} slots'} "
                        f"needs a {_gib(total * kv_per_token)} KV cache and {_gib(available)} of memory is free for it: "
                        f"using -c {fit} (set -c to choose)")
                total = fit
    if unified:
        limit = min(per_slot, total) if per_slot > 0 else total
        return ContextPlan(total, n_slots, True, max(16, limit), note)
    each = max(16, total // n_slots)
    return ContextPlan(each * n_slots, n_slots, False, each, note)


def plan_for(settings: Settings, meta: Callable[[str], Any], available: int | None, train: int | None = None) -> ContextPlan:
    """plan_context for a generation model with these settings and GGUF metadata (`train`: the
    training context as the loaded model has it, --override-kv applied; else from `meta`)."""
    arch = str(meta("general.architecture") or "")
    if train is None:
        try:
            train = int(meta(f"{arch}.context_length") or 0)
        except (TypeError, ValueError):
            train = 0
    kv = kv_bytes_per_token(meta, settings.cache_type_k, settings.cache_type_v)
    return plan_context(settings.ctx_size, settings.parallel, settings.unified_kv(), settings.kv_unified_per_slot,
                        train, kv, available)


def memory_for_cache(model_bytes: int) -> int | None:
    """Bytes of memory the KV cache may take: what is available now, less the weights (mapped,
    they may not be paged in yet) and a margin."""
    try:
        import psutil

        free = int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no figure: no limit
        return None
    return max(0, free - MEMORY_MARGIN - model_bytes)


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB"
