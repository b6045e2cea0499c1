"""Each chat dialect's encoder, in process, over the serving core with a fake engine (Quart's test
client under pytest-trio): the engine's scripted output comes back in each API's shapes, checked
against the SDKs' own types where they have them. The real engine is in tests/e2e."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from anthropic.types import Message
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response
from pydantic import TypeAdapter

from chimera.config import Settings
from chimera.http.app import create_app
from chimera.llm.generation import Choice, GenerationDefaults, GenerationSpec
from chimera.llm.sequence import Delta, Finished
from chimera.registry.catalog import ModelSpec
from chimera.registry.registry import ModelRegistry
from chimera.services import Services

THINK_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<think>"


@dataclass
class FakeSeq:
    index: int
    generated: list[int] = field(default_factory=list)


class FakeGeneration:
    """Plays back the scripted pieces as one choice per sequence."""

    def __init__(self, prompt: list[int], spec: GenerationSpec, pieces: list[str]) -> None:
        self.prompts = [prompt]
        self.n = spec.n
        self.seqs = [FakeSeq(i) for i in range(spec.n)]
        self.media_tokens = 0
        self.pieces = pieces
        self.cancelled = False
        self.limit = spec.max_tokens

    def _finished(self, index: int, n: int, reason: str) -> Finished:
        usage = {"prompt_tokens": len(self.prompts[0]), "completion_tokens": n, "total_tokens": len(self.prompts[0]) + n,
                 "prompt_tokens_details": {"cached_tokens": 2}}
        return Finished(index, reason, usage, {"prompt_ms": 1.5, "predicted_ms": 2.5, "predicted_n": n})

    async def events(self) -> AsyncIterator[Delta | Finished]:
        for seq in self.seqs:
            pieces = self.pieces if self.limit < 0 else self.pieces[: self.limit]
            for k, piece in enumerate(pieces):
                seq.generated.append(100 + k)
                yield Delta(seq.index, piece, [100 + k], [{"id": 100 + k, "logprob": -0.5, "bytes": [], "top": [(100 + k, -0.5), (7, -2.0)]}])
                await trio.lowlevel.checkpoint()
            yield self._finished(seq.index, len(pieces), "length" if len(pieces) < len(self.pieces) else "stop")

    async def collect(self) -> list[Choice]:
        out = {s.index: Choice(s.index) for s in self.seqs}
        async for ev in self.events():
            if isinstance(ev, Delta):
                out[ev.index].text.append(ev.text)
                out[ev.index].logprobs.extend(ev.logprobs or [])
            else:
                out[ev.index].finished = ev
        return [out[i] for i in sorted(out)]

    def cancel(self) -> None:
        self.cancelled = True


class FakeEngine:
    """The serving core's ChatEngine, with an output chosen by the test."""

    vision = audio = False
    embeddings = ranking = False
    lost = False
    n_ctx_slot = 4096

    def __init__(self, pieces: list[str], template: str = THINK_TEMPLATE) -> None:
        self.defaults = GenerationDefaults()
        self.pieces = pieces
        self.template = template
        self.rendered: list[str] = []
        self.specs: list[GenerationSpec] = []

    projector = False
    n_vocab = 1000
    n_slots = 1

    async def run(self) -> None:
        await trio.sleep_forever()

    def close(self) -> None:
        pass

    @property
    def template_source(self) -> str:
        return self.template

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool, extra: dict[str, Any]) -> str:
        import jinja2

        text = jinja2.Template(self.template).render(messages=messages, add_generation_prompt=add_generation_prompt, **extra)
        self.rendered.append(text)
        return text

    def tokenize_prompt(self, text: str, bos: bool = True) -> list[int]:
        return [1] * bos + [ord(c) % 1000 for c in text]

    def token_bytes(self, token: int) -> bytes:
        return f"<{token}>".encode()

    def text_tokens(self, text: str) -> list[int]:
        return [ord(c) % 1000 for c in text]

    def prompt_text(self, tokens: list[int]) -> str:
        return "".join(f"<{t}>" for t in tokens)

    def eog_tokens(self) -> list[int]:
        return [2]

    def generate(self, prompts: list[list[int]], spec: GenerationSpec, param: str, render_special: bool = False) -> FakeGeneration:
        self.specs.append(spec)
        return FakeGeneration(prompts[0], spec, self.pieces)

    async def generate_with_media(self, text: str, media: list[bytes], spec: GenerationSpec,
                                  render_special: bool = False) -> FakeGeneration:
        raise AssertionError("no media here")


@asynccontextmanager
async def _client(pieces: list[str], template: str = THINK_TEMPLATE) -> AsyncIterator[tuple[Any, FakeEngine]]:
    """The app over a model registry whose one model is the fake engine."""
    engine = FakeEngine(pieces, template)
    services = Services(settings=Settings(), api_keys=())
    spec = ModelSpec(id="fake", path=Path("fake.gguf"), settings=Settings(), load_on_startup=True)
    services.models = ModelRegistry([spec], services.metrics, default="fake", loader=lambda _spec, _progress: engine,
                                    free_memory=lambda: 1 << 40)
    services.lifecycle.models_ready = services.lifecycle.side_ready = True
    async with trio.open_nursery() as nursery:
        await nursery.start(services.models.run)
        while services.models.hosted["fake"].state != "loaded":
            await trio.sleep(0.01)
        yield create_app(services).test_client(), engine
        nursery.cancel_scope.cancel()


