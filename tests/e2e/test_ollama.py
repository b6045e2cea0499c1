"""The Ollama API through the official `ollama` client (and raw HTTP for the framing) against a
real server: chat and generate, streamed and not, tool calls, format, images, embeddings, the
model listing routes, errors in Ollama's shape."""

from __future__ import annotations

import base64
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from conftest import Server, module_server, shared_model

KEY = "ollama-key"
ASK = [{"role": "user", "content": "Say something about the sea."}]


@pytest.fixture(scope="module")
def server(smollm: Path, minilm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("ollama")
    yield from module_server("-m", str(smollm), "-c", "8192", "--rag-model", str(minilm), "--rag-db", str(d / "rag.db"),
                             "--persist-chats", "--chat-db", str(d / "chats.db"), "--api-key", KEY, api_key=KEY)


@pytest.fixture
def client(server: Server) -> ollama.Client:
    return ollama.Client(host=server.base, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)


def test_chat_plain_and_streamed(client: ollama.Client) -> None:
    opts = {"temperature": 0, "num_predict": 12, "seed": 3, "top_k": 20, "top_p": 0.9, "repeat_penalty": 1.1}
    whole = client.chat(model="smollm2", messages=ASK, stream=False, options=opts)
    assert whole.done and whole.done_reason in ("stop", "length") and whole.message.role == "assistant"
    assert whole.message.content and whole.eval_count and whole.eval_count <= 12
    assert whole.prompt_eval_count and whole.prompt_eval_count > 5 and whole.total_duration and whole.eval_duration
    parts = list(client.chat(model="smollm2", messages=ASK, stream=True, options=opts))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done and parts[-1].done_reason == whole.done_reason
    assert "".join(p.message.content or "" for p in parts) == whole.message.content


def test_num_predict_and_num_ctx(client: ollama.Client) -> None:
    r = client.chat(model="m", messages=ASK, options={"num_predict": 3, "temperature": 0.7})
    assert r.done_reason == "length" and r.eval_count == 3
    with pytest.raises(ollama.ResponseError) as exc:
        client.chat(model="m", messages=[{"role": "user", "content": "word " * 200}], options={"num_ctx": 64})
    assert exc.value.status_code == 400 and "context" in exc.value.error
    small = client.chat(model="m", messages=ASK, options={"num_ctx": 48, "num_predict": -1})
    assert small.done_reason == "length" and (small.prompt_eval_count or 0) + (small.eval_count or 0) == 48


def test_generate_with_context_and_raw(client: ollama.Client) -> None:
    first = client.generate(model="m", prompt="Name a colour.", options={"num_predict": 6, "temperature": 0})
    assert first.done and first.response and first.context
    again = client.generate(model="m", prompt="And another one?", context=first.context, options={"num_predict": 6})
    assert again.context and again.context[: len(first.context)] == first.context, "the conversation goes on"
    rendered = httpx.post(str(client._client.base_url) + "/apply-template", headers=client._client.headers,
                          json={"messages": [{"role": "user", "content": "Hi"}]}).json()["prompt"]
    raw = client.generate(model="m", prompt=rendered, raw=True, options={"num_predict": 4, "temperature": 0})
    templated = client.generate(model="m", prompt="Hi", options={"num_predict": 4, "temperature": 0})
    assert raw.response == templated.response, "raw: the prompt as given is the templated one"
    streamed = list(client.generate(model="m", prompt="Name a colour.", stream=True, options={"num_predict": 6, "temperature": 0}))
    assert "".join(p.response for p in streamed) == first.response and streamed[-1].context == first.context
    load = client.generate(model="m")  # an empty prompt loads the model
    assert load.done and load.done_reason == "load"


def test_system_and_template(client: ollama.Client) -> None:
    a = client.generate(model="m", prompt="Hi", system="You are a pirate who likes the sea. " * 10, options={"num_predict": 1})
    b = client.generate(model="m", prompt="Hi", options={"num_predict": 1})
    assert (a.prompt_eval_count or 0) > (b.prompt_eval_count or 0)
    with pytest.raises(ollama.ResponseError) as exc:
        client.generate(model="m", prompt="Hi", template="{{ .Prompt }}")
    assert exc.value.status_code == 400 and "Jinja" in exc.value.error


def test_format_json_and_schema(client: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer", "minimum": 1, "maximum": 99}},
              "required": ["name", "age"]}
    r = client.chat(model="m", messages=[{"role": "user", "content": "A person as JSON."}], format=schema,
                    options={"num_predict": 60, "temperature": 0.8, "seed": 1})
    obj = json.loads(r.message.content or "")
    assert set(obj) == {"name", "age"} and 1 <= obj["age"] <= 99
    j = client.generate(model="m", prompt="Reply with a tiny JSON object with a name.", format="json",
                        options={"num_predict": 200, "temperature": 0.7, "seed": 1, "repeat_penalty": 1.3})
    assert j.done_reason == "stop", j.response
    assert isinstance(json.loads(j.response), dict)


def test_tool_calls_out_and_back(client: ollama.Client) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                             "required": ["city"]}}}]
    call_shape = {"type": "object", "properties": {"tool_calls": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
        "type": "object", "properties": {"name": {"const": "get_weather"}, "arguments": tools[0]["function"]["parameters"]},
        "required": ["name", "arguments"]}}}, "required": ["tool_calls"]}
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    # the format makes the model write the generic call shape, which the parser turns into a call
    r = client.chat(model="m", messages=ask, tools=tools, format=call_shape, options={"num_predict": 80, "temperature": 0})
    assert r.message.tool_calls and r.message.tool_calls[0].function.name == "get_weather"
    assert isinstance(r.message.tool_calls[0].function.arguments["city"], str)
    parts = list(client.chat(model="m", messages=ask, tools=tools, format=call_shape, stream=True,
                             options={"num_predict": 80, "temperature": 0}))
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert calls and calls[0].function.name == "get_weather"
    back = ask + [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                  {"role": "tool", "content": "18 degrees", "tool_name": "get_weather"}]
    answer = client.chat(model="m", messages=back, tools=tools, options={"num_predict": 10})
    assert answer.done and answer.message.content is not None


