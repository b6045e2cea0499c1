"""What the meta routes report about a running engine: model card, props, slots."""

from __future__ import annotations

from typing import Any

from .engine import Engine
from .sampling import SamplingParams


def model_card(engine: Engine, model_id: str, created: int) -> dict[str, Any]:
    m = engine.model
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "chimera",
        "capabilities": (["embeddings"] if engine.embeddings else ["completion", "chat"])
        + (["vision"] if engine.vision else []) + (["audio"] if engine.audio else []),
        "meta": {
            "n_vocab": m.n_vocab,
            "n_ctx_train": m.n_ctx_train,
            "n_embd": m.n_embd,
            "n_params": m.n_params(),
            "size": m.size(),
            "description": m.description(),
        },
    }


def props(engine: Engine, model_id: str) -> dict[str, Any]:
    t = engine.template
    return {
        "model_alias": model_id,
        "model_path": str(engine.model.path),
        "n_ctx": engine.n_ctx_slot * engine.n_slots,
        "n_ctx_slot": engine.n_ctx_slot,
        "total_slots": engine.n_slots,
        "embeddings": engine.embeddings,
        "chat_template": t.source,
        "chat_template_name": t.name,
        "bos_token": t.bos_token,
        "eos_token": t.eos_token,
        "modalities": {"vision": engine.vision, "audio": engine.audio},
        "default_generation_settings": {
            "n_ctx": engine.n_ctx_slot,
            "params": SamplingParams().public() | {"n_predict": -1, "cache_prompt": True},
        },
        "build_info": (engine.ll.llama_version() or b"").decode(),
    }


def slots(engine: Engine) -> list[dict[str, Any]]:
    out = []
    for s in engine.slots:
        seq = s.seq
        out.append({
            "id": s.id,
            "n_ctx": engine.n_ctx_slot,
            "is_processing": seq is not None,
            "n_cached_tokens": len(s.cache),
            "task": None if seq is None else {
                "id": seq.id,
                "n_prompt_tokens": len(seq.prompt),
                "n_prompt_tokens_cached": seq.n_cached,
                "n_prompt_tokens_processed": seq.n_prompt_done,
                "n_decoded": len(seq.generated),
                "n_predict": seq.max_tokens,
                "params": seq.params.public(),
            },
        })
    return out
