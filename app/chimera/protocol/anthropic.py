"""Anthropic Messages request schemas, and their translation to chat messages. No I/O here."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import BadRequest
from .params import GenerationFields


class MessagesRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    max_tokens: int = Field(ge=1)
    messages: list[Any]
    system: str | list[Any] | None = None
    stop_sequences: list[str] | None = Field(None, max_length=16)
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    stream: bool = False
    metadata: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None

    def generation_fields(self) -> dict[str, Any]:
        """The same request in the engine's terms (Anthropic's default temperature is 1.0).
        llama.cpp sampling extensions sent beside Anthropic's fields (seed, grammar, min_p,
        ignore_eos, ...) are passed on, as llama-server does."""
        extra = {k: v for k, v in (self.model_extra or {}).items()
                 if k in GenerationFields.model_fields and k not in ("stream", "n", "max_tokens", "stop")}
        return extra | {
            "max_tokens": self.max_tokens,
            "stop": self.stop_sequences,
            "temperature": 1.0 if self.temperature is None else self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
        }


class CountTokensRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = None  # as llama-server: the default model when left out
    messages: list[Any]
    system: str | list[Any] | None = None
    tools: list[Any] | None = None


def _content_of_blocks(blocks: Any, where: str) -> str | list[dict[str, Any]]:
    """Anthropic content → chat content: a string, or text and image_url parts when there are
    images (which need a projector; the serving core says so)."""
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise BadRequest(f"{where} must be a string or an array of content blocks", param=where)
    parts: list[dict[str, Any]] = []
    for i, b in enumerate(blocks):
        if not isinstance(b, dict) or "type" not in b:
            raise BadRequest(f"{where}[{i}] must be a content block with a 'type'", param=f"{where}.{i}")
        if b["type"] == "text":
            if not isinstance(b.get("text"), str):
                raise BadRequest(f"{where}[{i}].text must be a string", param=f"{where}.{i}.text")
            parts.append({"type": "text", "text": b["text"]})
        elif b["type"] == "image":
            src = b.get("source") or {}
            if src.get("type") == "base64" and isinstance(src.get("data"), str):
                url = f"data:{src.get('media_type', 'image/png')};base64,{src['data']}"
            elif src.get("type") == "url" and isinstance(src.get("url"), str):
                url = src["url"]
            else:
                raise BadRequest(f"{where}[{i}].source must be base64 or url", param=f"{where}.{i}.source")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        elif b["type"] == "document":
            raise BadRequest(f"{where}[{i}]: document blocks are not supported here (send their text)",
                             param=f"{where}.{i}.type")
        elif b["type"] in ("thinking", "redacted_thinking"):
            continue  # an assistant's reasoning goes to reasoning_content (_thinking)
        else:
            raise BadRequest(f"{where}[{i}].type {b['type']!r} is not supported here", param=f"{where}.{i}.type")
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts  # the chat template's text joins parts with newlines, as blocks were


def _text_of_blocks(blocks: Any, where: str) -> str:
    content = _content_of_blocks(blocks, where)
    if not isinstance(content, str):
        raise BadRequest(f"{where}: only text is read here", param=where)
    return content


def to_chat_messages(system: str | list[Any] | None, messages: list[Any]) -> list[dict[str, Any]]:
    """Anthropic system + messages → OpenAI-style chat messages for the chat template."""
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": _text_of_blocks(system, "system")})
    if not messages:
        raise BadRequest("'messages' must be a non-empty array", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object", param=f"messages.{i}")
        role = m.get("role")
        if role not in ("user", "assistant"):
            raise BadRequest(f"messages[{i}].role must be 'user' or 'assistant', got {role!r}", param=f"messages.{i}.role")
        content = m.get("content")
        if content is None:
            raise BadRequest(f"messages[{i}].content is required", param=f"messages.{i}.content")
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") in ("tool_use", "tool_result") for b in content):
            converted = _tool_blocks(role, content, i)
        else:
            converted = [{"role": role, "content": _content_of_blocks(content, f"messages.{i}.content")}]
        thought = _thinking(content) if role == "assistant" else ""
        if thought:  # earlier reasoning, for the templates that show it (as llama-server passes it)
            converted[0]["reasoning_content"] = thought
        out.extend(converted)
    return out


def _thinking(content: Any) -> str:
    """The text of an assistant message's thinking blocks (redacted ones have none)."""
    if not isinstance(content, list):
        return ""
    return "\n".join(b["thinking"] for b in content
                     if isinstance(b, dict) and b.get("type") == "thinking" and isinstance(b.get("thinking"), str))


def _tool_blocks(role: str, blocks: list[Any], i: int) -> list[dict[str, Any]]:
    """tool_use (assistant) and tool_result (user) blocks → OpenAI tool_calls / tool messages."""
    out: list[dict[str, Any]] = []
    texts, calls = [], []
    for j, b in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "tool_use" and role == "assistant":
            calls.append({"id": b.get("id"), "type": "function",
                          "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input", {}))}})
        elif kind == "tool_result" and role == "user":
            content = b.get("content", "")
            out.append({"role": "tool", "tool_call_id": b.get("tool_use_id"),  # text, and images for a projector
                        "content": _content_of_blocks(content, where + ".content") if content else ""})
        elif kind not in ("thinking", "redacted_thinking"):  # reasoning: see _thinking
            texts.append(_text_of_blocks([b], where))
    if role == "assistant":
        return [{"role": "assistant", "content": "\n".join(texts), "tool_calls": calls}]
    if texts:
        out.append({"role": "user", "content": "\n".join(texts)})
    return out


StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


def stop_reason(finish: str, stop_word: str | None) -> StopReason:
    if finish == "length":
        return "max_tokens"
    if stop_word is not None:
        return "stop_sequence"
    return "end_turn"
