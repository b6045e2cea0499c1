"""llama-server's native completion object, in its field names: what `/completion` and `/infill`
answer, and what `__verbose` carries on the OpenAI routes (`verbose: true`, or `-v`)."""

from __future__ import annotations

import math
from typing import Any

from ..llm.sequence import TokenLogprobs
from ..serving.engine import ChatEngine


def stop_type(reason: str | None, stop_word: str | None) -> str:
    """eos (the model ended), word (a stop string), limit (n_predict or the context's end)."""
    if reason in ("stop", "tool_calls"):
        return "word" if stop_word else "eos"
    return "limit" if reason is not None else "none"


def completion_object(*, content: str, model: str, prompt: str, n_prompt: int, reason: str | None,
                      stop_word: str | None, n_predicted: int, timings: dict[str, Any], settings: dict[str, Any],
                      index: int = 0, tokens: list[int] | None = None, truncated: bool = False,
                      slot: int = -1) -> dict[str, Any]:
    """A finished generation as llama-server's non-OpenAI result (server_task_result_cmpl_final)."""
    return {
        "index": index, "content": content, "tokens": tokens or [], "id_slot": slot, "stop": True, "model": model,
        "tokens_predicted": n_predicted, "tokens_evaluated": n_prompt, "generation_settings": settings,
        "prompt": prompt, "has_new_line": "\n" in content, "truncated": truncated,
        "stop_type": stop_type(reason, stop_word), "stopping_word": stop_word or "",
        "tokens_cached": n_prompt + max(0, n_predicted - 1),  # what the slot's KV cache holds at the end
        "timings": timings,
    }


def token_probs(engine: ChatEngine, entries: list[TokenLogprobs], post_sampling: bool) -> list[dict[str, Any]]:
    """`completion_probabilities`: each generated token with its probability and the most likely
    tokens at its place; log-probabilities, or with post_sampling_probs the probabilities over
    what the sampler chain kept (`prob`, `top_probs`)."""
    value, top_key = ("prob", "top_probs") if post_sampling else ("logprob", "top_logprobs")

    def one(tok: int, lp: float) -> dict[str, Any]:
        raw = engine.token_bytes(tok)
        return {"id": tok, "token": raw.decode("utf-8", "ignore"), "bytes": list(raw),
                value: math.exp(lp) if post_sampling else lp}

    return [one(e["id"], e["logprob"]) | {top_key: [one(t, lp) for t, lp in e["top"]]} for e in entries]


def pick_fields(body: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """llama-server's `response_fields`: only these fields; `a/b` is b inside a, under the key
    "a/b". A path that names nothing is left out."""
    out: dict[str, Any] = {}
    for path in paths:
        cur: Any = body
        for key in path.split("/"):
            if not isinstance(cur, dict) or key not in cur:
                break
            cur = cur[key]
        else:
            out[path] = cur
    return out
