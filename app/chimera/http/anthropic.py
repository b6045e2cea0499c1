"""Anthropic Messages over the serving core: POST /v1/messages (plain and streaming) and
/v1/messages/count_tokens. Events become content blocks (`thinking`, `text`, `tool_use`),
streamed with the event sequence the SDK expects."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response

from ..errors import BadRequest, ChimeraError
from ..llm.generation import new_id
from ..protocol.anthropic import CountTokensRequest, MessagesRequest, stop_reason, to_chat_messages
from ..protocol.params import GenerationFields
from ..services import Services
from ..serving.events import Calls, Content, Done, Reasoning, ToolCall, Usage
from ..serving.run import ChatRun
from ..serving.turn import ChatTurn
from .advice import for_client
from .common import json_object, json_response, parse_model, services, sse_event, sse_response
from .leases import Streamed
from .turns import count_turn_tokens, start_turn

blueprint = Blueprint("anthropic", __name__)


def _openai_tools(tools: list[Any] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise BadRequest(f"tools[{i}] must have a 'name'", param=f"tools.{i}")
        if t.get("type") not in (None, "custom"):
            raise BadRequest(f"tools[{i}]: server tool {t.get('type')!r} is not available here", param=f"tools.{i}.type")
        out.append({"type": "function", "function": {
            "name": t["name"], "description": t.get("description", ""),
            "parameters": t.get("input_schema", {"type": "object", "properties": {}}),
        }})
    return out


def _tool_choice(choice: dict[str, Any] | None) -> tuple[Any, bool | None]:
    if choice is None:
        return None, None
    parallel = None if not choice.get("disable_parallel_tool_use") else False
    kind = choice.get("type")
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", parallel
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}, parallel
    raise BadRequest("tool_choice.type must be auto, any, tool or none", param="tool_choice.type")


def messages_turn(req: MessagesRequest | CountTokensRequest, thinking: bool, params: GenerationFields) -> ChatTurn:
    choice, parallel = _tool_choice(getattr(req, "tool_choice", None))
    return ChatTurn(messages=to_chat_messages(req.system, req.messages), params=params, tools=_openai_tools(req.tools),
                    tool_choice=choice, parallel_tool_calls=parallel, template_vars={"enable_thinking": thinking})


def _wants_thinking(s: Services, req: MessagesRequest) -> bool:
    return bool(req.thinking and req.thinking.get("type") == "enabled") and s.settings.thinking() is not False


def _usage(u: Usage) -> dict[str, Any]:
    # Anthropic counts the prompt as input_tokens + cache_read_input_tokens (+ cache creation)
    return {"input_tokens": u.computed, "output_tokens": u.completion, "cache_read_input_tokens": u.cached,
            "cache_creation_input_tokens": 0}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return sse_event(data, event=name)


def _tool_use(call: ToolCall) -> dict[str, Any]:
    try:
        args = json.loads(call.arguments)
    except ValueError:
        args = {}
    return {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": call.name, "input": args}


class _Blocks:
    """Open/close content blocks as the kind of streamed output changes."""

    def __init__(self) -> None:
        self.index = -1
        self.kind: str | None = None

    def switch(self, kind: str, start: dict[str, Any]) -> list[bytes]:
        out = self.close()
        self.index += 1
        self.kind = kind
        out.append(_event("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": start}))
        return out

    def delta(self, kind: str, delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if self.kind != kind:
            out += self.switch(kind, {"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking"
                               else {"type": "text", "text": ""})
        out.append(_event("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}))
        return out

    def close(self) -> list[bytes]:
        if self.kind is None:
            return []
        self.kind = None
        return [_event("content_block_stop", {"type": "content_block_stop", "index": self.index})]


async def _stream(run: ChatRun, mid: str, model: str) -> AsyncIterator[bytes]:
    yield _event("message_start", {"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": run.prompt_tokens, "output_tokens": 0},
    }})
    yield _event("ping", {"type": "ping"})
    blocks = _Blocks()
    calls: list[ToolCall] = []
    done: Done | None = None
    try:
        async for ev in run.events():
            if ev.index != 0:
                continue
            if isinstance(ev, Reasoning):
                for b in blocks.delta("thinking", {"type": "thinking_delta", "thinking": ev.text}):
                    yield b
            elif isinstance(ev, Content) and ev.text:
                for b in blocks.delta("text", {"type": "text_delta", "text": ev.text}):
                    yield b
            elif isinstance(ev, Calls):
                calls = ev.calls
                for call in calls:
                    use = _tool_use(call)
                    for b in blocks.switch("tool_use", {**use, "input": {}}):
                        yield b
                    yield _event("content_block_delta", {"type": "content_block_delta", "index": blocks.index, "delta": {
                        "type": "input_json_delta", "partial_json": json.dumps(use["input"])}})
            elif isinstance(ev, Done):
                done = ev
                if blocks.index == -1:  # an empty reply still has one (empty) text block
                    for b in blocks.switch("text", {"type": "text", "text": ""}):
                        yield b
                for b in blocks.close():
                    yield b
                yield _event("message_delta", {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use" if calls else stop_reason(ev.reason, ev.stop_word),
                              "stop_sequence": None if calls else ev.stop_word},
                    "usage": {"output_tokens": ev.completion_tokens},
                })
        if done is not None:  # the exchange is saved by now
            yield _event("message_stop", {"type": "message_stop"})
    except ChimeraError as e:
        yield _event("error", for_client(e).to_anthropic())


@blueprint.post("/v1/messages")
async def messages() -> Response:
    s = services()
    req = parse_model(MessagesRequest, await json_object())
    params = parse_model(GenerationFields, req.generation_fields())
    run, headers = await start_turn(s, messages_turn(req, _wants_thinking(s, req), params), req.model)
    mid = "msg_" + new_id("x")[2:]
    if req.stream:
        return sse_response(Streamed(_stream(run, mid, run.model_id), run.close), headers=headers)
    try:
        c = (await run.collect())[0]
    finally:
        run.close()
    content: list[dict[str, Any]] = []
    if c.reasoning:
        content.append({"type": "thinking", "thinking": c.reasoning, "signature": ""})
    if c.content or not c.calls:
        content.append({"type": "text", "text": c.content})
    content += [_tool_use(call) for call in c.calls]
    d = c.done
    body = {
        "id": mid, "type": "message", "role": "assistant", "model": run.model_id, "content": content,
        "stop_reason": "tool_use" if c.calls else (stop_reason(d.reason, d.stop_word) if d else "end_turn"),
        "stop_sequence": None if c.calls or not d else d.stop_word,
        "usage": _usage(run.usage()),
    }
    return json_response(body, headers=headers)


@blueprint.post("/v1/messages/count_tokens")
async def count_tokens() -> Response:
    s = services()
    req = parse_model(CountTokensRequest, await json_object())
    turn = messages_turn(req, False, GenerationFields(max_tokens=0))
    return json_response({"input_tokens": await count_turn_tokens(s, turn, req.model)})
