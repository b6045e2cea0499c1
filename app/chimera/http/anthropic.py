"""Anthropic Messages API: POST /v1/messages (plain and streaming) and /v1/messages/count_tokens."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from quart import Blueprint, Response

from ..errors import ChimeraError, Unsupported
from ..llm.chat import normalize_messages
from ..llm.engine import Engine
from ..llm.sequence import Delta, Finished
from ..llm.serving import Generation, new_id
from ..protocol.anthropic import CountTokensRequest, MessagesRequest, stop_reason, to_chat_messages
from .chat import tokenize_prompt
from .common import json_object, json_response, parse_model, services, sse_response

blueprint = Blueprint("anthropic", __name__)


def _prompt_tokens(engine: Engine, system: Any, messages: list[Any]) -> list[int]:
    text = engine.template.render(normalize_messages(to_chat_messages(system, messages)), add_generation_prompt=True)
    return tokenize_prompt(engine, text)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def _usage(f: Finished | None, n_prompt: int) -> dict[str, Any]:
    cached = f.usage["prompt_tokens_details"]["cached_tokens"] if f else 0
    return {"input_tokens": n_prompt, "output_tokens": f.usage["completion_tokens"] if f else 0,
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


async def _stream(gen: Generation, mid: str, model: str, n_prompt: int) -> AsyncIterator[bytes]:
    yield _event("message_start", {"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": n_prompt, "output_tokens": 0},
    }})
    yield _event("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}})
    yield _event("ping", {"type": "ping"})
    finished: Finished | None = None
    try:
        async for ev in gen.events():
            if isinstance(ev, Delta):
                if ev.text:
                    yield _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                         "delta": {"type": "text_delta", "text": ev.text}})
            else:
                finished = ev
        yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        assert finished is not None
        yield _event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(finished.reason, finished.stop_word), "stop_sequence": finished.stop_word},
            "usage": {"output_tokens": finished.usage["completion_tokens"]},
        })
        yield _event("message_stop", {"type": "message_stop"})
    except ChimeraError as e:
        yield _event("error", e.to_anthropic())
    finally:
        gen.cancel()


@blueprint.post("/v1/messages")
async def messages() -> Response:
    s = services()
    req = parse_model(MessagesRequest, await json_object())
    engine = s.require_engine()
    if req.tools:
        raise Unsupported("tools on /v1/messages are not supported by this server yet")
    prompt = _prompt_tokens(engine, req.system, req.messages)
    gen = Generation(engine, [prompt], req.generation(), 0, "messages")
    mid = "msg_" + new_id("x")[2:]
    if req.stream:
        return sse_response(_stream(gen, mid, s.model_id, len(prompt)))
    try:
        choices = await gen.collect()
    finally:
        gen.cancel()
    c = choices[0]
    f = c.finished
    return json_response({
        "id": mid, "type": "message", "role": "assistant", "model": s.model_id,
        "content": [{"type": "text", "text": "".join(c.text)}],
        "stop_reason": stop_reason(f.reason, f.stop_word) if f else "end_turn",
        "stop_sequence": f.stop_word if f else None,
        "usage": _usage(f, len(prompt)),
    })


@blueprint.post("/v1/messages/count_tokens")
async def count_tokens() -> Response:
    req = parse_model(CountTokensRequest, await json_object())
    engine = services().require_engine()
    return json_response({"input_tokens": len(_prompt_tokens(engine, req.system, req.messages))})
