"""OpenAI Responses API: POST /v1/responses (plain and streaming), GET and DELETE by id.

A request becomes a chat completion (same template, tools, reasoning and structured output);
its output becomes Responses items. `previous_response_id` continues a stored conversation kept
in this process (`store`, default true).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator

from quart import Blueprint, Response

from ..errors import ChimeraError
from ..llm.reasoning import split_with
from ..llm.sequence import Finished
from ..llm.serving import Generation
from ..llm.toolcalls import Call, StreamParser
from ..protocol.responses import ResponsesRequest, input_messages
from .chat import apply_response_format, reasoning_mode, render_prompt, tokenize_prompt
from .chats import HEADER, chat_id_for_request, persist
from .file_search import FileSearch, run_file_search
from .common import json_object, json_response, parse_model, services, sse_response

blueprint = Blueprint("responses", __name__)


def _rid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _message_item(text: str, item_id: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def _reasoning_item(text: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": _rid("rs"), "summary": [], "content": [{"type": "reasoning_text", "text": text}]}


def _call_item(call: Call) -> dict[str, Any]:
    return {"type": "function_call", "id": _rid("fc"), "call_id": "call_" + uuid.uuid4().hex[:24],
            "name": call["name"], "arguments": call["arguments"], "status": "completed"}


class Turn:
    """One /v1/responses request on its way through the engine."""

    def __init__(self, req: ResponsesRequest, fs: FileSearch | None = None) -> None:
        s = services()
        self.s, self.req = s, req
        self.engine = s.require_engine()
        history: list[dict[str, Any]] = []
        if req.previous_response_id:
            _, history = s.responses.get(req.previous_response_id)
        self.conversation = history + input_messages(req.input)
        self.fs = fs
        system = "\n\n".join(x for x in (req.instructions, fs.context() if fs else None) if x)
        messages = ([{"role": "system", "content": system}] if system else []) + self.conversation
        self.messages = messages
        self.chat_id: str | None = None
        self.chat = req.chat_request(messages)
        apply_response_format(self.chat)
        text, self.plan = render_prompt(self.engine, self.chat, s.settings)
        self.thinking = reasoning_mode(self.engine, s.settings.reasoning_format, text, self.plan is not None)
        self.prompt = tokenize_prompt(self.engine, text)
        self.gen = Generation(self.engine, [self.prompt], self.chat, 0, "input",
                              render_special=self.plan is not None or self.thinking is not None)
        self.id = _rid("resp")
        self.created = int(time.time())

    def body(self, status: str, output: list[dict[str, Any]], f: Finished | None) -> dict[str, Any]:
        req = self.req
        usage = None
        if f is not None:
            n_out = f.usage["completion_tokens"]
            usage = {"input_tokens": len(self.prompt), "input_tokens_details": {
                "cached_tokens": f.usage["prompt_tokens_details"]["cached_tokens"], "cache_write_tokens": 0},
                     "output_tokens": n_out, "output_tokens_details": {"reasoning_tokens": 0},
                     "total_tokens": len(self.prompt) + n_out}
        incomplete = {"reason": "max_output_tokens"} if f is not None and f.reason == "length" else None
        return {
            "id": self.id, "object": "response", "created_at": self.created,
            "status": "incomplete" if incomplete else status, "incomplete_details": incomplete, "error": None,
            "model": self.s.model_id, "output": output, "usage": usage,
            "instructions": req.instructions, "previous_response_id": req.previous_response_id,
            "tools": req.tools or [], "tool_choice": req.tool_choice or "auto",
            "parallel_tool_calls": req.parallel_tool_calls is not False,
            "temperature": req.temperature, "top_p": req.top_p, "max_output_tokens": req.max_output_tokens,
            "store": req.store, "metadata": req.metadata or {}, "text": req.text or {"format": {"type": "text"}},
            "reasoning": req.reasoning, "truncation": "disabled",
        }

    def output_items(self, text: str) -> tuple[list[dict[str, Any]], str, list[Call]]:
        thought = ""
        if self.thinking is not None:
            thought, text = split_with(self.thinking(), text)
        calls: list[Call] = []
        if self.plan is not None:
            parsed = self.plan.family.parse(text)
            text, calls = parsed.content, parsed.calls[: (None if self.plan.parallel else 1)]
        items = [self.fs.item()] if self.fs else []
        if thought:
            items.append(_reasoning_item(thought))
        if text or not calls:
            message = _message_item(text, _rid("msg"))
            if self.fs:
                message["content"][0]["annotations"] = self.fs.annotations(text)
            items.append(message)
        return items + [_call_item(c) for c in calls], text, calls

    async def save(self, body: dict[str, Any] | None, text: str, items: list[dict[str, Any]], incomplete: bool = False) -> None:
        """--persist-chats: the exchange as the client received it."""
        calls = [{"id": it["call_id"], "type": "function", "function": {"name": it["name"], "arguments": it["arguments"]}}
                 for it in items if it["type"] == "function_call"]
        thought = "".join(c["text"] for it in items if it["type"] == "reasoning" for c in it["content"])
        await persist(self.s, self.chat_id, self.messages, {
            "content": text, "reasoning_content": thought or None, "tool_calls": calls or None,
            "finish_reason": body["status"] if body else None, "usage": body["usage"] if body else None,
            "incomplete": incomplete,
        })

    def remember(self, body: dict[str, Any], text: str, items: list[dict[str, Any]]) -> None:
        if not self.req.store:
            return
        calls = [{"id": it["call_id"], "type": "function", "function": {"name": it["name"], "arguments": it["arguments"]}}
                 for it in items if it["type"] == "function_call"]
        reply: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            reply["tool_calls"] = calls
        self.s.responses.put(body, self.conversation + [reply])


async def _stream(turn: Turn) -> AsyncIterator[bytes]:
    seq = 0

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        seq += 1
        data = {"type": kind, "sequence_number": seq - 1, **fields}
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

    yield event("response.created", response=turn.body("in_progress", [], None))
    yield event("response.in_progress", response=turn.body("in_progress", [], None))
    base = 0
    if turn.fs is not None:
        fs_id = turn.fs.id
        yield event("response.output_item.added", output_index=0, item=turn.fs.item("in_progress"))
        for phase in ("in_progress", "searching", "completed"):
            yield event(f"response.file_search_call.{phase}", output_index=0, item_id=fs_id)
        yield event("response.output_item.done", output_index=0, item=turn.fs.item())
        base = 1
    splitter = turn.thinking() if turn.thinking is not None else None
    parser = StreamParser(turn.plan.family) if turn.plan else None
    msg_id, streamed, raw = _rid("msg"), None, []
    saved = False
    finished: Finished | None = None
    try:
        async for ev in turn.gen.events():
            if isinstance(ev, Finished):
                finished = ev
                continue
            raw.append(ev.text)
            text = splitter.feed(ev.text)[1] if splitter else ev.text
            text = parser.feed(text) if parser and text else text
            if not text:
                continue
            if streamed is None:  # the message item opens with its first text
                streamed = ""
                yield event("response.output_item.added", output_index=base, item=_message_item("", msg_id, "in_progress"))
                yield event("response.content_part.added", item_id=msg_id, output_index=base, content_index=0,
                            part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
            streamed += text
            yield event("response.output_text.delta", item_id=msg_id, output_index=base, content_index=0, delta=text, logprobs=[])
        items, text, _ = turn.output_items("".join(raw))
        message = next((it for it in items if it["type"] == "message"), None)
        output: list[dict[str, Any]] = [it for it in items if it["type"] == "file_search_call"]
        items = [it for it in items if it["type"] != "file_search_call"]
        if streamed is not None and message is not None:
            message["id"] = msg_id
            rest = text[len(streamed):] if text.startswith(streamed) else ""
            if rest:
                yield event("response.output_text.delta", item_id=msg_id, output_index=base, content_index=0, delta=rest, logprobs=[])
            part = message["content"][0]
            for ai, ann in enumerate(part["annotations"]):
                yield event("response.output_text.annotation.added", item_id=msg_id, output_index=base, content_index=0,
                            annotation_index=ai, annotation=ann)
            yield event("response.output_text.done", item_id=msg_id, output_index=base, content_index=0, text=part["text"], logprobs=[])
            yield event("response.content_part.done", item_id=msg_id, output_index=base, content_index=0, part=part)
            yield event("response.output_item.done", output_index=base, item=message)
            output.append(message)
            items = [it for it in items if it is not message]
        for item in items:
            index = len(output)
            output.append(item)
            yield event("response.output_item.added", output_index=index, item=item)
            if item["type"] == "function_call":
                yield event("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=item["arguments"])
                yield event("response.function_call_arguments.done", item_id=item["id"], output_index=index, arguments=item["arguments"])
            yield event("response.output_item.done", output_index=index, item=item)
        body = turn.body("completed", output, finished)
        turn.remember(body, text, output)
        saved = True
        await turn.save(body, text, output)  # committed before the last event reaches the client
        yield event("response.completed", response=body)
    except ChimeraError as e:
        yield event("error", code=e.code, message=e.message, param=e.param)
    finally:
        turn.gen.cancel()
        if not saved:
            await turn.save(None, streamed or "", [], incomplete=True)


@blueprint.post("/v1/responses")
@blueprint.post("/responses")
async def create() -> Response:
    req = parse_model(ResponsesRequest, await json_object())
    s = services()
    chat_id = await chat_id_for_request(s)
    fs = None
    if req.file_search_tools():
        history = s.responses.get(req.previous_response_id)[1] if req.previous_response_id else []
        fs = await run_file_search(req.file_search_tools(), history + input_messages(req.input), req.include)
    turn = Turn(req, fs)
    turn.chat_id = chat_id
    headers = {HEADER: chat_id} if chat_id else {}
    if req.stream:
        return sse_response(_stream(turn), headers=headers)
    choices = await turn.gen.collect()
    c = choices[0]
    items, text, _ = turn.output_items("".join(c.text))
    body = turn.body("completed", items, c.finished)
    turn.remember(body, text, items)
    await turn.save(body, text, items)
    return json_response(body, headers=headers)


@blueprint.get("/v1/responses/<rid>")
async def get(rid: str) -> Response:
    body, _ = services().responses.get(rid)
    return json_response(body)


@blueprint.delete("/v1/responses/<rid>")
async def delete(rid: str) -> Response:
    services().responses.delete(rid)
    return json_response({"id": rid, "object": "response", "deleted": True})
