"""--chat-template: llama.cpp's built-in template names (rendered by llama.cpp itself), the Jinja
built-ins, and a template given as text."""

from __future__ import annotations

import ctypes
import json

import pytest

from chimera.config import Settings
from chimera.llm.chat import ChatTemplate, NativeTemplate
from chimera.templates import LLAMA_CPP_TEMPLATES

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": [{"type": "text", "text": "Bye"}]}]


def test_the_names_are_llama_cpps_own() -> None:
    import llama_cpp.llama_cpp as ll

    n = ll.llama_chat_builtin_templates(None, 0)
    arr = (ctypes.c_char_p * n)()
    ll.llama_chat_builtin_templates(arr, n)
    assert sorted(x.decode() for x in arr) == sorted(LLAMA_CPP_TEMPLATES)


def test_a_llama_cpp_name_renders_through_llama_cpp() -> None:
    t = ChatTemplate.select(None, "mistral-v7", None, "<s>", "</s>")
    assert isinstance(t, NativeTemplate)
    out = t.render(MESSAGES, add_generation_prompt=True)
    assert "[SYSTEM_PROMPT] Be brief.[/SYSTEM_PROMPT]" in out and "[INST] Bye[/INST]" in out
    z = ChatTemplate.select(None, "zephyr", None, "<s>", "</s>").render(MESSAGES, add_generation_prompt=True)
    assert z.startswith("<|system|>\nBe brief.") and z.endswith("<|assistant|>\n")
    with pytest.raises(Exception, match="no tool calls"):
        t.render([{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}])


def test_jinja_builtins_and_literal_jinja() -> None:
    assert not isinstance(ChatTemplate.select(None, "chatml", None, "", ""), NativeTemplate)  # our Jinja chatml wins
    literal = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    t = ChatTemplate.select("{{ 'model' }}", literal, None, "", "")
    assert t.render(MESSAGES[:2]) == "<system>Be brief.<user>Hi<assistant>"
    assert Settings(chat_template=literal).chat_template == literal and Settings(chat_template="phi4").chat_template == "phi4"
    with pytest.raises(ValueError, match="unknown template"):
        Settings(chat_template="no-such-template")


def test_firefunction_reads_the_tools_as_functions() -> None:
    t = ChatTemplate.select(None, "[{{ functions }}]", None, "", "")
    assert t.render(MESSAGES) == "[]"  # no tools: empty, not an undefined-variable error
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    assert json.loads(t.render(MESSAGES, tools=[tool])[1:-1]) == [tool["function"]]


def test_templates_see_todays_date_as_llama_cpp_gives_it() -> None:
    from datetime import date

    t = ChatTemplate.select(None, "{{ date_string }} | {{ datetime }}", None, "", "")
    today = date.today()
    assert t.render(MESSAGES) == f"{today.strftime('%d %b %Y')} | {today.strftime('%b %d %Y')}"
    assert ChatTemplate.select(None, "{{ date_string }}", None, "", "").render(MESSAGES, date_string="1 Jan 2000") == "1 Jan 2000"
