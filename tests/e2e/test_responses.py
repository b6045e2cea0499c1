"""OpenAI Responses API through the official SDK against a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from conftest import module_server


@pytest.fixture(scope="module")
def client(smollm: Path) -> Iterator[openai.OpenAI]:
    for s in module_server("-m", str(smollm), "-c", "8192"):
        yield s.client()


def test_create_and_retrieve(client: openai.OpenAI) -> None:
    r = client.responses.create(model="m", input="Name a colour.", max_output_tokens=12, instructions="Be brief.")
    assert r.id.startswith("resp_") and r.object == "response"
    assert r.status in ("completed", "incomplete") and r.output_text
    assert r.output[0].type == "message" and r.output[0].content[0].type == "output_text"
    assert r.usage.input_tokens > 5 and 0 < r.usage.output_tokens <= 12
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text


def test_max_output_tokens_gives_incomplete(client: openai.OpenAI) -> None:
    r = client.responses.create(model="m", input="Tell me a long story.", max_output_tokens=3, extra_body={"ignore_eos": True})
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"


def test_two_turns_with_previous_response_id(client: openai.OpenAI) -> None:
    first = client.responses.create(model="m", input="My name is Ada. Say hello.", max_output_tokens=12)
    second = client.responses.create(model="m", input="What is my name?", previous_response_id=first.id, max_output_tokens=12)
    alone = client.responses.create(model="m", input="What is my name?", max_output_tokens=12, store=False)
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > alone.usage.input_tokens + 5, "the first turn is part of the second's prompt"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(alone.id)  # store=False keeps nothing


def test_streaming_events(client: openai.OpenAI) -> None:
    with client.responses.stream(model="m", input="Say hi.", max_output_tokens=10) as stream:
        kinds = []
        deltas = []
        for e in stream:
            kinds.append(e.type)
            if e.type == "response.output_text.delta":
                deltas.append(e.delta)
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    for k in ("response.output_item.added", "response.content_part.added", "response.output_text.done",
              "response.output_item.done"):
        assert k in kinds, k
    assert "".join(deltas) == final.output_text


def test_function_call_and_output_round_trip(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                             "required": ["city"], "additionalProperties": False}}]
    r = client.responses.create(model="m", input="Weather in Paris?", tools=tools, tool_choice="required",
                                max_output_tokens=80, temperature=0)
    calls = [o for o in r.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and isinstance(json.loads(calls[0].arguments)["city"], str)
    follow = client.responses.create(model="m", previous_response_id=r.id, tools=tools, max_output_tokens=16,
                                     input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 C"}])
    assert follow.status in ("completed", "incomplete") and follow.output
    streamed = client.responses.create(model="m", input="Weather in Rome?", tools=tools, stream=True,
                                       tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=80, temperature=0)
    done = [e for e in streamed if e.type == "response.function_call_arguments.done"]
    assert done and isinstance(json.loads(done[0].arguments)["city"], str)


def test_unknown_previous_response_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.responses.create(model="m", input="hi", previous_response_id="resp_nope")
    assert exc.value.body["type"] == "not_found_error"  # type: ignore[index]


def test_delete(client: openai.OpenAI) -> None:
    r = client.responses.create(model="m", input="Hi", max_output_tokens=2)
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)


def test_bad_input_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="m", input=[{"type": "message", "role": "robot", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="m", input=[])
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="m", input="x", tools=[{"type": "web_search"}])
