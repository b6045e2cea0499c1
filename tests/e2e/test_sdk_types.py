"""Every response shape, plain and streamed, validated against the official SDKs' own types
(`openai.types`, `anthropic.types`) with pydantic, read over raw HTTP so nothing is hidden by an
SDK's leniency: a field the next SDK release makes required fails here, not in a user's client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from openai.types import Completion, CreateEmbeddingResponse, FileObject, VectorStore
from openai.types.audio import Transcription, TranscriptionStreamEvent, TranscriptionVerbose
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from openai.types.vector_stores import VectorStoreFile
from pydantic import TypeAdapter

from conftest import Server, module_server

ASK = [{"role": "user", "content": "Say something about the sea."}]


def valid(tp: Any, data: Any) -> Any:
    """`data` as the SDK type `tp`; a missing required field or a wrong type raises."""
    return TypeAdapter(tp).validate_python(data)


def sse(r: httpx.Response) -> list[Any]:
    """The JSON data of every SSE event of a streamed response ([DONE] left out)."""
    out = []
    for line in r.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


@pytest.fixture(scope="module")
def server(smollm: Path, minilm: Path, whisper_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("sdk")
    yield from module_server("-m", str(smollm), "--rag-model", str(minilm), "--rag-db", str(d / "rag.db"),
                             "--whisper-model", str(whisper_model))


def test_chat_plain_and_streamed(server: Server) -> None:
    http = server.http()
    body = {"messages": ASK, "max_tokens": 8, "logprobs": True, "top_logprobs": 2, "n": 2}
    valid(ChatCompletion, http.post("/v1/chat/completions", json=body).json())
    with http.stream("POST", "/v1/chat/completions", json=body | {"stream": True, "stream_options": {"include_usage": True}}) as r:
        events = sse(r)
    for e in events:
        valid(ChatCompletionChunk, e)
    assert events[-1]["usage"]["completion_tokens"] == 16


def test_completion_plain_and_streamed(server: Server) -> None:
    http = server.http()
    valid(Completion, http.post("/v1/completions", json={"prompt": "The sea", "max_tokens": 4, "logprobs": 2}).json())
    with http.stream("POST", "/v1/completions", json={"prompt": "The sea", "max_tokens": 4, "stream": True}) as r:
        events = sse(r)
    # chunks before the last carry finish_reason null, as OpenAI's API sends them (the SDK's
    # Completion type does not allow that), so that one field is set for the check
    for e in events:
        valid(Completion, e | {"choices": [c | {"finish_reason": c["finish_reason"] or "stop"} for c in e["choices"]]})


def test_responses_plain_and_streamed(server: Server) -> None:
    http = server.http()
    plain = valid(Response, http.post("/v1/responses", json={"input": "Hi", "max_output_tokens": 6}).json())
    assert plain.usage.input_tokens_details.cache_write_tokens == 0
    with http.stream("POST", "/v1/responses", json={"input": "Hi", "max_output_tokens": 6, "stream": True}) as r:
        events = sse(r)
    for e in events:
        valid(ResponseStreamEvent, e)
    assert events[-1]["type"] in ("response.completed", "response.incomplete")


def test_anthropic_plain_streamed_and_counted(server: Server) -> None:
    http = server.http()
    body = {"model": "m", "max_tokens": 8, "messages": ASK}
    valid(Message, http.post("/v1/messages", json=body).json())
    valid(MessageTokensCount, http.post("/v1/messages/count_tokens", json={"model": "m", "messages": ASK}).json())
    with http.stream("POST", "/v1/messages", json=body | {"stream": True}) as r:
        events = sse(r)
    for e in events:
        if e["type"] != "ping":
            valid(RawMessageStreamEvent, e)


def test_transcriptions(server: Server, whisper_model: Path) -> None:
    wav = (whisper_model.parent / "jfk.wav").read_bytes()
    http = server.http()

    def post(**form: str) -> httpx.Response:
        return http.post("/v1/audio/transcriptions", files={"file": ("jfk.wav", wav)}, data=form)

    valid(Transcription, post().json())
    verbose = valid(TranscriptionVerbose, post(response_format="verbose_json", temperature="0.2",
                                               **{"timestamp_granularities[]": "segment"}).json())
    seg = verbose.segments[0]
    assert seg.tokens and seg.avg_logprob < 0 and seg.compression_ratio > 0 and 0 <= seg.no_speech_prob < 0.5
    assert seg.temperature == 0.2 and seg.seek == int(round(seg.start * 100))
    words = valid(TranscriptionVerbose, post(response_format="verbose_json", **{"timestamp_granularities[]": "word"}).json())
    assert words.words and words.words[0].word.lower().startswith("and")
    with http.stream("POST", "/v1/audio/transcriptions", files={"file": ("jfk.wav", wav)}, data={"stream": "true"}) as r:
        events = sse(r)
    for e in events:
        valid(TranscriptionStreamEvent, e)
    assert events[-1]["type"] == "transcript.text.done"


def test_vector_stores_and_files(server: Server) -> None:
    http = server.http()
    store = valid(VectorStore, http.post("/v1/vector_stores", json={"name": "types"}).json())
    up = valid(FileObject, http.post("/v1/files", files={"file": ("a.txt", b"Whales sing in the deep sea.")},
                                     data={"purpose": "assistants"}).json())
    f = valid(VectorStoreFile, http.post(f"/v1/vector_stores/{store.id}/files", json={
        "file_id": up.id, "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 64,
                                                                              "chunk_overlap_tokens": 8}}}).json())
    assert f.chunking_strategy.type == "static"
    assert f.chunking_strategy.static.max_chunk_size_tokens == 64 and f.chunking_strategy.static.chunk_overlap_tokens == 8
    auto = valid(VectorStoreFile, http.post(f"/v1/vector_stores/{store.id}/files", json={"text": "Seals rest on rocks."}).json())
    assert auto.chunking_strategy.static.max_chunk_size_tokens == 256  # the server's --rag-chunk-tokens


@pytest.fixture(scope="module")
def embedder(minilm: Path) -> Iterator[Server]:
    yield from module_server("-m", str(minilm), "--embeddings")


def test_embeddings_types(embedder: Server) -> None:
    http = embedder.http()
    for fmt in ("float", "base64"):
        body = http.post("/v1/embeddings", json={"input": ["a", "b"], "encoding_format": fmt}).json()
        if fmt == "float":
            valid(CreateEmbeddingResponse, body)
        else:  # the SDK types the vector as floats and decodes base64 itself
            assert all(isinstance(d["embedding"], str) for d in body["data"])
