"""POST /v1/chat/completions: OpenAI's chat dialect over the serving core (request → ChatTurn,
events → chat.completion objects and chunks)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response

from ..errors import ChimeraError
from ..llm.generation import new_id
from ..protocol.openai import ChatCompletionRequest
from ..serving.engine import ChatEngine
from ..serving.events import Calls, ChoiceResult, Content, Done, Progress, Reasoning, TokenLogprob, ToolCall, Usage
from ..serving.run import ChatRun
from ..serving.turn import ChatTurn
from .advice import for_client
from .common import SSE_DONE, json_object, json_response, parse_model, services, sse_event, sse_response
from .leases import Streamed
from .native import completion_object
from .turns import count_turn_tokens, start_turn

blueprint = Blueprint("chat", __name__)
FINGERPRINT = "chimera"


def chat_turn(req: ChatCompletionRequest) -> ChatTurn:
    template_vars = dict(req.chat_template_kwargs or {})
    if req.reasoning_effort is not None:
        template_vars.setdefault("reasoning_effort", req.reasoning_effort)
    return ChatTurn(
        messages=req.messages, params=req, tools=req.tools, tool_choice=req.tool_choice,
        parallel_tool_calls=req.parallel_tool_calls, response_format=req.response_format, template_vars=template_vars,
        reasoning_format=req.reasoning_format, top_logprobs=req.top_logprobs or 0, logprobs=req.logprobs,
        add_generation_prompt=req.add_generation_prompt, continue_final_message=req.continue_final_message,
    )


def _token(engine: ChatEngine, tok: int) -> tuple[str, list[int]]:
    raw = engine.token_bytes(tok)
    return raw.decode("utf-8", "replace"), list(raw)


def chat_logprobs(engine: ChatEngine, entries: list[TokenLogprob], top_n: int) -> dict[str, Any]:
    content = []
    for e in entries:
        text, raw = _token(engine, e.token)
        content.append({"token": text, "logprob": e.logprob, "bytes": raw, "top_logprobs": [
            {"token": t, "logprob": lp, "bytes": b} for (t, b), lp in ((_token(engine, tok), lp) for tok, lp in e.top[:top_n])]})
    return {"content": content}


def usage_object(u: Usage) -> dict[str, Any]:
    details: dict[str, Any] = {"cached_tokens": u.cached}
    if u.media:
        details["image_tokens"] = u.media
    return {"prompt_tokens": u.prompt, "completion_tokens": u.completion, "total_tokens": u.total,
            "prompt_tokens_details": details}


def _calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]


def _message(c: ChoiceResult) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": c.content}
    if c.calls:
        message = {"role": "assistant", "content": c.content or None, "tool_calls": _calls(c.calls)}
    if c.reasoning:
        message["reasoning_content"] = c.reasoning
    return message


async def _stream(run: ChatRun, base: dict[str, Any], engine: ChatEngine, req: ChatCompletionRequest,
                  verbose: bool) -> AsyncIterator[bytes]:
    top_n = req.top_logprobs or 0

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, lp: Any = None,
              timings: dict[str, Any] | None = None, **extra: Any) -> bytes:
        body = base | {"choices": [{"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}]} | extra
        return sse_event(body | {"timings": timings} if timings is not None else body)

    left = run.n_choices
    usage = bool(req.stream_options and req.stream_options.include_usage)
    timings: dict[str, Any] = {}
    try:
        for index in range(run.n_choices):  # as llama-server and OpenAI: the role first, no content yet
            yield chunk(index, {"role": "assistant", "content": None})
        async for ev in run.events():
            if isinstance(ev, Progress):  # as llama-server: a role chunk carrying the prompt's progress
                yield chunk(ev.index, {"role": "assistant", "content": None}, timings=ev.timings, prompt_progress=ev.public())
            elif isinstance(ev, Reasoning):
                yield chunk(ev.index, {"reasoning_content": ev.text}, timings=ev.timings)
            elif isinstance(ev, Content):
                lp = chat_logprobs(engine, ev.logprobs, top_n) if req.logprobs and ev.logprobs else None
                yield chunk(ev.index, {"content": ev.text} if ev.text else {}, lp=lp, timings=ev.timings)
            elif isinstance(ev, Calls):
                for i, call in enumerate(ev.calls):
                    yield chunk(ev.index, {"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                                           "function": {"name": call.name, "arguments": ""}}]})
                    yield chunk(ev.index, {"tool_calls": [{"index": i, "function": {"arguments": call.arguments}}]})
            elif isinstance(ev, Done):
                left -= 1
                body = base | {"choices": [{"index": ev.index, "delta": {}, "logprobs": None, "finish_reason": ev.reason}]}
                if verbose and ev.index == 0:
                    body["__verbose"] = verbose_object(run, "", ev, stream=True)
                if left == 0:
                    timings = ev.timings
                    if not usage:  # the timings ride on the last chunk
                        body["timings"] = timings
                yield sse_event(body)
        if usage:
            yield sse_event(base | {"choices": [], "usage": usage_object(run.usage()), "timings": timings})
    except ChimeraError as e:
        yield sse_event(for_client(e).to_openai())
    yield SSE_DONE


@blueprint.post("/v1/chat/completions")
@blueprint.post("/chat/completions")
async def chat_completions() -> Response:
    s = services()
    req = parse_model(ChatCompletionRequest, await json_object())
    run, headers = await start_turn(s, chat_turn(req), req.model)
    engine = run.engine
    verbose = req.verbose if req.verbose is not None else s.settings.verbose
    base = {"id": new_id("chatcmpl"), "object": "chat.completion.chunk", "created": int(time.time()),
            "model": run.model_id, "system_fingerprint": FINGERPRINT}
    if req.stream:
        return sse_response(Streamed(_stream(run, base, engine, req, verbose), run.close), headers=headers)
    try:
        results = await run.collect()
        choices = [{"index": c.index, "message": _message(c),
                    "logprobs": chat_logprobs(engine, c.logprobs, req.top_logprobs or 0) if req.logprobs else None,
                    "finish_reason": c.reason} for c in results]
        extra = {"__verbose": verbose_object(run, results[0].content, results[0].done)} if verbose and results else {}
    finally:
        run.close()  # the model may go once this returns: its tokens are read before
    done = [c.done for c in results if c.done is not None]
    body = base | {"object": "chat.completion", "choices": choices, "usage": usage_object(run.usage()),
                   "timings": done[-1].timings if done else {}} | extra
    return json_response(body, headers=headers)


def verbose_object(run: ChatRun, content: str, done: Done | None, stream: bool = False) -> dict[str, Any]:
    """llama-server's `__verbose` (with -v, or `verbose: true`): the native completion object of
    the first choice, with the prompt as the model read it (special tokens shown)."""
    engine, prompt = run.engine, run.gen.prompts[0]
    settings = run.spec.settings(engine.eog_tokens(), stream=stream) if run.spec is not None else {}
    return completion_object(
        content=content, model=run.model_id, prompt=engine.prompt_text(prompt), n_prompt=len(prompt),
        reason=done.reason if done else None, stop_word=done.stop_word if done else None,
        n_predicted=done.completion_tokens if done else 0, timings=done.timings if done else {}, settings=settings,
        truncated=done.truncated if done else False)


@blueprint.post("/v1/chat/completions/input_tokens")
@blueprint.post("/chat/completions/input_tokens")
async def input_tokens() -> Response:
    """llama-server's token count of a chat request: the prompt it would render, nothing generated."""
    s = services()
    req = parse_model(ChatCompletionRequest, await json_object())
    return json_response({"object": "response.input_tokens", "input_tokens": await count_turn_tokens(s, chat_turn(req), req.model)})
