"""What the meta routes report about a running engine: model card, props, slots."""

from __future__ import annotations

from typing import Any

from .engine import Engine


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
        "n_ctx": engine.plan.n_ctx,
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
            "params": engine.defaults.public(),
        },
        "build_info": f"b0-{(engine.ll.llama_version() or b'').decode()}",  # as native.build_info()
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


def metadata(engine: Engine) -> dict[str, Any]:
    """The model's GGUF metadata, numbers as numbers (Ollama's model_info)."""
    out: dict[str, Any] = {}
    for key, value in engine.model.metadata().items():
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    out.setdefault("general.parameter_count", engine.model.n_params())
    return out


FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
              12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
              19: "IQ2_XXS", 20: "IQ2_XS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 28: "IQ2_S", 29: "IQ4_XS",
              31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4"}


def quantization(engine: Engine) -> str:
    """The weights' type, from general.file_type (llama.cpp's llama_ftype)."""
    ftype = engine.model.meta("general.file_type")
    if ftype is None or not ftype.isdigit():
        return "unknown"
    return FILE_TYPES.get(int(ftype), f"type {ftype}")


def has_fim(engine: Engine) -> bool:
    m, ll = engine.model, engine.ll
    return min(int(f(m.vocab)) for f in (ll.llama_vocab_fim_pre, ll.llama_vocab_fim_suf, ll.llama_vocab_fim_mid)) >= 0
