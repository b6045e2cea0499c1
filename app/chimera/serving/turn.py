"""A chat request in no API's shape (`ChatTurn`), and what it becomes before generation
(`Prepared`): messages through the chat template, tools planned, output constraints turned into
one grammar, and the way reasoning is told apart from the reply.

Messages use the common chat shape every dialect converts to: `{"role", "content"}` with content
a string or text / image_url / input_audio parts, assistant `tool_calls`, and `tool` messages
with `tool_call_id`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest
from ..llm import tooluse
from ..llm.chat import normalize_messages
from ..llm.grammars import JSON_GBNF
from ..llm.reasoning import CLOSE, OPEN, HarmonySplitter, ReasoningSplitter
from ..llm.schema import schema_to_grammar
from ..protocol.params import GenerationFields
from .engine import ChatEngine

Splitters = Callable[[], "ReasoningSplitter | HarmonySplitter"]
RESERVED_TEMPLATE_VARS = frozenset({"messages", "tools", "add_generation_prompt", "bos_token", "eos_token"})


@dataclass
class ChatTurn:
    messages: list[dict[str, Any]]
    params: GenerationFields  # sampling, limits, stops, n, grammar / json_schema, LoRA scales
    tools: list[dict[str, Any]] | None = None  # [{"type": "function", "function": {...}}]
    tool_choice: Any = None  # auto | none | required | {"type": "function", "function": {"name"}}
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None  # text | json_object | json_schema (OpenAI's shape)
    template_vars: dict[str, Any] = field(default_factory=dict)  # chat_template_kwargs and the like
    reasoning_format: str | None = None  # this request's --reasoning-format
    top_logprobs: int = 0  # log-probabilities of this many alternatives per token (0: none)
    logprobs: bool = False
    add_generation_prompt: bool | None = None  # None: on, unless the last message is continued
    continue_final_message: bool | None = None  # None: a trailing assistant message is continued (a prefill)
    raw_prompt: str | None = None  # a prompt given as text, not rendered through the template
    prefix_tokens: list[int] = field(default_factory=list)  # tokens before the prompt (a returned context)
    ctx_limit: int | None = None  # the request's own context size, when smaller than a slot's


@dataclass
class Prepared:
    text: str  # the rendered prompt
    plan: tooluse.ToolPlan | None
    thinking: Splitters | None
    media: list[tuple[str, Any, str]]  # (kind, source, param) of image / audio parts, in prompt order
    history: list[dict[str, Any]]  # the request's messages as saved chats keep them
    raw: bool = False  # the text is the prompt as given, not a rendered template


CONTINUE_MARK = "\u2063chimera-continue\u2063"  # placed after the text to continue, found in the rendered prompt


def render_turn(engine: ChatEngine, turn: ChatTurn, messages: list[dict[str, Any]], extra: dict[str, Any]) -> str:
    """The prompt; a trailing assistant message is continued, as llama-server does: rendered
    without its end of turn, so the model goes on writing it (a prefill). Explicitly with
    continue_final_message (which wants add_generation_prompt false)."""
    last = messages[-1] if messages else {}
    cont, gen = turn.continue_final_message, turn.add_generation_prompt
    if cont is None and last.get("role") == "assistant" and not last.get("tool_calls"):
        if len(messages) >= 2 and messages[-2].get("role") == "assistant":
            raise BadRequest("Cannot have 2 or more assistant messages at the end of the list.", param="messages")
        cont, gen = True, False
    if cont and (gen is None or gen):
        raise BadRequest("Cannot set both add_generation_prompt and continue_final_message to true.",
                         param="continue_final_message")
    if not cont or last.get("role") != "assistant":
        return engine.render(messages, gen is not False, extra)
    if last.get("tool_calls"):
        raise BadRequest("Cannot continue an assistant message that contains tool calls.", param="messages")
    content = last.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    raw = turn.messages[-1].get("content") if turn.messages and isinstance(turn.messages[-1], dict) else None
    if isinstance(raw, list) and raw and all(isinstance(p, dict) and p.get("type") == "text" for p in raw):
        content = "\n\n".join(str(p.get("text", "")) for p in raw)  # as llama-server joins a continued message's parts
    marked = [*messages[:-1], {**last, "content": f"{content or ''}{CONTINUE_MARK}"}]
    text = engine.render(marked, False, extra)
    at = text.rfind(CONTINUE_MARK)
    if at < 0:
        raise BadRequest("this chat template does not show the last assistant message, so it cannot be continued",
                         param="messages")
    return text[:at]


def constrain(params: GenerationFields, grammar: str, param: str) -> None:
    if params.grammar:
        raise BadRequest(f"'{param}' cannot be combined with 'grammar', 'json_schema' or another constraint", param=param)
    params.grammar = grammar


def apply_json_schema(params: GenerationFields) -> None:
    """llama-server's top-level `json_schema` field."""
    if params.json_schema is not None:
        if params.grammar:
            raise BadRequest("give either 'grammar' or 'json_schema', not both", param="json_schema")
        params.grammar = schema_to_grammar(params.json_schema, param="json_schema")


