"""Tool calls in generated text: which format a model family writes, and parsing it.

Each family is detected from its chat template and has a parser that splits generated text into
plain content and calls `[{"name", "arguments" (a JSON string)}]`. Parsing is a pure function
of the whole text, so a stream is parsed by re-parsing what has arrived: content is released only
up to the first place a call could begin, and a call is released once it is complete — the
streamed result equals the whole-text result at every split point.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Call = dict[str, str]  # {"name": ..., "arguments": json-string}


@dataclass
class Parsed:
    content: str
    calls: list[Call] = field(default_factory=list)


def _args_json(value: Any) -> str:
    if isinstance(value, str):
        try:
            json.loads(value)
            return value
        except ValueError:
            return json.dumps(value)
    return json.dumps(value if value is not None else {}, ensure_ascii=False)


def _call_from_obj(obj: Any) -> Call | None:
    """{"name", "arguments"|"parameters"} (also OpenAI's {"function": {...}}) → a call."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name") or obj.get("tool_name")
    if not isinstance(name, str) or not name:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    return {"name": name, "arguments": _args_json(args)}


def _json_prefix(text: str) -> tuple[Any, int] | None:
    """Decode one JSON value at the start of text (after whitespace); (value, end) or None."""
    stripped = len(text) - len(text.lstrip())
    try:
        value, end = json.JSONDecoder().raw_decode(text, stripped)
    except ValueError:
        return None
    return value, end


def _calls_from_json_value(value: Any) -> list[Call] | None:
    items = value if isinstance(value, list) else [value]
    calls = [_call_from_obj(v) for v in items]
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]


# -- formats -----------------------------------------------------------------------------------
def parse_tagged(text: str, open_tag: str, close_tag: str) -> Parsed:
    """<tool_call>{json}</tool_call> blocks (Hermes 2 Pro, Qwen 2.5 / 3): any number, any place."""
    content, calls, pos = [], [], 0
    while True:
        i = text.find(open_tag, pos)
        if i == -1:
            content.append(text[pos:])
            break
        j = text.find(close_tag, i + len(open_tag))
        body = text[i + len(open_tag) : j if j != -1 else len(text)]
        got = _json_prefix(body)
        call = _call_from_obj(got[0]) if got else None
        if call is None or (j == -1 and body[got[1]:].strip() if got else True):
            content.append(text[pos:])  # malformed: keep the text as it is
            break
        content.append(text[pos:i])
        calls.append(call)
        pos = j + len(close_tag) if j != -1 else len(text)
    return Parsed("".join(content).rstrip() if calls else "".join(content), calls)


def parse_prefixed_json(text: str, marker: str) -> Parsed:
    """MARKER[{...}, ...] after optional text (Mistral [TOOL_CALLS], Granite <|tool_call|>,
    Phi-4-mini functools)."""
    i = text.find(marker)
    if i == -1:
        return Parsed(text)
    got = _json_prefix(text[i + len(marker) :])
    calls = _calls_from_json_value(got[0]) if got else None
    if calls is None:
        return Parsed(text)
    return Parsed(text[:i].rstrip(), calls)


def parse_mistral(text: str) -> Parsed:
    """[TOOL_CALLS][{json}] (Nemo) or [TOOL_CALLS]name[ARGS]{json} repeated (Small 3.2, Devstral)."""
    if "[ARGS]" not in text:
        return parse_prefixed_json(text, "[TOOL_CALLS]")
    i = text.find("[TOOL_CALLS]")
    if i == -1:
        return Parsed(text)
    calls, rest = [], text[i:]
    for m in re.finditer(r"\[TOOL_CALLS\]\s*([^\[\s]+)\s*\[ARGS\]", rest):
        got = _json_prefix(rest[m.end() :])
        if got is None:
            return Parsed(text)
        calls.append({"name": m.group(1), "arguments": _args_json(got[0])})
    return Parsed(text[:i].rstrip(), calls) if calls else Parsed(text)


