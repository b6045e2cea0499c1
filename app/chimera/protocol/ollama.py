"""Ollama's API: request schemas and their translation to the serving core's terms. No I/O here.

Ollama's `options` map onto llama.cpp's sampling fields by the same names (`num_predict` is the
token limit, `num_ctx` the request's context, as far as a slot holds); load-time options
(`num_gpu`, `num_thread`, `use_mmap`, ...) and ones llama.cpp no longer has (`mirostat*`,
`tfs_z`, `penalize_newline`) are accepted and ignored, as the server's own flags decide them.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import BadRequest
from .params import GenerationFields

SAMPLING_OPTIONS = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty", "repeat_last_n",
                    "presence_penalty", "frequency_penalty", "seed", "stop")
IGNORED_OPTIONS = frozenset({
    "numa", "num_batch", "num_gpu", "main_gpu", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mmap",
    "use_mlock", "embedding_only", "num_thread", "num_keep", "tfs_z", "mirostat", "mirostat_tau", "mirostat_eta",
    "penalize_newline",
})


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = ""
    stream: bool = True
    options: dict[str, Any] | None = None
    format: str | dict[str, Any] | None = None
    keep_alive: float | str | None = None
    think: bool | str | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


class OllamaChat(_Request):
    messages: list[Any] = Field(default_factory=list)
    tools: list[Any] | None = None


class OllamaGenerate(_Request):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None


class OllamaEmbed(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = ""
    input: str | list[str]
    truncate: bool = True
    options: dict[str, Any] | None = None
    keep_alive: float | str | None = None
    dimensions: int | None = Field(None, ge=1)


class OllamaEmbeddings(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = ""
    prompt: str
    options: dict[str, Any] | None = None
    keep_alive: float | str | None = None


class OllamaShow(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = ""
    name: str | None = None  # older clients send the model as 'name'
    verbose: bool = False


def generation_fields(req: _Request) -> GenerationFields:
    """Ollama's options as the engine's generation fields (a wrong type is a 400 naming it)."""
    opts = dict(req.options or {})
    fields: dict[str, Any] = {}
    for name, value in opts.items():
        if name in SAMPLING_OPTIONS:
            fields[name] = value
        elif name == "num_predict":
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadRequest("options.num_predict must be an integer", param="options.num_predict")
            fields["n_predict"] = -1 if value < 0 else value  # -1 and -2: until the context is full
    if "temperature" in fields and isinstance(fields["temperature"], int):
        fields["temperature"] = float(fields["temperature"])
    for name in ("top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty", "frequency_penalty"):
        if isinstance(fields.get(name), int) and not isinstance(fields.get(name), bool):
            fields[name] = float(fields[name])
    from pydantic import ValidationError

    try:
        return GenerationFields.model_validate(fields)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("str", "list")))
        raise BadRequest(f"invalid 'options.{where}': {err['msg']}", param=f"options.{where}") from None


def context_size(req: _Request) -> int | None:
    value = (req.options or {}).get("num_ctx")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest("options.num_ctx must be a positive integer", param="options.num_ctx")
    return value


def response_format(fmt: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if fmt in (None, ""):
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    raise BadRequest("format must be \"json\" or a JSON schema", param="format")


def keep_alive_seconds(value: float | str | None) -> float | None:
    """Ollama's keep_alive: seconds, or a duration ("5m", "1h"); 0 unloads after the request,
    negative keeps the model loaded; None leaves the model's own setting."""
    if value is None:
        return None
    from ..errors import ConfigError
    from ..registry.presets import parse_duration

    try:
        return parse_duration(value, "keep_alive")
    except ConfigError as e:
        raise BadRequest(str(e), param="keep_alive") from None


def thinking(think: bool | str | None) -> dict[str, Any]:
    """The template variables for `think` (reasoning, when the model writes it, is returned in
    'thinking' either way)."""
    if think is None:
        return {}
    if isinstance(think, str):
        if think not in ("low", "medium", "high"):
            raise BadRequest("think must be true, false, \"low\", \"medium\" or \"high\"", param="think")
        return {"enable_thinking": True, "reasoning_effort": think}
    return {"enable_thinking": think}


def image_part(data: str, where: str) -> dict[str, Any]:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where} must be base64-encoded image data", param=where) from None
    mime = "image/png" if raw.startswith(b"\x89PNG") else "image/jpeg" if raw.startswith(b"\xff\xd8") else "image/*"
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def chat_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """Ollama messages (images as base64, tool calls with object arguments, tool results with
    tool_name) → the common chat shape."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object", param=f"messages.{i}")
        msg: dict[str, Any] = {"role": m.get("role"), "content": m.get("content") or ""}
        images = m.get("images") or []
        if not isinstance(images, list) or not all(isinstance(x, str) for x in images):
            raise BadRequest(f"messages[{i}].images must be a list of base64 strings", param=f"messages.{i}.images")
        if images:
            if not isinstance(msg["content"], str):
                raise BadRequest(f"messages[{i}].content must be a string", param=f"messages.{i}.content")
            msg["content"] = [image_part(x, f"messages.{i}.images.{j}") for j, x in enumerate(images)] + [
                {"type": "text", "text": msg["content"]}]
        calls = m.get("tool_calls")
        if calls:
            if not isinstance(calls, list):
                raise BadRequest(f"messages[{i}].tool_calls must be a list", param=f"messages.{i}.tool_calls")
            msg["tool_calls"] = []
            for j, c in enumerate(calls):
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise BadRequest(f"messages[{i}].tool_calls[{j}] needs function.name", param=f"messages.{i}.tool_calls.{j}")
                args = fn.get("arguments", {})
                msg["tool_calls"].append({"id": c.get("id") or "call_" + uuid.uuid4().hex[:24], "type": "function",
                                          "function": {"name": fn["name"],
                                                       "arguments": args if isinstance(args, str) else json.dumps(args)}})
        if m.get("role") == "tool" and m.get("tool_name"):
            msg["name"] = m["tool_name"]
        if m.get("tool_call_id"):
            msg["tool_call_id"] = m["tool_call_id"]
        out.append(msg)
    return out