def apply_response_format(params: GenerationFields, rf: dict[str, Any] | None) -> None:
    apply_json_schema(params)
    if rf is None or rf.get("type") == "text":
        return
    kind = rf.get("type")
    if kind == "json_object":
        schema = rf.get("schema")  # llama-server's schema inside json_object
        constrain(params, schema_to_grammar(schema, param="response_format.schema") if schema else JSON_GBNF, "response_format")
    elif kind == "json_schema":
        spec = rf.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise BadRequest("response_format.json_schema must be an object with a 'schema'", param="response_format.json_schema")
        constrain(params, schema_to_grammar(spec["schema"]), "response_format")
    else:
        raise BadRequest(f"response_format.type must be text, json_object or json_schema, got {kind!r}",
                         param="response_format.type")


def template_vars(turn: ChatTurn, thinking: bool | None) -> dict[str, Any]:
    extra: dict[str, Any] = {"enable_thinking": thinking} if thinking is not None else {}
    for key, value in turn.template_vars.items():
        if key in RESERVED_TEMPLATE_VARS:
            raise BadRequest(f"chat_template_kwargs cannot set {key!r}", param=f"chat_template_kwargs.{key}")
        extra[key] = value
    return extra


def reasoning_mode(template_source: str, fmt: str, prompt: str, tools: bool) -> Splitters | None:
    """How reasoning is separated from the reply, or None to leave it in content.

    harmony (gpt-oss) channels when the template has them and no tools are in play (with tools,
    the gpt-oss call parser reads the channels); `<think>` blocks when the template knows them
    (`auto`) or always (`deepseek`), starting inside one if the prompt opened it."""
    if fmt == "none":
        return None
    if "<|channel|>" in template_source and not tools:
        return HarmonySplitter
    if fmt == "auto" and OPEN not in template_source:
        return None
    inside = prompt.rstrip().endswith(OPEN)
    return lambda: ReasoningSplitter(inside)


def prepare(engine: ChatEngine, turn: ChatTurn, thinking: bool | None, default_reasoning: str) -> Prepared:
    """Render the turn's prompt and settle its constraints (raises BadRequest on bad input).
    `thinking`: the server asks templates to think or not (--reasoning, --reasoning-budget 0);
    None leaves it to the template. Off, a think block the template opens anyway is closed."""
    if turn.raw_prompt is not None:
        apply_response_format(turn.params, turn.response_format)
        return Prepared(turn.raw_prompt, None, None, [], [{"role": "user", "content": turn.raw_prompt}], raw=True)
    media: list[tuple[str, Any, str]] = []
    messages = normalize_messages(turn.messages, media if engine.projector else None)
    history = normalize_messages(turn.messages, [] if engine.projector else None)
    plan = tooluse.plan(turn.tools, turn.tool_choice, turn.parallel_tool_calls, engine.template_source)
    apply_response_format(turn.params, turn.response_format)
    if thinking is None and "enable_thinking" in engine.template_source:
        thinking = True  # --reasoning auto: a template that can think is asked to, as llama-server does
    extra = template_vars(turn, thinking)
    if plan is not None:
        messages = tooluse.render_messages(messages, plan)
        if plan.native:
            extra["tools"] = plan.tools
        grammar = tooluse.forced_grammar(plan)
        if grammar is not None:
            constrain(turn.params, grammar, "tool_choice")
    text = render_turn(engine, turn, messages, extra)
    if thinking is False and turn.add_generation_prompt is not False and text.rstrip().endswith(OPEN):
        text = text + CLOSE  # the template forces a think block open: close it, as llama-server does
    splitters = reasoning_mode(engine.template_source, turn.reasoning_format or default_reasoning, text, plan is not None)
    return Prepared(text, plan, splitters, media, history)
