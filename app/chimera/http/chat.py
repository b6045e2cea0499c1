"""POST /v1/chat/completions: messages through the chat template, tools, structured output."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any, AsyncIterator, Callable

import trio
from quart import Blueprint, Response

from ..config import Settings
from ..errors import BadRequest, ChimeraError
from ..llm import tooluse
from ..llm.chat import normalize_messages
from ..llm.engine import Engine
from ..llm.grammars import JSON_GBNF
from ..llm.schema import schema_to_grammar
from ..llm.reasoning import OPEN, HarmonySplitter, ReasoningSplitter, split_with
from ..llm.sequence import Delta, Finished
from ..llm.media import media_bytes
from ..llm.serving import Generation, chat_logprobs, new_id
from ..llm.toolcalls import Call, StreamParser
from ..protocol.openai import ChatCompletionRequest, GenerationFields
from .chats import HEADER, chat_id_for_request, persist
from .common import SSE_DONE, json_object, json_response, parse_model, services, sse_event, sse_response

blueprint = Blueprint("chat", __name__)
FINGERPRINT = "chimera"


def tokenize_prompt(engine: Engine, text: str) -> list[int]:
    starts_with_bos = bool(engine.template.bos_token) and text.startswith(engine.template.bos_token)
    return engine.model.tokenize(text, add_special=not starts_with_bos, parse_special=True)


def apply_json_schema(req: GenerationFields) -> None:
    """llama-server's top-level `json_schema` field."""
    if req.json_schema is not None:
        if req.grammar:
            raise BadRequest("give either 'grammar' or 'json_schema', not both", param="json_schema")
        req.grammar = schema_to_grammar(req.json_schema, param="json_schema")


def _set_grammar(req: GenerationFields, grammar: str, param: str) -> None:
    if req.grammar:
        raise BadRequest(f"'{param}' cannot be combined with 'grammar', 'json_schema' or another constraint", param=param)
    req.grammar = grammar


def apply_response_format(req: ChatCompletionRequest) -> None:
    apply_json_schema(req)
    rf = req.response_format
    if rf is None or rf.get("type") == "text":
        return
    kind = rf.get("type")
    if kind == "json_object":
        _set_grammar(req, JSON_GBNF, "response_format")
    elif kind == "json_schema":
        spec = rf.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise BadRequest("response_format.json_schema must be an object with a 'schema'", param="response_format.json_schema")
        _set_grammar(req, schema_to_grammar(spec["schema"]), "response_format")
    else:
        raise BadRequest(f"response_format.type must be text, json_object or json_schema, got {kind!r}", param="response_format.type")


def template_vars(req: ChatCompletionRequest, settings: Settings) -> dict[str, Any]:
    """Extra template variables: chat_template_kwargs, the thinking switch, reasoning_effort."""
    extra: dict[str, Any] = {}
    if settings.reasoning_budget == 0:
        extra["enable_thinking"] = False
    if req.reasoning_effort is not None:
        extra["reasoning_effort"] = req.reasoning_effort
    for key, value in (req.chat_template_kwargs or {}).items():
        if key in ("messages", "tools", "add_generation_prompt", "bos_token", "eos_token"):
            raise BadRequest(f"chat_template_kwargs cannot set {key!r}", param=f"chat_template_kwargs.{key}")
        extra[key] = value
    return extra


def render_prompt(engine: Engine, req: ChatCompletionRequest, settings: Settings,
                  media: list[tuple[str, Any, str]] | None = None,
                  add_generation_prompt: bool = True) -> tuple[str, tooluse.ToolPlan | None]:
    messages = normalize_messages(req.messages, media if engine.stepper.mtmd is not None else None)
    plan = tooluse.plan(req.tools, req.tool_choice, req.parallel_tool_calls, engine.template.source)
    extra = template_vars(req, settings)
    if plan is not None:
        messages = tooluse.render_messages(messages, plan)
        if plan.native:
            extra["tools"] = plan.tools
        grammar = tooluse.forced_grammar(plan)
        if grammar is not None:
            _set_grammar(req, grammar, "tool_choice")
    return engine.template.render(messages, add_generation_prompt=add_generation_prompt, **extra), plan


