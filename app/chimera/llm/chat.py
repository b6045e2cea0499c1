"""Chat templates: the GGUF's Jinja template (or an override) rendered in a sandbox."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import BadRequest
from ..templates import BUILTIN_TEMPLATES, LLAMA_CPP_TEMPLATES, is_jinja

ROLES = {"system", "user", "assistant", "tool", "developer"}


def _raise(message: str) -> None:
    raise BadRequest(f"chat template: {message}", param="messages")


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False, sort_keys: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


class ChatTemplate:
    def __init__(self, source: str, bos_token: str, eos_token: str, name: str = "model") -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self.source = source
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.template = env.from_string(source)

    @classmethod
    def select(cls, model_template: str | None, name: str | None, file: Path | None, bos: str, eos: str) -> ChatTemplate:
        if file is not None:
            return cls(file.read_text(), bos, eos, name=str(file))
        if name is not None:
            if name in BUILTIN_TEMPLATES:
                return cls(BUILTIN_TEMPLATES[name], bos, eos, name=name)
            if is_jinja(name):
                return cls(name, bos, eos, name="--chat-template")
            if name in LLAMA_CPP_TEMPLATES:
                return NativeTemplate(name, bos, eos)
            from ..errors import ConfigError

            raise ConfigError(f"--chat-template: unknown template {name!r}")
        if model_template:
            return cls(model_template, bos, eos, name="model")
        return cls(BUILTIN_TEMPLATES["chatml"], bos, eos, name="chatml (the model has none)")

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **extra: Any) -> str:
        try:
            return self._render(messages, add_generation_prompt, **extra)
        except TypeError:
            # templates disagree on tool-call arguments: most want a mapping, some a JSON string
            as_text = _arguments_as_text(messages)
            if as_text is None:
                raise BadRequest("the chat template failed on these messages", param="messages") from None
            return self._render(as_text, add_generation_prompt, **extra)

    def _render(self, messages: list[dict[str, Any]], add_generation_prompt: bool, **extra: Any) -> str:
        now = datetime.now()
        # today, as llama.cpp gives templates that print it (Llama 3.x: date_string; firefunction: datetime)
        dates = {"date_string": now.strftime("%d %b %Y"), "datetime": now.strftime("%b %d %Y")}
        # firefunction v2 reads the tools as `functions`, a JSON text (empty without tools)
        tools = extra.get("tools")
        dates["functions"] = json.dumps([t.get("function", t) for t in tools], indent=2) if tools else ""
        try:
            return self.template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **(dates | extra),
            )
        except BadRequest:
            raise
        except (TemplateError, ValueError, KeyError, AttributeError) as e:
            raise BadRequest(f"the chat template failed on these messages: {e}", param="messages") from None


def _arguments_as_text(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The messages with tool-call arguments as JSON strings, or None if none were mappings."""
    changed = False
    out = []
    for m in messages:
        calls = m.get("tool_calls")
        if calls:
            new_calls = []
            for c in calls:
                fn = dict(c.get("function") or {})
                if isinstance(fn.get("arguments"), dict):
                    fn["arguments"] = json.dumps(fn["arguments"], ensure_ascii=False)
                    changed = True
                new_calls.append({**c, "function": fn, **({"arguments": fn["arguments"]} if "arguments" in c else {})})
            m = {**m, "tool_calls": new_calls}
        out.append(m)
    return out if changed else None


MEDIA_MARKER = "<__media__>"


def normalize_messages(messages: Any, media: list[tuple[str, Any, str]] | None = None) -> list[dict[str, Any]]:
    """Validate OpenAI chat messages and flatten content parts into strings. With `media` (a
    list to fill), image and audio parts become the media marker and are collected as
    (kind, source, param); without it they are refused."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object", param=f"messages.{i}")
        role = m.get("role")
        if role not in ROLES:
            raise BadRequest(f"messages[{i}].role must be one of {sorted(ROLES)}, got {role!r}", param=f"messages.{i}.role")
        content = m.get("content")
        if content is None:
            if role != "assistant" or not m.get("tool_calls"):
                raise BadRequest(f"messages[{i}].content is required", param=f"messages.{i}.content")
            content = ""
        elif isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict) or "type" not in part:
                    raise BadRequest(f"messages[{i}].content[{j}] must be an object with a 'type'", param=f"messages.{i}.content.{j}")
                if part["type"] in ("text", "input_text"):
                    if not isinstance(part.get("text"), str):
                        raise BadRequest(f"messages[{i}].content[{j}].text must be a string", param=f"messages.{i}.content.{j}.text")
                    texts.append(part["text"])
                elif part["type"] in ("image_url", "input_audio") and media is not None:
                    where = f"messages.{i}.content.{j}"
                    if part["type"] == "image_url":
                        url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else part.get("image_url")
                        if not isinstance(url, str):
                            raise BadRequest(f"{where}.image_url.url must be a string", param=f"{where}.image_url.url")
                        media.append(("image", url, f"{where}.image_url.url"))
                    else:
                        audio = part.get("input_audio")
                        if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
                            raise BadRequest(f"{where}.input_audio must be {{data, format}}", param=f"{where}.input_audio")
                        media.append(("audio", "data:audio/" + str(audio.get("format", "wav")) + ";base64," + audio["data"],
                                      f"{where}.input_audio.data"))
                    texts.append(MEDIA_MARKER)
                elif part["type"] in ("image_url", "input_audio", "image", "input_image"):
                    raise BadRequest(
                        "this server has no multimodal projector loaded, so it cannot read images or audio "
                        "(start it with --mmproj PATH)", param=f"messages.{i}.content.{j}.type",
                    )
                else:
                    raise BadRequest(f"messages[{i}].content[{j}].type {part['type']!r} is not supported", param=f"messages.{i}.content.{j}.type")
            content = "\n".join(texts)
        elif not isinstance(content, str):
            raise BadRequest(f"messages[{i}].content must be a string or an array of parts", param=f"messages.{i}.content")
        msg = dict(m)
        msg["role"] = "system" if role == "developer" else role
        msg["content"] = content
        out.append(msg)
    return out


class NativeTemplate(ChatTemplate):
    """One of llama.cpp's built-in templates by name, rendered by llama.cpp itself (no Jinja):
    roles and text only, as llama-server does without --jinja."""

    def __init__(self, name: str, bos_token: str, eos_token: str) -> None:
        self.source = name
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **extra: Any) -> str:
        import ctypes

        import llama_cpp.llama_cpp as ll

        items = []
        for m in messages:
            content = m.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            if m.get("tool_calls"):
                raise BadRequest(f"the {self.name} template has no tool calls; use a Jinja template", param="messages")
            items.append((str(m.get("role", "user")).encode(), str(content or "").encode()))
        arr = (ll.llama_chat_message * max(1, len(items)))(*[ll.llama_chat_message(r, c) for r, c in items])
        size = 2 * sum(len(c) + len(r) for r, c in items) + 1024
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = int(ll.llama_chat_apply_template(self.name.encode(), arr, len(items), add_generation_prompt, buf, size))
            if n < 0:
                raise BadRequest(f"llama.cpp's {self.name} template cannot render these messages", param="messages")
            if n <= size:
                return buf.raw[:n].decode("utf-8", errors="replace")
            size = n + 1
        raise BadRequest("the chat template output did not fit", param="messages")
