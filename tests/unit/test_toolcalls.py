"""Tool calls over the real chat templates shipped in the llama-cpp-python sdist.

For each family: the template renders a conversation with tools, a call and its result; canned
model outputs parse into the right calls; and streamed parsing equals whole-text parsing at
every split point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from chimera.llm import tooluse
from chimera.llm.chat import ChatTemplate
from chimera.llm.toolcalls import FAMILIES, Parsed, StreamParser, detect_family

VERSION = "0.3.36"
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time",
     "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}},
]
CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "18 C and sunny"},
]


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vendor/llama.cpp/models/templates from the pinned sdist (the wheel cache has it)."""
    cache = Path(os.environ.get("CHIMERA_CACHE", Path.home() / ".cache" / "chimera")) / "sdist"
    sdist = cache / f"llama_cpp_python-{VERSION}.tar.gz"
    if not sdist.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "-d", str(cache), f"llama-cpp-python=={VERSION}"], check=True)
    out = tmp_path_factory.mktemp("templates")
    prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/models/templates/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.name.endswith(".jinja")]
        for m in members:
            m.name = m.name[len(prefix):]
        tar.extractall(out, members=members, filter="data")
    return out


# template file → the family chimera must detect
TEMPLATES = {
    "Qwen-Qwen2.5-7B-Instruct": "hermes",
    "Qwen-Qwen3-0.6B": "hermes",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use": "hermes",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": "hermes",
    "meta-llama-Llama-3.1-8B-Instruct": "llama3",
    "meta-llama-Llama-3.2-3B-Instruct": "llama3",
    "meta-llama-Llama-3.3-70B-Instruct": "llama3",
    "mistralai-Mistral-Nemo-Instruct-2407": "mistral",
    "Mistral-Small-3.2-24B-Instruct-2506": "mistral",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": "deepseek",
    "deepseek-ai-DeepSeek-V3.1": "deepseek",
    "openai-gpt-oss-120b": "gpt-oss",
    "meetkai-functionary-medium-v3.2": "functionary",
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use": "command-r",
    "ibm-granite-granite-3.3-2B-Instruct": "granite",
}


@pytest.mark.parametrize("name,family", sorted(TEMPLATES.items()))
def test_template_detects_family_and_renders_tools(templates: Path, name: str, family: str) -> None:
    source = (templates / f"{name}.jinja").read_text()
    assert detect_family(source).name == family
    plan = tooluse.plan(TOOLS, "auto", None, source)
    assert plan is not None and plan.family.name == family
    # templates that do not render a tool list themselves get the generic tool prompt
    assert plan.native == ("tools" in source)
    prompt = ChatTemplate(source, "<s>", "</s>").render(tooluse.render_messages(CONVERSATION, plan), tools=plan.tools)
    assert "get_weather" in prompt and "get_time" in prompt, "the tool list is rendered"
    assert "18 C and sunny" in prompt, "the tool result is rendered"


def test_template_without_tools_gets_generic_prompt() -> None:
    source = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    plan = tooluse.plan(TOOLS, "auto", None, source)
    assert plan is not None and not plan.native and plan.family.name == "generic"
    prompt = ChatTemplate(source, "", "").render(tooluse.render_messages(CONVERSATION, plan))
    assert '"tool_calls"' in prompt and "get_time" in prompt


W = '{"city": "Paris"}'
T = '{"tz": "UTC"}'
# family → (single call, parallel calls, text + call)
CANNED: dict[str, tuple[str, str, str]] = {
    "hermes": (f'<tool_call>\n{{"name": "get_weather", "arguments": {W}}}\n</tool_call>',
               f'<tool_call>\n{{"name": "get_weather", "arguments": {W}}}\n</tool_call>\n<tool_call>\n{{"name": "get_time", "arguments": {T}}}\n</tool_call>',
               f'Let me look.\n<tool_call>\n{{"name": "get_weather", "arguments": {W}}}\n</tool_call>'),
    "llama3": (f'{{"name": "get_weather", "parameters": {W}}}',
               f'{{"name": "get_weather", "parameters": {W}}}; {{"name": "get_time", "parameters": {T}}}',
               ""),
    "mistral": (f'[TOOL_CALLS][{{"name": "get_weather", "arguments": {W}}}]',
                f'[TOOL_CALLS][{{"name": "get_weather", "arguments": {W}}}, {{"name": "get_time", "arguments": {T}}}]',
                f'Let me look.[TOOL_CALLS][{{"name": "get_weather", "arguments": {W}}}]'),
    "deepseek": (f'<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{W}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
                 f'<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{W}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{T}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
                 f'Let me look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{W}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'),
    "gpt-oss": (f'<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{W}<|call|>',
                f'<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{W}<|call|><|start|>assistant<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>{T}<|call|>',
                ""),
    "functionary": (f'>>>get_weather\n{W}',
                    f'>>>get_weather\n{W}\n>>>get_time\n{T}',
                    f'>>>all\nLet me look.\n>>>get_weather\n{W}'),
    "command-r": (f'<|START_ACTION|>[{{"tool_call_id": "0", "tool_name": "get_weather", "parameters": {W}}}]<|END_ACTION|>',
                  f'<|START_ACTION|>[{{"tool_call_id": "0", "tool_name": "get_weather", "parameters": {W}}}, {{"tool_call_id": "1", "tool_name": "get_time", "parameters": {T}}}]<|END_ACTION|>',
                  f'Let me look.<|START_ACTION|>[{{"tool_call_id": "0", "tool_name": "get_weather", "parameters": {W}}}]<|END_ACTION|>'),
    "granite": (f'<|tool_call|>[{{"name": "get_weather", "arguments": {W}}}]',
                f'<|tool_call|>[{{"name": "get_weather", "arguments": {W}}}, {{"name": "get_time", "arguments": {T}}}]',
                f'Let me look.<|tool_call|>[{{"name": "get_weather", "arguments": {W}}}]'),
    "phi4": (f'functools[{{"name": "get_weather", "arguments": {W}}}]',
             f'functools[{{"name": "get_weather", "arguments": {W}}}, {{"name": "get_time", "arguments": {T}}}]',
             f'Let me look. functools[{{"name": "get_weather", "arguments": {W}}}]'),
    "generic": (f'{{"tool_calls": [{{"name": "get_weather", "arguments": {W}}}]}}',
                f'{{"tool_calls": [{{"name": "get_weather", "arguments": {W}}}, {{"name": "get_time", "arguments": {T}}}]}}',
                ""),
}
WEATHER = {"name": "get_weather", "arguments": W}
TIME = {"name": "get_time", "arguments": T}