def _tool_call_objects(calls: list[Call], plan: tooluse.ToolPlan) -> list[dict[str, Any]]:
    if not plan.parallel:
        calls = calls[:1]
    return [{"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
             "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]


Splitters = Callable[[], "ReasoningSplitter | HarmonySplitter"]


def reasoning_mode(engine: Engine, fmt: str, prompt: str, tools: bool) -> Splitters | None:
    """How reasoning is separated from the reply, or None to leave it in content.

    harmony (gpt-oss) channels when the template has them and no tools are in play (with tools,
    the gpt-oss call parser reads the channels); `<think>` blocks when the template knows them
    (`auto`) or always (`deepseek`), starting inside one if the prompt opened it."""
    src = engine.template.source
    if fmt == "none":
        return None
    if "<|channel|>" in src and not tools:
        return HarmonySplitter
    if fmt == "auto" and OPEN not in src:
        return None
    inside = prompt.rstrip().endswith(OPEN)
    return lambda: ReasoningSplitter(inside)


async def _stream(gen: Generation, base: dict[str, Any], engine: Engine, req: ChatCompletionRequest,
                  plan: tooluse.ToolPlan | None, thinking: Splitters | None, save: Any) -> AsyncIterator[bytes]:
    """`save(reply)` persists choice 0 as the client received it (before [DONE], or marked
    incomplete if the client went away first)."""
    parsers = {s.index: StreamParser(plan.family) for s in gen.seqs} if plan else {}
    sent: dict[str, Any] = {"content": [], "reasoning_content": [], "tool_calls": [], "finish_reason": None}
    saved = False
    splitters = {s.index: thinking() for s in gen.seqs} if thinking is not None else {}
    top_n = req.top_logprobs or 0
    finished: list[Finished] = []

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> bytes:
        if index == 0:
            sent["content"].append(delta.get("content") or "")
            sent["reasoning_content"].append(delta.get("reasoning_content") or "")
        return sse_event(base | {"choices": [{"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}]})

    def reply(incomplete: bool) -> dict[str, Any]:
        return {"content": "".join(sent["content"]), "reasoning_content": "".join(sent["reasoning_content"]) or None,
                "tool_calls": sent["tool_calls"] or None, "finish_reason": sent["finish_reason"],
                "usage": gen.usage(finished), "timings": finished[0].timings if finished else None, "incomplete": incomplete}

    try:
        for seq in gen.seqs:
            yield chunk(seq.index, {"role": "assistant", "content": ""})
        async for ev in gen.events():
            if isinstance(ev, Delta):
                thought, text = splitters[ev.index].feed(ev.text) if splitters else ("", ev.text)
                text = parsers[ev.index].feed(text) if plan else text
                lp = chat_logprobs(engine, ev.logprobs, top_n) if req.logprobs and ev.logprobs else None
                delta = ({"reasoning_content": thought} if thought else {}) | ({"content": text} if text else {})
                if delta or lp:
                    yield chunk(ev.index, delta, lp=lp)
                continue
            finished.append(ev)
            reason = ev.reason
            thought, rest = splitters[ev.index].finish() if splitters else ("", "")
            if thought:
                yield chunk(ev.index, {"reasoning_content": thought})
            if plan is not None:
                rest = parsers[ev.index].feed(rest) if rest else ""
                tail, calls = parsers[ev.index].finish()
                rest += tail
            if rest:
                yield chunk(ev.index, {"content": rest})
            if plan is not None:
                for i, call in enumerate(_tool_call_objects(calls, plan)):
                    if ev.index == 0:
                        sent["tool_calls"].append(call)
                    fn = call["function"]
                    yield chunk(ev.index, {"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                                           "function": {"name": fn["name"], "arguments": ""}}]})
                    yield chunk(ev.index, {"tool_calls": [{"index": i, "function": {"arguments": fn["arguments"]}}]})
                    reason = "tool_calls"
            body = base | {"choices": [{"index": ev.index, "delta": {}, "logprobs": None, "finish_reason": reason}]}
            if ev.index == 0:
                sent["finish_reason"] = reason
            if len(finished) == len(gen.seqs):
                body["timings"] = ev.timings
            yield sse_event(body)
        if req.stream_options and req.stream_options.include_usage:
            yield sse_event(base | {"choices": [], "usage": gen.usage(finished)})
    except ChimeraError as e:
        yield sse_event(e.to_openai())
    finally:
        gen.cancel()
        if not saved and sent["finish_reason"] is None:  # the client went away, or an error ended it
            saved = True
            await save(reply(incomplete=True))
    if not saved:
        saved = True
        await save(reply(incomplete=False))  # committed before [DONE] reaches the client
    yield SSE_DONE


async def start_generation(engine: Engine, req: GenerationFields, text: str, media: list[tuple[str, Any, str]],
                           settings: Settings, render_special: bool) -> Generation:
    """The request's Generation; a prompt with media goes through the projector first."""
    n_probs = req.n_probs_wanted() if isinstance(req, ChatCompletionRequest) else 0
    if not media:
        return Generation(engine, [tokenize_prompt(engine, text)], req, n_probs, "messages", render_special=render_special)
    for kind, _, param in media:
        if (kind == "image" and not engine.vision) or (kind == "audio" and not engine.audio):
            raise BadRequest(f"the loaded projector does not read {kind}", param=param)
    blobs = []
    for _, src, param in media:  # a remote fetch (--allow-remote-media) must not block the trio thread
        fetch = partial(media_bytes, src, settings.allow_remote_media, param)
        blobs.append(fetch() if src.startswith("data:") else await trio.to_thread.run_sync(fetch, abandon_on_cancel=True))
    add_special = not (engine.template.bos_token and text.startswith(engine.template.bos_token))
    mp = await engine.media_prompt(text, blobs, add_special)
    try:
        return Generation(engine, [mp.tokens], req, n_probs, "messages", render_special=render_special, media=mp)
    except BaseException:
        engine.free_later(mp, [])
        raise


@blueprint.post("/v1/chat/completions")
@blueprint.post("/chat/completions")
async def chat_completions() -> Response:
    s = services()
    req = parse_model(ChatCompletionRequest, await json_object())
    engine = s.require_engine()
    apply_response_format(req)
    chat_id = await chat_id_for_request(s)
    headers = {HEADER: chat_id} if chat_id else {}
    # the messages as saved (only when saving: render_prompt normalizes them again for the template)
    history = normalize_messages(req.messages, [] if engine.stepper.mtmd is not None else None) if chat_id else []
    media: list[tuple[str, Any, str]] = []
    text, plan = render_prompt(engine, req, s.settings, media)
    thinking = reasoning_mode(engine, req.reasoning_format or s.settings.reasoning_format, text, plan is not None)
    gen = await start_generation(engine, req, text, media, s.settings, render_special=plan is not None or thinking is not None)
    base = {"id": new_id("chatcmpl"), "object": "chat.completion.chunk", "created": gen.created,
            "model": s.model_id, "system_fingerprint": FINGERPRINT}
    if req.stream:
        async def save(reply: dict[str, Any]) -> None:
            await persist(s, chat_id, history, reply)

        return sse_response(_stream(gen, base, engine, req, plan, thinking, save), headers=headers)
    choices = await gen.collect()
    finished = [c.finished for c in choices if c.finished]
    out = []
    for c in choices:
        content: str | None = "".join(c.text)
        thought = ""
        if thinking is not None:
            thought, content = split_with(thinking(), content or "")
        message: dict[str, Any] = {"role": "assistant", "content": content}
        reason = c.finished.reason if c.finished else "stop"
        if plan is not None:
            parsed = plan.family.parse(content or "")
            if parsed.calls:
                message = {"role": "assistant", "content": parsed.content or None,
                           "tool_calls": _tool_call_objects(parsed.calls, plan)}
                reason = "tool_calls"
        if thought:
            message["reasoning_content"] = thought
        out.append({"index": c.index, "message": message,
                    "logprobs": chat_logprobs(engine, c.logprobs, req.top_logprobs or 0) if req.logprobs else None,
                    "finish_reason": reason})
    body = base | {
        "object": "chat.completion", "choices": out, "usage": gen.usage(finished),
        "timings": finished[-1].timings if finished else {},
    }
    await persist(s, chat_id, history, out[0]["message"] | {
        "finish_reason": out[0]["finish_reason"], "usage": body["usage"], "timings": body["timings"]})  # before the reply
    return json_response(body, headers=headers)
