"""Structured output and the Anthropic Messages API, through the official SDKs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from conftest import Server, module_server


@pytest.fixture(scope="module")
def server(smollm: Path) -> Iterator[Server]:
    yield from module_server("-m", str(smollm), "-np", "4", "-c", "8192", "--api-key", "k-anthropic", api_key="k-anthropic")


@pytest.fixture
def claude(server: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base, api_key="k-anthropic", max_retries=0, _strict_response_validation=True)


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


def test_json_schema_output_validates(server: Server) -> None:
    client = server.client()
    for stream in (False, True):
        kw = dict(model="m", messages=[{"role": "user", "content": "Describe a person as JSON."}], max_tokens=120,
                  temperature=0.7, seed=3,
                  response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}})
        if stream:
            text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kw) if c.choices)
        else:
            r = client.chat.completions.create(**kw)
            assert r.choices[0].finish_reason == "stop"
            text = r.choices[0].message.content or ""
        obj = json.loads(text)
        assert set(obj) == {"name", "age", "tags"}
        assert isinstance(obj["name"], str) and len(obj["name"]) <= 20
        assert isinstance(obj["age"], int)
        assert all(t in ("a", "b", "c") for t in obj["tags"]) and len(obj["tags"]) <= 3


def test_unsupported_schema_is_400_naming_it(server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        server.client().chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": {
                "type": "object", "properties": {"n": {"type": "number", "minimum": 3}, "s": {"not": {"type": "null"}}}}}},
        )
    msg = exc.value.message
    assert "'minimum' at #/properties/n" in msg and "'not' at #/properties/s" in msg


def test_integer_bounds_are_enforced(server: Server) -> None:
    """minimum / maximum / exclusive bounds on integers constrain the output, as in llama-server."""
    schema = {"type": "object", "properties": {
        "age": {"type": "integer", "minimum": 18, "maximum": 65},
        "floor": {"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 4},
        "score": {"type": "integer", "minimum": 1000}}, "required": ["age", "floor", "score"]}
    seen = set()
    for seed in range(6):
        r = server.client().chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Make up a person as JSON."}], max_tokens=80,
            temperature=1.5, seed=seed, response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})
        obj = json.loads(r.choices[0].message.content or "")
        assert 18 <= obj["age"] <= 65 and -3 < obj["floor"] < 4 and obj["score"] >= 1000, obj
        seen.add(obj["age"])
    empty = server.http().post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "integer", "minimum": 5, "maximum": 4}}}})
    assert empty.status_code == 400 and "no value" in empty.json()["error"]["message"]


def test_messages_create(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model="smollm", max_tokens=16, system="You are terse.",
        messages=[{"role": "user", "content": "Say something about the sea."}],
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens > 5 and 0 < msg.usage.output_tokens <= 16


def test_messages_max_tokens_and_stop_sequence(claude: anthropic.Anthropic) -> None:
    long = claude.messages.create(model="m", max_tokens=4, extra_body={"temperature": 0.0},
                                  messages=[{"role": "user", "content": [{"type": "text", "text": "Count: one two three"}]}])
    assert long.stop_reason == "max_tokens" and long.usage.output_tokens == 4
    base = claude.messages.create(model="m", max_tokens=30, extra_body={"temperature": 0.0},
                                  messages=[{"role": "user", "content": "Write a sentence about cats."}])
    text = base.content[0].text
    words = [w for w in text.split() if len(w) > 3]
    assert words, text
    stop = words[1] if len(words) > 1 else words[0]
    cut = claude.messages.create(model="m", max_tokens=30, extra_body={"temperature": 0.0}, stop_sequences=[stop],
                                 messages=[{"role": "user", "content": "Write a sentence about cats."}])
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    assert cut.content[0].text == text[: text.index(stop)]


def test_messages_stream_events(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="m", max_tokens=12, extra_body={"temperature": 0.0},
                                messages=[{"role": "user", "content": "Tell me about rivers."}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == final.content[0].text
    assert final.stop_reason in ("end_turn", "max_tokens")
    plain = claude.messages.create(model="m", max_tokens=12, extra_body={"temperature": 0.0},
                                   messages=[{"role": "user", "content": "Tell me about rivers."}])
    assert plain.content[0].text == final.content[0].text


def test_raw_event_order(server: Server) -> None:
    with httpx.stream("POST", server.base + "/v1/messages", headers={"x-api-key": "k-anthropic"}, json={
        "model": "m", "max_tokens": 3, "stream": True, "messages": [{"role": "user", "content": "hi"}],
    }) as r:
        events = [line[7:] for line in r.iter_lines() if line.startswith("event: ")]
    assert events[0] == "message_start" and "ping" in events
    body = [e for e in events[1:-3] if e != "ping"]
    assert body[0] == "content_block_start" and set(body[1:]) <= {"content_block_delta"}
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    msgs = [{"role": "user", "content": "How many tokens is this?"}]
    counted = claude.messages.count_tokens(model="m", messages=msgs)
    created = claude.messages.create(model="m", max_tokens=1, messages=msgs)
    assert counted.input_tokens == created.usage.input_tokens + (created.usage.cache_read_input_tokens or 0)
    with_system = claude.messages.count_tokens(model="m", messages=msgs, system="A long system prompt about many things. " * 10)
    assert with_system.input_tokens > counted.input_tokens


def test_input_token_routes_count_what_generation_reads(server: Server, claude: anthropic.Anthropic) -> None:
    """llama-server's token counts: POST /v1/chat/completions/input_tokens (and without /v1),
    /v1/responses/input_tokens (and /responses/...), Anthropic's count_tokens without a model."""
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How many tokens is this?"}]
    client, http = server.client(), server.http()
    chat = client.chat.completions.create(model="m", messages=msgs, max_tokens=1)  # type: ignore[arg-type]
    for path in ("/v1/chat/completions/input_tokens", "/chat/completions/input_tokens"):
        r = http.post(path, json={"messages": msgs})
        assert r.status_code == 200 and r.json() == {"object": "response.input_tokens", "input_tokens": chat.usage.prompt_tokens}
    resp = client.responses.create(model="m", input="How many tokens is this?", instructions="Be brief.", max_output_tokens=1)
    for path in ("/v1/responses/input_tokens", "/responses/input_tokens"):
        r = http.post(path, json={"input": "How many tokens is this?", "instructions": "Be brief."})
        assert r.status_code == 200 and r.json()["input_tokens"] == resp.usage.input_tokens  # type: ignore[union-attr]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    with_tools = http.post("/v1/chat/completions/input_tokens", json={"messages": msgs, "tools": tools}).json()
    assert with_tools["input_tokens"] > chat.usage.prompt_tokens
    anon = http.post("/v1/messages/count_tokens", json={"messages": [{"role": "user", "content": "Hi"}]})
    assert anon.status_code == 200 and anon.json()["input_tokens"] > 0
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    in_result = [{"role": "user", "content": "Read it"},
                 {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [image]}]}]
    no_projector = http.post("/v1/messages/count_tokens", json={"messages": in_result})
    assert no_projector.status_code == 400 and "--mmproj" in no_projector.json()["error"]["message"]
    for path, body, param in (("/v1/chat/completions/input_tokens", {}, "messages"),
                              ("/v1/chat/completions/input_tokens", {"messages": "hi"}, "messages"),
                              ("/v1/responses/input_tokens", {"input": 5}, "input"),
                              ("/v1/responses/input_tokens", {"input": "x", "previous_response_id": "resp_nope"}, None)):
        r = http.post(path, json=body)
        assert r.status_code in (400, 404) and (param is None or r.json()["error"]["param"] == param), (path, r.text)