def _same_call(got: dict[str, str], want: dict[str, str]) -> bool:
    return got["name"] == want["name"] and json.loads(got["arguments"]) == json.loads(want["arguments"])


@pytest.mark.parametrize("family", sorted(CANNED))
def test_parse_canned_outputs(family: str) -> None:
    parse = FAMILIES[family].parse
    single, parallel, mixed = CANNED[family]
    p = parse(single)
    assert len(p.calls) == 1 and _same_call(p.calls[0], WEATHER) and p.content == ""
    p = parse(parallel)
    assert len(p.calls) == 2 and _same_call(p.calls[0], WEATHER) and _same_call(p.calls[1], TIME)
    if mixed:
        p = parse(mixed)
        assert len(p.calls) == 1 and _same_call(p.calls[0], WEATHER)
        assert p.content == "Let me look."
    plain = "The weather is nice today."
    assert parse(plain) == Parsed(plain, [])


@pytest.mark.parametrize("family", sorted(CANNED))
def test_malformed_call_stays_text(family: str) -> None:
    broken = CANNED[family][0].replace('"city": "Paris"', '"city": "Par')
    p = FAMILIES[family].parse(broken)
    assert p.calls == [] and p.content == broken


@pytest.mark.parametrize("family", sorted(CANNED))
def test_streamed_parse_equals_whole_parse_at_every_split(family: str) -> None:
    fam = FAMILIES[family]
    for text in [t for t in CANNED[family] if t] + ["Plain answer, no calls at all.\n"]:
        whole = fam.parse(text)
        for cut in range(len(text) + 1):
            sp = StreamParser(fam)
            streamed = sp.feed(text[:cut]) + sp.feed(text[cut:])
            rest, calls = sp.finish()
            assert streamed + rest == whole.content, (family, cut)
            assert calls == whole.calls, (family, cut)


def test_token_by_token_stream() -> None:
    fam = FAMILIES["hermes"]
    text = CANNED["hermes"][2]
    sp = StreamParser(fam)
    seen = "".join(sp.feed(ch) for ch in text)
    assert seen == "Let me look."  # nothing of the call leaks into content
    rest, calls = sp.finish()
    assert rest == "" and len(calls) == 1


def test_forced_grammar_parses() -> None:
    plan = tooluse.plan(TOOLS, {"type": "function", "function": {"name": "get_time"}}, False, "no tools here")
    assert plan is not None and plan.mode == "named"
    grammar = tooluse.forced_grammar(plan)
    assert grammar and "get_time" in grammar and "get_weather" not in grammar


@pytest.mark.parametrize("tools,choice,param", [
    ("x", None, "tools"),
    ([{"type": "function"}], None, "tools.0"),
    ([{"type": "function", "function": {"name": "bad name!"}}], None, "tools.0.function.name"),
    (TOOLS, {"type": "function", "function": {"name": "nope"}}, "tool_choice"),
    (TOOLS, "sometimes", "tool_choice"),
    (None, "required", "tool_choice"),
])
def test_bad_tools_are_400(tools: object, choice: object, param: str) -> None:
    from chimera.errors import BadRequest

    with pytest.raises(BadRequest) as exc:
        tooluse.plan(tools, choice, None, "")
    assert exc.value.param == param


def test_family_with_generic_fallback_streams_consistently() -> None:
    fam = tooluse.with_generic(FAMILIES["deepseek"])
    for text in (CANNED["deepseek"][2], CANNED["generic"][0], "Sure {not json} here", "Plain."):
        whole = fam.parse(text)
        for cut in range(len(text) + 1):
            sp = StreamParser(fam)
            streamed = sp.feed(text[:cut]) + sp.feed(text[cut:])
            rest, calls = sp.finish()
            assert streamed + rest == whole.content and calls == whole.calls, (text, cut)
    assert len(fam.parse(CANNED["generic"][0]).calls) == 1
