"""OpenAI Responses API: request schema, input items → chat messages, and the in-process store."""

from __future__ import annotations

import collections
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import BadRequest, NotFound
from .openai import ChatCompletionRequest


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = None
    input: str | list[Any]
    instructions: str | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    include: list[str] | None = None
    return_progress: bool = False  # llama-server's: prompt_progress on response.in_progress events (streamed)
    timings_per_token: bool = False  # llama-server's: timings on each output_text.delta

    def file_search_tools(self) -> list[dict[str, Any]]:
        return [t for t in self.tools or [] if isinstance(t, dict) and t.get("type") == "file_search"]

    def chat_request(self, messages: list[dict[str, Any]]) -> ChatCompletionRequest:
        """The same request as a chat completion (function tools flattened to OpenAI's shape)."""
        tools: list[dict[str, Any]] | None = None
        if self.tools:
            tools = []
            for i, t in enumerate(self.tools):
                if isinstance(t, dict) and t.get("type") == "file_search":
                    continue  # answered by retrieval before generation (http/file_search.py)
                if not isinstance(t, dict) or t.get("type") != "function":
                    raise BadRequest(f"tools[{i}]: only function and file_search tools are available here",
                                     param=f"tools.{i}.type")
                tools.append({"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters") if k in t}})
        tools = tools or None
        choice = self.tool_choice if tools else None
        if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
            choice = {"type": "function", "function": {"name": choice["name"]}}
        fmt = (self.text or {}).get("format")
        rf = None
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            rf = {"type": "json_schema", "json_schema": {"name": fmt.get("name", "output"), "schema": fmt.get("schema")}}
        elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
            rf = {"type": "json_object"}
        effort = (self.reasoning or {}).get("effort")
        return ChatCompletionRequest(
            messages=messages, max_tokens=self.max_output_tokens, temperature=self.temperature, top_p=self.top_p,
            tools=tools, tool_choice=choice, parallel_tool_calls=self.parallel_tool_calls, response_format=rf,
            reasoning_effort=effort if effort in ("minimal", "low", "medium", "high") else None,
            stream=self.stream, return_progress=self.return_progress, timings_per_token=self.timings_per_token,
        )


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"{where} must be a string or an array of parts", param=where)
    parts = []
    for i, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append(str(p.get("text", "")))
        elif kind in ("input_image", "input_file", "input_audio"):
            raise BadRequest(f"{where}[{i}]: this server has no multimodal projector loaded (start it with --mmproj PATH)",
                             param=f"{where}.{i}.type")
        else:
            raise BadRequest(f"{where}[{i}].type {kind!r} is not supported", param=f"{where}.{i}.type")
    return "".join(parts)


def input_messages(items: str | list[Any]) -> list[dict[str, Any]]:
    """Responses input (a string or items) → chat messages, function calls and outputs included."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    out: list[dict[str, Any]] = []
    for i, it in enumerate(items):
        if not isinstance(it, dict):
            raise BadRequest(f"input[{i}] must be an object", param=f"input.{i}")
        kind = it.get("type", "message")
        if kind == "message":
            role = it.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise BadRequest(f"input[{i}].role must be user, assistant, system or developer", param=f"input.{i}.role")
            out.append({"role": role, "content": _text(it.get("content"), f"input.{i}.content")})
        elif kind == "function_call":
            call = {"id": it.get("call_id"), "type": "function",
                    "function": {"name": it.get("name"), "arguments": it.get("arguments", "{}")}}
            if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls") is not None:
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = it.get("output")
            out.append({"role": "tool", "tool_call_id": it.get("call_id"),
                        "content": output if isinstance(output, str) else _text(output, f"input.{i}.output")})
        elif kind == "reasoning":
            continue
        else:
            raise BadRequest(f"input[{i}].type {kind!r} is not supported", param=f"input.{i}.type")
    if not out:
        raise BadRequest("'input' must not be empty", param="input")
    return out


class ResponseStore:
    """Stored responses (`store: true`) and the conversation that led to each, in this process."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._items: collections.OrderedDict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = collections.OrderedDict()

    def put(self, response: dict[str, Any], conversation: list[dict[str, Any]]) -> None:
        self._items[response["id"]] = (response, conversation)
        self._items.move_to_end(response["id"])
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, rid: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if rid not in self._items:
            raise NotFound(f"no response with id {rid!r}")
        return self._items[rid]

    def delete(self, rid: str) -> None:
        self.get(rid)
        del self._items[rid]