def parse_llama3(text: str) -> Parsed:
    """Llama 3.1–3.3: a bare JSON object {"name", "parameters"} (or several separated by ';'),
    or <|python_tag|>name.call(arg=value, ...) for built-in tools."""
    body = text.strip()
    if body.startswith("<|python_tag|>"):
        body = body[len("<|python_tag|>") :].strip()
        m = re.fullmatch(r"([A-Za-z_][\w.]*)\.call\((.*)\)", body, re.S)
        if m:
            args = dict(re.findall(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"', m.group(2)))
            return Parsed("", [{"name": m.group(1), "arguments": json.dumps(args)}])
    calls = []
    for part in [p for p in re.split(r";\s*(?=\{)", body) if p.strip()]:
        got = _json_prefix(part)
        call = _call_from_obj(got[0]) if got and not part[got[1]:].strip() else None
        if call is None:
            return Parsed(text)
        calls.append(call)
    return Parsed("", calls) if calls else Parsed(text)


def parse_deepseek(text: str) -> Parsed:
    """DeepSeek R1 / V3: <｜tool▁calls▁begin｜> then per call
    <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\n{...}\\n```<｜tool▁call▁end｜>."""
    begin = text.find("<｜tool▁calls▁begin｜>")
    if begin == -1:
        return Parsed(text)
    calls = []
    for m in re.finditer(r"<｜tool▁call▁begin｜>(?:function)?<｜tool▁sep｜>([^\n<]+)\n```(?:json)?\n(.*?)\n```<｜tool▁call▁end｜>",
                         text[begin:], re.S):
        got = _json_prefix(m.group(2))
        if got is None:
            return Parsed(text)
        calls.append({"name": m.group(1).strip(), "arguments": _args_json(got[0])})
    return Parsed(text[:begin].rstrip(), calls) if calls else Parsed(text)


def parse_functionary(text: str) -> Parsed:
    """Functionary v3.2: '>>>name\\n{json}' segments; '>>>all\\n' (or no prefix) is plain text."""
    segments = re.split(r"(?:^|\n)>>>", text if text.startswith(">>>") else ">>>all\n" + text)
    content, calls = [], []
    for seg in segments:
        if not seg:
            continue
        name, _, body = seg.partition("\n")
        if name.strip() == "all":
            content.append(body)
            continue
        got = _json_prefix(body)
        if got is None or body[got[1]:].strip():
            return Parsed(text)
        calls.append({"name": name.strip(), "arguments": _args_json(got[0])})
    return Parsed("".join(content).rstrip() if calls else text, calls)


def parse_command_r(text: str) -> Parsed:
    """Command R7B: <|START_ACTION|>[{"tool_call_id", "tool_name", "parameters"}]<|END_ACTION|>."""
    m = re.search(r"<\|START_ACTION\|>(.*?)(?:<\|END_ACTION\|>|$)", text, re.S)
    if not m:
        return Parsed(text)
    got = _json_prefix(m.group(1))
    calls = _calls_from_json_value(got[0]) if got else None
    if calls is None:
        return Parsed(text)
    before = re.sub(r"<\|START_THINKING\|>.*?<\|END_THINKING\|>", "", text[: m.start()], flags=re.S)
    return Parsed(before.rstrip(), calls)


def parse_gpt_oss(text: str) -> Parsed:
    """gpt-oss (harmony): '<|channel|>commentary to=functions.NAME ... <|message|>{json}<|call|>';
    the final channel's message is the content."""
    calls = []
    for m in re.finditer(r"to=functions\.([\w.-]+)[^<]*(?:<\|constrain\|>\w+)?<\|message\|>(.*?)(?:<\|call\|>|$)", text, re.S):
        got = _json_prefix(m.group(2))
        if got is None:
            return Parsed(text)
        calls.append({"name": m.group(1), "arguments": _args_json(got[0])})
    final = re.search(r"<\|channel\|>final<\|message\|>(.*?)(?:<\|return\|>|<\|end\|>|$)", text, re.S)
    content = final.group(1) if final else ("" if calls else text)
    return Parsed(content.rstrip() if calls else content, calls)


def parse_generic(text: str) -> Parsed:
    """The generic prompt's shape: {"tool_calls": [{"name", "arguments"}]} (or one call object),
    possibly inside a ```json fence."""
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    if fence:
        body = fence.group(1)
    got = _json_prefix(body)
    if got is None or body[got[1]:].strip():
        return Parsed(text)
    value = got[0]
    if isinstance(value, dict) and "tool_calls" in value:
        calls = _calls_from_json_value(value["tool_calls"])
    else:
        calls = _calls_from_json_value(value)
    return Parsed("", calls) if calls else Parsed(text)


@dataclass(frozen=True)
class Family:
    name: str
    parse: Callable[[str], Parsed]
    starts: tuple[str, ...]  # text that may begin a call: content is held back from here on


FAMILIES: dict[str, Family] = {
    "hermes": Family("hermes", lambda t: parse_tagged(t, "<tool_call>", "</tool_call>"), ("<tool_call>",)),
    "llama3": Family("llama3", parse_llama3, ("{", "<|python_tag|>")),
    "mistral": Family("mistral", parse_mistral, ("[TOOL_CALLS]",)),
    "deepseek": Family("deepseek", parse_deepseek, ("<｜tool▁calls▁begin｜>",)),
    "functionary": Family("functionary", parse_functionary, (">>>",)),
    "command-r": Family("command-r", parse_command_r, ("<|START_ACTION|>", "<|START_THINKING|>")),
    "granite": Family("granite", lambda t: parse_prefixed_json(t, "<|tool_call|>"), ("<|tool_call|>",)),
    "phi4": Family("phi4", lambda t: parse_prefixed_json(t, "functools"), ("functools",)),
    "gpt-oss": Family("gpt-oss", parse_gpt_oss, ("<|channel|>", "<|start|>")),
    "generic": Family("generic", parse_generic, ("{", "```")),
}


def detect_family(template: str) -> Family:
    """The tool-call family of a chat template, from the markers its source contains."""
    checks = (
        ("<|channel|>", "gpt-oss"),
        ("<｜tool▁calls▁begin｜>", "deepseek"),
        ("[TOOL_CALLS]", "mistral"),
        ("<|START_ACTION|>", "command-r"),
        ("<|tool_call|>", "granite"),
        ("functools[", "phi4"),
        (">>>", "functionary"),
        ("<tool_call>", "hermes"),
        ("<|python_tag|>", "llama3"),
        ('"parameters": ', "llama3"),
    )
    for marker, name in checks:
        if marker in template:
            return FAMILIES[name]
    return FAMILIES["generic"]


class StreamParser:
    """Streaming view of one generation. `feed(delta)` returns the content that is safe to send
    now: everything before the first place a call could begin (or a marker's first characters at
    the end), without trailing whitespace. `finish()` parses the whole text and returns the rest of
    the content and the calls, so what was streamed equals `family.parse(whole_text)`."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self.text = ""
        self.sent = ""

    def _hold_from(self, text: str) -> int:
        cut = len(text)
        for s in self.family.starts:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
            for k in range(min(len(s) - 1, len(text)), 0, -1):  # a marker split at the end
                if text.endswith(s[:k]):
                    cut = min(cut, len(text) - k)
                    break
        return cut

    def feed(self, delta: str) -> str:
        self.text += delta
        safe = self.text[: self._hold_from(self.text)].rstrip()
        out = safe[len(self.sent) :] if safe.startswith(self.sent) else ""
        self.sent += out
        return out

    def finish(self) -> tuple[str, list[Call]]:
        parsed = self.family.parse(self.text)
        rest = parsed.content[len(self.sent) :] if parsed.content.startswith(self.sent) else ""
        self.sent += rest
        return rest, parsed.calls