def test_cached_prompt_tokens_are_counted_once(claude: anthropic.Anthropic) -> None:
    """input_tokens + cache_read_input_tokens is the prompt, as Anthropic counts it."""
    msgs = [{"role": "user", "content": "A question asked twice, word for word, to hit the prompt cache."}]
    counted = claude.messages.count_tokens(model="m", messages=msgs).input_tokens
    claude.messages.create(model="m", max_tokens=1, messages=msgs)
    again = claude.messages.create(model="m", max_tokens=1, messages=msgs).usage
    assert again.cache_read_input_tokens and again.cache_read_input_tokens > 0
    assert again.input_tokens + again.cache_read_input_tokens == counted


def test_anthropic_errors_have_anthropic_shape(server: Server, claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as exc:
        claude.messages.create(model="m", max_tokens=5, messages=[])
    assert exc.value.body["type"] == "error"
    assert exc.value.body["error"]["type"] == "invalid_request_error"
    r = httpx.post(server.base + "/v1/messages", headers={"x-api-key": "k-anthropic"},
                   json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]
    bad = anthropic.Anthropic(base_url=server.base, api_key="wrong", max_retries=0, _strict_response_validation=True)
    with pytest.raises(anthropic.AuthenticationError) as auth:
        bad.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert auth.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.BadRequestError) as img:
        claude.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}])
    assert "--mmproj" in img.value.body["error"]["message"]


WEATHER_TOOL = {
    "name": "get_weather", "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}},
                     "required": ["city"], "additionalProperties": False},
}


def test_forced_tool_use(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(
        model="m", max_tokens=120, tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Paris?"}], extra_body={"temperature": 0.0},
    )
    assert msg.stop_reason == "tool_use"
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert len(uses) >= 1 and uses[0].name == "get_weather" and isinstance(uses[0].input["city"], str)
    assert uses[0].id.startswith("toolu_")
    # the result goes back as a tool_result block
    follow = claude.messages.create(model="m", max_tokens=10, tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": uses[0].id, "name": "get_weather", "input": uses[0].input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "18 C, sunny"}]},
    ], tool_choice={"type": "none"})
    assert follow.content[0].type == "text"


def test_forced_tool_use_streaming(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="m", max_tokens=120, tools=[WEATHER_TOOL], tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Weather in Paris?"}], extra_body={"temperature": 0.0},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input["city"], str)
