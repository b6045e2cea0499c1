"""OpenAI Responses over the serving core: POST /v1/responses (plain and streaming), GET and
DELETE by id. Events become output items (reasoning, message, function_call; file_search_call
first when the tool ran). `previous_response_id` continues a conversation stored in this process
(`store`, default true)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response

from ..errors import ChimeraError
from ..protocol.responses import ResponsesRequest, input_messages
from ..services import Services
from ..serving.events import Calls, ChoiceResult, Content, Done, Progress, Reasoning, ToolCall
from ..serving.run import ChatRun
from .advice import for_client
from .chat import chat_turn
from .common import json_object, json_response, parse_model, services, sse_event, sse_response
from .file_search import FileSearch, run_file_search
from .leases import Streamed
from .turns import count_turn_tokens, start_turn

blueprint = Blueprint("responses", __name__)


def _rid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _message_item(text: str, item_id: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def _reasoning_item(text: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": _rid("rs"), "summary": [], "content": [{"type": "reasoning_text", "text": text}]}


def _call_item(call: ToolCall) -> dict[str, Any]:
    return {"type": "function_call", "id": _rid("fc"), "call_id": call.id, "name": call.name,
            "arguments": call.arguments, "status": "completed"}


class Turn:
    """One /v1/responses request: its conversation, and its output as Responses items."""

    def __init__(self, s: Services, req: ResponsesRequest, fs: FileSearch | None) -> None:
        self.s, self.req, self.fs = s, req, fs
        history: list[dict[str, Any]] = s.responses.get(req.previous_response_id)[1] if req.previous_response_id else []
        self.conversation = history + input_messages(req.input)
        system = "\n\n".join(x for x in (req.instructions, fs.context() if fs else None) if x)
        self.messages = ([{"role": "system", "content": system}] if system else []) + self.conversation
        self.id = _rid("resp")
        self.created = int(time.time())
        self.model_id = req.model or ""

    def body(self, status: str, output: list[dict[str, Any]], run: ChatRun | None, done: Done | None) -> dict[str, Any]:
        req = self.req
        usage = None
        if run is not None and done is not None:
            u = run.usage()
            usage = {"input_tokens": u.prompt, "input_tokens_details": {"cached_tokens": u.cached, "cache_write_tokens": 0},
                     "output_tokens": u.completion, "output_tokens_details": {"reasoning_tokens": 0},
                     "total_tokens": u.total}
        incomplete = {"reason": "max_output_tokens"} if done is not None and done.reason == "length" else None
        return {
            "id": self.id, "object": "response", "created_at": self.created,
            "status": "incomplete" if incomplete else status, "incomplete_details": incomplete, "error": None,
            "model": self.model_id, "output": output, "usage": usage,
            "instructions": req.instructions, "previous_response_id": req.previous_response_id,
            "tools": req.tools or [], "tool_choice": req.tool_choice or "auto",
            "parallel_tool_calls": req.parallel_tool_calls is not False,
            "temperature": req.temperature, "top_p": req.top_p, "max_output_tokens": req.max_output_tokens,
            "store": req.store, "metadata": req.metadata or {}, "text": req.text or {"format": {"type": "text"}},
            "reasoning": req.reasoning, "truncation": "disabled",
        }

    def items(self, c: ChoiceResult, message_id: str | None = None) -> list[dict[str, Any]]:
        items = [self.fs.item()] if self.fs else []
        if c.reasoning:
            items.append(_reasoning_item(c.reasoning))
        if c.content or not c.calls:
            message = _message_item(c.content, message_id or _rid("msg"))
            if self.fs:
                message["content"][0]["annotations"] = self.fs.annotations(c.content)
            items.append(message)
        return items + [_call_item(call) for call in c.calls]

    def remember(self, body: dict[str, Any], c: ChoiceResult) -> None:
        if not self.req.store:
            return
        reply: dict[str, Any] = {"role": "assistant", "content": c.content}
        if c.calls:
            reply["tool_calls"] = [{"id": x.id, "type": "function", "function": {"name": x.name, "arguments": x.arguments}}
                                   for x in c.calls]
        self.s.responses.put(body, self.conversation + [reply])


async def _stream(turn: Turn, run: ChatRun) -> AsyncIterator[bytes]:
    seq = 0

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        seq += 1
        return sse_event({"type": kind, "sequence_number": seq - 1, **fields}, event=kind)

    yield event("response.created", response=turn.body("in_progress", [], None, None))
    yield event("response.in_progress", response=turn.body("in_progress", [], None, None))
    base = 0
    if turn.fs is not None:
        fs_id = turn.fs.id
        yield event("response.output_item.added", output_index=0, item=turn.fs.item("in_progress"))
        for phase in ("in_progress", "searching", "completed"):
            yield event(f"response.file_search_call.{phase}", output_index=0, item_id=fs_id)
        yield event("response.output_item.done", output_index=0, item=turn.fs.item())
        base = 1
    msg_id, opened = _rid("msg"), False
    result = ChoiceResult(0)
    body: dict[str, Any] | None = None
    try:
        async for ev in run.events():
            if isinstance(ev, Progress):  # llama-server's prompt progress, on a response.in_progress event
                extra = {"timings": ev.timings} if ev.timings is not None else {}
                yield event("response.in_progress", response=turn.body("in_progress", [], None, None),
                            prompt_progress=ev.public(), **extra)
            elif isinstance(ev, Reasoning):
                result.reasoning += ev.text
            elif isinstance(ev, Calls):
                result.calls = ev.calls
            elif isinstance(ev, Content) and ev.text:
                if not opened:  # the message item opens with its first text, after file_search's
                    opened = True
                    yield event("response.output_item.added", output_index=base, item=_message_item("", msg_id, "in_progress"))
                    yield event("response.content_part.added", item_id=msg_id, output_index=base, content_index=0,
                                part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
                result.content += ev.text
                extra = {"timings": ev.timings} if ev.timings is not None else {}
                yield event("response.output_text.delta", item_id=msg_id, output_index=base, content_index=0,
                            delta=ev.text, logprobs=[], **extra)
            elif isinstance(ev, Done):
                result.done = ev
                items = turn.items(result, msg_id)
                output = [it for it in items if it["type"] == "file_search_call"]
                message = next((it for it in items if it["type"] == "message"), None)
                rest = [it for it in items if it["type"] not in ("file_search_call", "message")]
                if opened and message is not None:
                    output.append(message)
                    part = message["content"][0]
                    for ai, ann in enumerate(part["annotations"]):
                        yield event("response.output_text.annotation.added", item_id=msg_id, output_index=base,
                                    content_index=0, annotation_index=ai, annotation=ann)
                    yield event("response.output_text.done", item_id=msg_id, output_index=base, content_index=0,
                                text=part["text"], logprobs=[])
                    yield event("response.content_part.done", item_id=msg_id, output_index=base, content_index=0, part=part)
                    yield event("response.output_item.done", output_index=base, item=message)
                elif message is not None:
                    rest.insert(0, message)
                for item in rest:
                    index = len(output)
                    output.append(item)
                    yield event("response.output_item.added", output_index=index, item=item)
                    if item["type"] == "function_call":
                        yield event("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                                    delta=item["arguments"])
                        yield event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                    arguments=item["arguments"])
                    yield event("response.output_item.done", output_index=index, item=item)
                body = turn.body("completed", output, run, ev)
                turn.remember(body, result)
        if body is not None:  # the exchange is saved by now
            yield event("response.completed", response=body, timings=result.done.timings if result.done else {})
    except ChimeraError as e:
        e = for_client(e)
        yield event("error", code=e.code, message=e.message, param=e.param)


@blueprint.post("/v1/responses")
@blueprint.post("/responses")
async def create() -> Response:
    req = parse_model(ResponsesRequest, await json_object())
    s = services()
    fs = None
    if req.file_search_tools():
        history = s.responses.get(req.previous_response_id)[1] if req.previous_response_id else []
        fs = await run_file_search(req.file_search_tools(), history + input_messages(req.input), req.include)
    turn = Turn(s, req, fs)
    run, headers = await start_turn(s, chat_turn(req.chat_request(turn.messages)), req.model)
    turn.model_id = run.model_id
    if req.stream:
        return sse_response(Streamed(_stream(turn, run), run.close), headers=headers)
    try:
        c = (await run.collect())[0]
    finally:
        run.close()
    body = turn.body("completed", turn.items(c), run, c.done)
    turn.remember(body, c)
    return json_response(body, headers=headers)


@blueprint.post("/v1/responses/input_tokens")
@blueprint.post("/responses/input_tokens")
async def input_tokens() -> Response:
    """The prompt tokens a Responses request would take (with its previous_response_id's
    conversation; file_search's retrieval is not run), as llama-server counts them."""
    req = parse_model(ResponsesRequest, await json_object())
    s = services()
    turn = Turn(s, req, None)
    n = await count_turn_tokens(s, chat_turn(req.chat_request(turn.messages)), req.model)
    return json_response({"object": "response.input_tokens", "input_tokens": n})


@blueprint.get("/v1/responses/<rid>")
async def get(rid: str) -> Response:
    body, _ = services().responses.get(rid)
    return json_response(body)


@blueprint.delete("/v1/responses/<rid>")
async def delete(rid: str) -> Response:
    services().responses.delete(rid)
    return json_response({"id": rid, "object": "response", "deleted": True})
