"""How the KV cache is sized and shared: llama-server's defaults (-c 0, -np auto, unified cache),
explicit splits, --kv-unified-per-slot, and a training context lowered to fit in memory."""

from __future__ import annotations

from chimera.config import Settings
from chimera.llm.context import CTX_ALIGN, MIN_AUTO_CTX, kv_bytes_per_token, plan_context, plan_for

META = {"general.architecture": "llama", "llama.block_count": 30, "llama.embedding_length": 576,
        "llama.attention.head_count": 9, "llama.attention.head_count_kv": 3, "llama.context_length": 8192}


def test_kv_bytes_per_token_counts_every_layer_k_and_v() -> None:
    # 30 layers x 3 KV heads x 64 dims x (K + V) x 2 bytes
    assert kv_bytes_per_token(META.get) == 30 * 3 * 64 * 2 * 2
    assert kv_bytes_per_token(META.get, "q8_0", "q8_0") == round(30 * 3 * 64 * 2 * 34 / 32)
    explicit = {**META, "llama.attention.key_length": 128, "llama.attention.value_length": 96}
    assert kv_bytes_per_token(explicit.get) == 30 * 3 * (128 + 96) * 2


def test_defaults_give_one_conversation_the_whole_training_context() -> None:
    p = plan_for(Settings(), META.get, None)
    assert (p.n_ctx, p.n_slots, p.unified, p.n_ctx_slot, p.note) == (8192, 4, True, 8192, None)
    assert p.shared


def test_an_explicit_slot_count_splits_the_cache_as_llama_server_does() -> None:
    p = plan_for(Settings(ctx_size=4096, parallel=4), META.get, None)
    assert (p.n_ctx, p.unified, p.n_ctx_slot, p.shared) == (4096, False, 1024, False)
    p = plan_for(Settings(parallel=2), META.get, None)  # -c 0: the training context for each slot
    assert (p.n_ctx, p.n_ctx_slot) == (16384, 8192)
    p = plan_for(Settings(ctx_size=4096, parallel=4, kv_unified=True), META.get, None)
    assert (p.n_ctx, p.unified, p.n_ctx_slot) == (4096, True, 4096)
    p = plan_for(Settings(ctx_size=4096, no_kv_unified=True), META.get, None)
    assert (p.n_ctx, p.n_slots, p.unified, p.n_ctx_slot) == (4096, 4, False, 1024)


def test_kv_unified_per_slot_caps_each_sequence_and_sizes_the_pool() -> None:
    p = plan_for(Settings(kv_unified_per_slot=1000, parallel=3), META.get, None)
    assert (p.n_ctx, p.n_slots, p.unified, p.n_ctx_slot, p.shared) == (3000, 3, True, 1000, False)
    p = plan_for(Settings(kv_unified_per_slot=1000, ctx_size=2048), META.get, None)
    assert (p.n_ctx, p.n_ctx_slot, p.shared) == (2048, 1000, True)


def test_a_training_context_too_big_for_memory_is_lowered_with_the_reason() -> None:
    per = 128 * 1024  # an 8B model's f16 KV: 128 KiB a token
    p = plan_context(0, -1, None, 0, 131072, per, 3 << 30)  # 3 GiB free for the cache
    assert p.n_ctx == (3 << 30) // per // CTX_ALIGN * CTX_ALIGN == 24576
    assert p.note is not None and "131072" in p.note and "16.0 GiB" in p.note and "-c 24576" in p.note
    tiny = plan_context(0, -1, None, 0, 131072, per, 1 << 20)  # never below the floor
    assert tiny.n_ctx == MIN_AUTO_CTX
    split = plan_context(0, 2, None, 0, 131072, per, 3 << 30)  # split: each slot gets half of what fits
    assert split.n_ctx == 24576 and split.n_ctx_slot == 12288 and "each of 2 slots" in (split.note or "")
    assert plan_context(8192, -1, None, 0, 131072, per, 1 << 20).note is None  # -c given: taken as is
    assert plan_context(0, -1, None, 0, 8192, per, None).n_ctx == 8192  # no memory figure: no limit
