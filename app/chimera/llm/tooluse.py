"""Tools on a chat request: validation, rendering through the template, forcing a call.

- `tools` are rendered through the model's own template (its `tools` variable) when the template
  knows tools; otherwise a generic system prompt describes them and asks for the generic JSON shape.
- `tool_choice: "required"` or a named function constrains generation with a grammar built from
  the functions' JSON schemas: the output is always `{"tool_calls": [{"name", "arguments"}]}` with
  arguments that match the schema, whatever the model, and is parsed with the generic parser.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest
from .schema import schema_to_grammar
from .toolcalls import FAMILIES, Family, Parsed, detect_family

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_PARALLEL_CALLS = 8  # the most calls a forced ("required") turn may make with parallel_tool_calls

GENERIC_PROMPT = (
    "You can call these functions:\n{tools}\n\n"
    "To call one or more functions, reply with only this JSON and nothing else:\n"
    '{{"tool_calls": [{{"name": "<function name>", "arguments": {{<arguments as JSON>}}}}]}}\n'
    "Otherwise, reply to the user normally."
)


@dataclass
class ToolPlan:
    tools: list[dict[str, Any]]  # OpenAI shape, validated
    mode: str  # auto | required | named
    forced_name: str | None
    parallel: bool
    family: Family  # the parser for the output
    native: bool  # the template renders tools itself

    @property
    def names(self) -> set[str]:
        return {t["function"]["name"] for t in self.tools}


def with_generic(family: Family) -> Family:
    """The family's own format, and the generic JSON shape as a fallback (a model shown the
    generic tool prompt, or one that answers in plain JSON)."""
    if family.name == "generic":
        return family
    generic = FAMILIES["generic"]

    def parse(text: str) -> Parsed:
        own = family.parse(text)
        return own if own.calls else generic.parse(text)

    return Family(family.name, parse, family.starts + generic.starts)


def validate_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be an array", param="tools")
    out: list[dict[str, Any]] = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict):
            raise BadRequest(f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{...}}}}", param=f"tools.{i}")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise BadRequest(f"tools[{i}].function.name must match ^[A-Za-z0-9_.-]{{1,64}}$", param=f"tools.{i}.function.name")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise BadRequest(f"tools[{i}].function.parameters must be a JSON schema object", param=f"tools.{i}.function.parameters")
        out.append({"type": "function", "function": {**fn, "parameters": params}})
    names = [t["function"]["name"] for t in out]
    if len(set(names)) != len(names):
        raise BadRequest("tool names must be unique", param="tools")
    return out


def plan(tools: Any, tool_choice: Any, parallel: bool | None, template_source: str) -> ToolPlan | None:
    """None when tools play no part (no tools, or tool_choice 'none')."""
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise BadRequest("'tool_choice' needs 'tools'", param="tool_choice")
        return None
    checked = validate_tools(tools)
    names = {t["function"]["name"] for t in checked}
    forced: str | None = None
    if tool_choice in (None, "auto"):
        mode = "auto"
    elif tool_choice == "none":
        return None
    elif tool_choice == "required":
        mode = "required"
    elif isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        forced = tool_choice["function"].get("name")
        if forced not in names:
            raise BadRequest(f"tool_choice names {forced!r}, which is not in 'tools'", param="tool_choice")
        mode = "named"
    else:
        raise BadRequest("tool_choice must be 'auto', 'none', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                         param="tool_choice")
    native = "tools" in template_source
    family = with_generic(detect_family(template_source))
    if mode != "auto":
        family = FAMILIES["generic"]  # the grammar writes the generic shape
    return ToolPlan(checked, mode, forced, parallel is not False, family, native)


def render_messages(messages: list[dict[str, Any]], p: ToolPlan) -> list[dict[str, Any]]:
    """Assistant tool_calls get dict arguments (what templates expect); a template without tool
    support gets the generic tool prompt as (part of) the system message."""
    out = []
    for m in messages:
        if m.get("role") == "assistant" and m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                fn = dict(c.get("function") or {})
                if isinstance(fn.get("arguments"), str):
                    try:
                        fn["arguments"] = json.loads(fn["arguments"])
                    except ValueError:
                        pass
                calls.append({**c, "function": fn, **fn})
            m = {**m, "tool_calls": calls}
        out.append(m)
    if not p.native:
        out = generic_turns(out)
        prompt = GENERIC_PROMPT.format(tools=json.dumps([t["function"] for t in p.tools], indent=1))
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + prompt}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else json.dumps(content)


def generic_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For a template that knows no tools: an assistant's calls become the generic JSON it was
    asked to write, and tool results become a user turn naming the function, so the model sees
    what it called and what came back (consecutive results share one turn)."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                names[str(c.get("id"))] = c.get("name", "")
                calls.append({"name": c.get("name", ""), "arguments": c.get("arguments", {})})
            said = _text(m.get("content")).strip()
            call_json = json.dumps({"tool_calls": calls}, ensure_ascii=False)
            out.append({"role": "assistant", "content": f"{said}\n{call_json}" if said else call_json})
        elif role == "tool":
            name = m.get("name") or names.get(str(m.get("tool_call_id")), "the function")
            line = f"Result of {name}: {_text(m.get('content'))}"
            if out and out[-1].get("role") == "user" and out[-1].get("tool_results"):
                out[-1] = {**out[-1], "content": out[-1]["content"] + "\n" + line}
            else:
                out.append({"role": "user", "content": line, "tool_results": True})
        else:
            out.append(m)
    return [{k: v for k, v in m.items() if k != "tool_results"} for m in out]


def forced_grammar(p: ToolPlan) -> str | None:
    """The grammar that forces a call (required / named); None in auto mode."""
    if p.mode == "auto":
        return None
    chosen = [t for t in p.tools if p.mode == "required" or t["function"]["name"] == p.forced_name]
    variants = [{
        "type": "object",
        "properties": {"name": {"const": t["function"]["name"]}, "arguments": t["function"]["parameters"]},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    } for t in chosen]
    call = variants[0] if len(variants) == 1 else {"anyOf": variants}
    # the grammar must end: a named function is called once, "required" makes at most as many
    # calls as the parallel policy allows (an unbounded list lets a model repeat one call forever)
    most = MAX_PARALLEL_CALLS if p.parallel and p.mode == "required" else 1
    schema = {
        "type": "object",
        "properties": {"tool_calls": {"type": "array", "items": call, "minItems": 1, "maxItems": most}},
        "required": ["tool_calls"],
        "additionalProperties": False,
    }
    return schema_to_grammar(schema, param="tools")