REPLY = ["pond", "ering</think>", "Hello", " there"]


async def streamed(client: Any, path: str, body: dict[str, Any]) -> str:
    """A streamed response's body, read as it comes (the test client's plain requests hold only
    ten chunks before the app waits for a reader)."""
    async with client.request(path, method="POST", headers={"Content-Type": "application/json"}) as conn:
        await conn.send(json.dumps(body).encode())
        await conn.send_complete()
        out = b""
        while True:
            try:
                out += await conn.receive()
            except Exception:  # noqa: BLE001 - the end of the response
                return out.decode()


async def test_openai_chat_plain_and_streamed() -> None:
    async with _client(REPLY) as (client, engine):
        body = {"messages": [{"role": "user", "content": "Hi"}], "logprobs": True, "top_logprobs": 1, "temperature": 0.2}
        r = await client.post("/v1/chat/completions", json=body)
        data = await r.get_json()
        c = TypeAdapter(ChatCompletion).validate_python(data)
        assert c.choices[0].message.content == "Hello there" and data["choices"][0]["message"]["reasoning_content"] == "pondering"
        assert c.usage and (c.usage.prompt_tokens, c.usage.completion_tokens) == (len(engine.rendered[0]) + 1, 4)
        assert c.choices[0].logprobs and c.choices[0].logprobs.content[0].top_logprobs[0].token == "<100>"
        assert engine.specs[0].sampling.temperature == 0.2 and engine.specs[0].n_probs == 1
        text = await streamed(client, "/v1/chat/completions", body | {"stream": True, "stream_options": {"include_usage": True}})
        events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
        for e in events:
            TypeAdapter(ChatCompletionChunk).validate_python(e)
        deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
        assert "".join(d.get("content") or "" for d in deltas) == "Hello there"
        assert "".join(d.get("reasoning_content") or "" for d in deltas) == "pondering"
        assert events[-1]["usage"]["completion_tokens"] == 4


async def test_openai_chat_tool_calls() -> None:
    async with _client(['{"tool_calls": [{"name": "get_time", "arguments": {"tz": "UTC"}}]}'], template="{{ messages }}") as (client, _):
        tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}]
        r = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "time?"}], "tools": tools})
        c = TypeAdapter(ChatCompletion).validate_python(await r.get_json())
        assert c.choices[0].finish_reason == "tool_calls" and c.choices[0].message.tool_calls
        call = c.choices[0].message.tool_calls[0]
        assert call.function.name == "get_time" and json.loads(call.function.arguments) == {"tz": "UTC"}  # type: ignore[union-attr]


async def test_anthropic_messages() -> None:
    async with _client(REPLY) as (client, engine):
        body = {"model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": "Hi"}], "thinking": {"type": "enabled"}}
        r = await client.post("/v1/messages", json=body)
        m = TypeAdapter(Message).validate_python(await r.get_json())
        assert [b.type for b in m.content] == ["thinking", "text"] and m.stop_reason == "max_tokens"
        assert m.usage.cache_read_input_tokens == 2 and m.usage.input_tokens == len(engine.rendered[0]) + 1 - 2
        text = await streamed(client, "/v1/messages", body | {"stream": True})
        names = [line[7:] for line in text.splitlines() if line.startswith("event: ")]
        assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]


async def test_responses() -> None:
    async with _client(REPLY) as (client, _):
        r = await client.post("/v1/responses", json={"input": "Hi", "instructions": "Be brief."})
        resp = TypeAdapter(Response).validate_python(await r.get_json())
        assert [o.type for o in resp.output] == ["reasoning", "message"] and resp.output_text == "Hello there"
        text = await streamed(client, "/v1/responses", {"input": "Hi", "stream": True})
        kinds = [json.loads(line[6:])["type"] for line in text.splitlines() if line.startswith("data: ")]
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        assert kinds.count("response.output_text.delta") == 2


async def test_ollama_chat_and_generate() -> None:
    from ollama import ChatResponse, GenerateResponse

    async with _client(REPLY) as (client, engine):
        r = await client.post("/api/chat", json={"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                                                 "stream": False, "options": {"num_predict": 3, "top_k": 5}})
        chat = ChatResponse(**(await r.get_json()))
        assert chat.message.thinking == "pondering" and chat.message.content == "Hello" and chat.done_reason == "length"
        assert engine.specs[-1].sampling.top_k == 5 and chat.prompt_eval_duration == 1_500_000
        text = await streamed(client, "/api/generate", {"model": "m", "prompt": "Hi", "think": False})
        lines = [GenerateResponse(**json.loads(x)) for x in text.splitlines()]
        assert [x.done for x in lines] == [False] * (len(lines) - 1) + [True] and lines[-1].context
        assert "".join(x.response or "" for x in lines) == "Hello there"
        assert "enable_thinking" not in engine.rendered[-1]  # the template variable went in, not as text


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses", "/api/chat"])
async def test_errors_in_each_dialects_shape(path: str) -> None:
    async with _client(REPLY) as (client, _):
        r = await client.post(path, data="{", headers={"Content-Type": "application/json"})
        body = await r.get_json()
        assert r.status_code == 400
        if path == "/api/chat":
            assert set(body) == {"error"}
        elif path == "/v1/messages":
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        else:
            assert body["error"]["type"] == "invalid_request_error"
