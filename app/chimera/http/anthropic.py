"""Anthropic Messages API: POST /v1/messages (plain and streaming) and /v1/messages/count_tokens.

Tools and thinking use the same machinery as chat completions: the template renders the tools,
the family parser finds calls, the reasoning splitter finds `<think>` blocks. Output becomes
content blocks (`thinking`, `text`, `tool_use`), streamed with the event sequence the SDK expects.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, AsyncIterator

from quart import Blueprint, Response

from ..errors import BadRequest, ChimeraError
from ..llm import tooluse
from ..llm.chat import normalize_messages
from ..llm.engine import Engine
from ..llm.reasoning import split_with
from ..llm.sequence import Delta, Finished
from ..llm.serving import Generation, new_id
from ..llm.toolcalls import Call, StreamParser
from ..protocol.anthropic import CountTokensRequest, MessagesRequest, stop_reason, to_chat_messages
from ..protocol.openai import GenerationFields
from .chat import Splitters, apply_json_schema, reasoning_mode, start_generation, tokenize_prompt
from .chats import HEADER, chat_id_for_request, persist
from .common import json_object, json_response, parse_model, services, sse_response

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


def _prepare(engine: Engine, req: MessagesRequest | CountTokensRequest, thinking: bool,
             media: list[tuple[str, Any, str]] | None = None) -> tuple[list[int], tooluse.ToolPlan | None, str]:
    collect = media if engine.stepper.mtmd is not None else None
    messages = normalize_messages(to_chat_messages(req.system, req.messages, collect))
    choice, parallel = _tool_choice(getattr(req, "tool_choice", None))
    plan = tooluse.plan(_openai_tools(req.tools), choice, parallel, engine.template.source)
    extra: dict[str, Any] = {"enable_thinking": thinking}
    if plan is not None:
        messages = tooluse.render_messages(messages, plan)
        if plan.native:
            extra["tools"] = plan.tools
    text = engine.template.render(messages, add_generation_prompt=True, **extra)
    return tokenize_prompt(engine, text), plan, text


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def _tool_use(call: Call) -> dict[str, Any]:
    try:
        args = json.loads(call["arguments"])
    except ValueError:
        args = {}
    return {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": call["name"], "input": args}


def _usage(f: Finished | None, n_prompt: int) -> dict[str, Any]:
    # Anthropic counts the prompt as input_tokens + cache_read_input_tokens (+ cache creation)
    cached = f.usage["prompt_tokens_details"]["cached_tokens"] if f else 0
    return {"input_tokens": n_prompt - cached, "output_tokens": f.usage["completion_tokens"] if f else 0,
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


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


async def _stream(gen: Generation, mid: str, model: str, n_prompt: int, plan: tooluse.ToolPlan | None,
                  thinking: Splitters | None, save: Any) -> AsyncIterator[bytes]:
    yield _event("message_start", {"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": n_prompt, "output_tokens": 0},
    }})
    yield _event("ping", {"type": "ping"})
    blocks = _Blocks()
    splitter = thinking() if thinking is not None else None
    parser = StreamParser(plan.family) if plan else None
    finished: Finished | None = None
    acc: dict[str, list[Any]] = {"text": [], "thinking": [], "tools": []}
    saved = False

    def emit(thought: str, text: str) -> list[bytes]:
        out: list[bytes] = []
        if thought:
            acc["thinking"].append(thought)
            out += blocks.delta("thinking", {"type": "thinking_delta", "thinking": thought})
        if parser is not None and text:
            text = parser.feed(text)
        if text:
            acc["text"].append(text)
            out += blocks.delta("text", {"type": "text_delta", "text": text})
        return out

    def reply(reason: str | None, incomplete: bool) -> dict[str, Any]:
        return {"content": "".join(acc["text"]), "reasoning_content": "".join(acc["thinking"]) or None,
                "tool_calls": acc["tools"] or None, "finish_reason": reason, "incomplete": incomplete,
                "usage": _usage(finished, n_prompt) if finished else None, "timings": finished.timings if finished else None}

    try:
        async for ev in gen.events():
            if isinstance(ev, Delta):
                for b in emit(*(splitter.feed(ev.text) if splitter else ("", ev.text))):
                    yield b
            else:
                finished = ev
        for b in emit(*(splitter.finish() if splitter else ("", ""))):
            yield b
        calls: list[Call] = []
        if parser is not None:
            tail, calls = parser.finish()
            if tail:
                acc["text"].append(tail)
                for b in blocks.delta("text", {"type": "text_delta", "text": tail}):
                    yield b
        if plan is not None and not plan.parallel:
            calls = calls[:1]
        for call in calls:
            use = _tool_use(call)
            acc["tools"].append({"id": use["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}})
            for b in blocks.switch("tool_use", {**use, "input": {}}):
                yield b
            yield _event("content_block_delta", {"type": "content_block_delta", "index": blocks.index,
                                                 "delta": {"type": "input_json_delta", "partial_json": json.dumps(use["input"])}})
        if blocks.index == -1:  # an empty reply still has one (empty) text block
            for b in blocks.switch("text", {"type": "text", "text": ""}):
                yield b
        for b in blocks.close():
            yield b
        assert finished is not None
        reason = "tool_use" if calls else stop_reason(finished.reason, finished.stop_word)
        yield _event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None if calls else finished.stop_word},
            "usage": {"output_tokens": finished.usage["completion_tokens"]},
        })
        saved = True
        await save(reply(reason, False))  # committed before the last event reaches the client
        yield _event("message_stop", {"type": "message_stop"})
    except ChimeraError as e:
        yield _event("error", e.to_anthropic())
    finally:
        gen.cancel()
        if not saved:
            await save(reply(None, True))


@blueprint.post("/v1/messages")
async def messages() -> Response:
    s = services()
    req = parse_model(MessagesRequest, await json_object())
    engine = s.require_engine()
    wants_thinking = bool(req.thinking and req.thinking.get("type") == "enabled") and s.settings.reasoning_budget != 0
    media: list[tuple[str, Any, str]] = []
    prompt, plan, text = _prepare(engine, req, wants_thinking, media)
    chat_id = await chat_id_for_request(s)
    history = normalize_messages(to_chat_messages(req.system, req.messages, [] if engine.stepper.mtmd is not None else None),
                                 [] if engine.stepper.mtmd is not None else None) if chat_id else []
    gen_req = parse_model(GenerationFields, req.generation_fields())
    apply_json_schema(gen_req)
    if plan is not None and (grammar := tooluse.forced_grammar(plan)) is not None:
        if gen_req.grammar:
            raise BadRequest("a forced tool_choice cannot be combined with 'grammar' or 'json_schema'", param="tool_choice")
        gen_req.grammar = grammar
    thinking = reasoning_mode(engine, s.settings.reasoning_format, text, plan is not None)
    gen = await start_generation(engine, gen_req, text, media, s.settings, render_special=plan is not None or thinking is not None)
    prompt = gen.prompts[0]
    mid = "msg_" + new_id("x")[2:]
    headers = {HEADER: chat_id} if chat_id else {}

    async def save(reply: dict[str, Any]) -> None:
        await persist(s, chat_id, history, reply)

    if req.stream:
        return sse_response(_stream(gen, mid, s.model_id, len(prompt), plan, thinking, save), headers=headers)
    choices = await gen.collect()
    c = choices[0]
    f = c.finished
    out_text = "".join(c.text)
    thought = ""
    if thinking is not None:
        thought, out_text = split_with(thinking(), out_text)
    calls: list[Call] = []
    if plan is not None:
        parsed = plan.family.parse(out_text)
        out_text, calls = parsed.content, parsed.calls[: (None if plan.parallel else 1)]
    content: list[dict[str, Any]] = []
    if thought:
        content.append({"type": "thinking", "thinking": thought, "signature": ""})
    if out_text or not calls:
        content.append({"type": "text", "text": out_text})
    content += [_tool_use(call) for call in calls]
    body = {
        "id": mid, "type": "message", "role": "assistant", "model": s.model_id, "content": content,
        "stop_reason": "tool_use" if calls else (stop_reason(f.reason, f.stop_word) if f else "end_turn"),
        "stop_sequence": None if calls or not f else f.stop_word,
        "usage": _usage(f, len(prompt)),
    }
    await save({"content": out_text, "reasoning_content": thought or None, "finish_reason": body["stop_reason"],
                "tool_calls": [{"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": json.dumps(b["input"])}}
                               for b in content if b["type"] == "tool_use"] or None,
                "usage": body["usage"], "timings": f.timings if f else None})
    return json_response(body, headers=headers)


@blueprint.post("/v1/messages/count_tokens")
async def count_tokens() -> Response:
    req = parse_model(CountTokensRequest, await json_object())
    engine = services().require_engine()
    media: list[tuple[str, Any, str]] = []
    prompt, _, text = _prepare(engine, req, False, media)
    if media:  # count the media as the projector tokenizes them
        gen = await start_generation(engine, GenerationFields(max_tokens=0), text, media, services().settings, False)
        n = len(gen.prompts[0])
        gen.cancel()
        return json_response({"input_tokens": n})
    return json_response({"input_tokens": len(prompt)})
