"""Tool calls through the openai SDK against a real server (SmolLM2: a grammar forces the shape)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import module_server

TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24},
                                                     "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                    "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time in a timezone",
     "parameters": {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 24}}, "required": ["tz"]}}},
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(smollm: Path) -> Iterator[openai.OpenAI]:
    for s in module_server("-m", str(smollm), "-c", "8192"):
        yield s.client()


def _check_weather_args(arguments: str) -> None:
    args = json.loads(arguments)
    assert set(args) == {"city", "unit"} and isinstance(args["city"], str) and args["unit"] in ("celsius", "fahrenheit")


def test_required_tool_choice_returns_valid_call(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=200,
                                       temperature=0)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    assert c.message.tool_calls and all(tc.function.name in ("get_weather", "get_time") for tc in c.message.tool_calls)
    for tc in c.message.tool_calls:
        assert tc.id.startswith("call_") and tc.type == "function"
        if tc.function.name == "get_weather":
            _check_weather_args(tc.function.arguments)
        else:
            assert isinstance(json.loads(tc.function.arguments)["tz"], str)


def test_named_tool_choice_streaming(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="m", messages=ASK, tools=TOOLS, max_tokens=200, stream=True, parallel_tool_calls=False, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    first_delta_has_id = None
    for chunk in stream:
        if not chunk.choices:
            continue
        d = chunk.choices[0].delta
        for tc in d.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            if first_delta_has_id is None:
                first_delta_has_id = bool(tc.id and tc.function and tc.function.name)
            if tc.id:
                entry["id"] = tc.id
            if tc.function and tc.function.name:
                entry["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                entry["arguments"] += tc.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert first_delta_has_id, "the id and name come first, then argument fragments"
    assert list(calls) == [0] and calls[0]["name"] == "get_weather"
    _check_weather_args(calls[0]["arguments"])


def test_tool_result_round_trip(client: openai.OpenAI) -> None:
    msgs = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and sunny"},
    ]
    r = client.chat.completions.create(model="m", messages=msgs, tools=TOOLS, tool_choice="none", max_tokens=20)
    assert r.choices[0].message.content and r.choices[0].message.tool_calls is None
    assert r.choices[0].finish_reason in ("stop", "length")


def test_calls_and_results_reach_a_template_without_tools(client: openai.OpenAI) -> None:
    """SmolLM2's ChatML knows no tools: the earlier call and its result are rendered all the same."""
    msgs = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and sunny"},
    ]
    http = httpx.Client(base_url=str(client.base_url).removesuffix("/v1/"), timeout=60)
    prompt = http.post("/apply-template", json={"messages": msgs, "tools": TOOLS}).json()["prompt"]
    assert '"name": "get_weather"' in prompt and '"city": "Paris"' in prompt
    assert "Result of get_weather: 18 degrees and sunny" in prompt


def test_named_tool_choice_makes_exactly_one_call(client: openai.OpenAI) -> None:
    """A forced named call ends after the call, at any temperature and with parallel calls allowed
    (an unbounded list let the model repeat the call until max_tokens)."""
    time_tool = [{"type": "function", "function": {"name": "get_time", "description": "Current time",
                  "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}]
    for seed in range(4):
        r = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "What time is it in Tokyo?"}], tools=time_tool,
            tool_choice={"type": "function", "function": {"name": "get_time"}}, max_tokens=300, temperature=1.0, seed=seed)
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", (seed, c)
        assert c.message.tool_calls and len(c.message.tool_calls) == 1
        assert isinstance(json.loads(c.message.tool_calls[0].function.arguments)["timezone"], str)


def test_auto_mode_text_is_not_swallowed(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Say hello to me."}],
                                       tools=TOOLS, max_tokens=30, temperature=0, extra_body={"cache_prompt": False})
    c = r.choices[0]
    if c.finish_reason == "tool_calls":
        assert c.message.tool_calls
    else:
        assert c.message.content, "text that is not a call reaches the client"
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Say hello to me."}],
                                                tools=TOOLS, max_tokens=30, temperature=0, stream=True,
                                                extra_body={"cache_prompt": False})
        text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
        assert text == c.message.content


def test_bad_tool_requests_are_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="m", messages=ASK, tools=TOOLS,
                                       tool_choice={"type": "function", "function": {"name": "nope"}})
    assert exc.value.body["param"] == "tool_choice"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=ASK, tools=[{"type": "function", "function": {"name": "a b"}}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, tool_choice="required",
                                       response_format={"type": "json_object"})