def test_embed_and_embeddings(client: ollama.Client) -> None:
    r = client.embed(model="minilm", input=["The food was delicious", "The meal was excellent"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 384 and r.prompt_eval_count
    short = client.embed(model="minilm", input="cut me", dimensions=16)
    assert len(short.embeddings[0]) == 16
    old = client.embeddings(model="minilm", prompt="The food was delicious")
    assert old.embedding[:5] == pytest.approx(r.embeddings[0][:5], abs=1e-5)
    with pytest.raises(ollama.ResponseError) as exc:
        client.embed(model="minilm", input="word " * 2000, truncate=False)
    assert exc.value.status_code == 400
    assert client.embed(model="minilm", input="word " * 2000).embeddings  # truncated by default


def test_tags_show_ps_version(client: ollama.Client, server: Server, smollm: Path) -> None:
    tags = client.list()
    name = smollm.name.removesuffix(".gguf") + ":latest"
    assert [m.model for m in tags.models] == [name]
    d = tags.models[0].details
    assert d and d.format == "gguf" and d.family == "llama" and d.quantization_level == "Q4_1" and d.parameter_size == "135M"
    shown = client.show(name)
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "llama"
    assert isinstance(shown.modelinfo["llama.context_length"], int) and "completion" in (shown.capabilities or [])
    assert "<|im_start|>" in (shown.template or "") and shown.modelfile
    ps = client.ps()
    assert ps.models[0].context_length == 8192 and ps.models[0].model == name  # 4 slots sharing one 8192-token cache
    http = server.http()
    assert http.get("/api/version").json()["version"].count(".") == 2
    assert httpx.head(server.base + "/").status_code == 200, "HEAD / needs no key"


def test_management_routes_say_what_to_do(client: ollama.Client) -> None:
    for call in (lambda: client.pull("llama3"), lambda: client.delete("x"), lambda: client.copy("a", "b"),
                 lambda: client.create(model="x", from_="y")):
        with pytest.raises(ollama.ResponseError) as exc:
            call()
        assert exc.value.status_code == 501 and "chimera" in exc.value.error


def test_ndjson_framing_and_errors(server: Server) -> None:
    http = server.http()
    with http.stream("POST", "/api/chat", json={"model": "m", "messages": ASK, "options": {"num_predict": 5}}) as r:
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [x["done"] for x in lines] == [False] * (len(lines) - 1) + [True]
    assert all(x["model"] == "m" and x["created_at"].endswith("Z") for x in lines)
    bad = http.post("/api/chat", json={"model": "m", "messages": "nope"})
    assert bad.status_code == 400 and set(bad.json()) == {"error"}
    worse = http.post("/api/chat", content=b"{", headers={"Content-Type": "application/json"})
    assert worse.status_code == 400 and "error" in worse.json()
    unauthorized = httpx.get(server.base + "/api/tags")
    assert unauthorized.status_code == 401 and set(unauthorized.json()) == {"error"}


def test_chats_from_ollama_are_saved(server: Server) -> None:
    http = server.http()
    r = http.post("/api/chat", json={"model": "m", "messages": ASK, "stream": False, "options": {"num_predict": 4}})
    chat_id = r.headers["X-Chimera-Chat-Id"]
    saved = http.get(f"/v1/chimera/chats/{chat_id}").json()
    assert saved["messages"][-1]["content"] == r.json()["message"]["content"]
    assert saved["messages"][-1]["finish_reason"] in ("stop", "length")


@pytest.fixture(scope="module")
def vision() -> Iterator[Server]:
    yield from module_server("-m", str(shared_model("tiny-random-llama-spm.gguf")),
                             "--mmproj", str(shared_model("tiny-random-mmproj-64.gguf")), "-c", "4096")


def _jpeg() -> bytes:
    sdist = Path(os.environ.get("CHIMERA_CACHE", Path.home() / ".cache" / "chimera")) / "sdist" / "llama_cpp_python-0.3.36.tar.gz"
    with tarfile.open(sdist) as tar:
        data = tar.extractfile("llama_cpp_python-0.3.36/vendor/llama.cpp/tools/mtmd/test-1.jpeg")
        assert data is not None
        return data.read()


def test_images_in_chat_and_generate(vision: Server) -> None:
    c = ollama.Client(host=vision.base, timeout=120)
    image = base64.b64encode(_jpeg()).decode()
    with_image = c.chat(model="m", messages=[{"role": "user", "content": "Describe:", "images": [image]}], options={"num_predict": 2})
    without = c.chat(model="m", messages=[{"role": "user", "content": "Describe:"}], options={"num_predict": 2})
    assert (with_image.prompt_eval_count or 0) > (without.prompt_eval_count or 0) + 8
    g = c.generate(model="m", prompt="Describe:", images=[image], options={"num_predict": 2})
    assert (g.prompt_eval_count or 0) > 8
    bad = httpx.post(vision.base + "/api/chat", json={"model": "m", "messages": [
        {"role": "user", "content": "x", "images": ["not base64!"]}]})
    assert bad.status_code == 400 and "base64" in bad.json()["error"]
