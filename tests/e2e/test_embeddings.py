"""/v1/embeddings with the real all-MiniLM-L6-v2 (prepared by chimera from its PyPI package)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest

from conftest import Server, module_server


@pytest.fixture(scope="module")
def server(minilm: Path) -> Iterator[Server]:
    yield from module_server("-m", str(minilm), "--embeddings")


def test_paraphrase_scores_higher_than_unrelated(server: Server) -> None:
    # the SDK's default asks for base64 and decodes it after parsing, which its strict response
    # validation (list of floats) refuses: the SDK's own default path is checked leniently here
    r = server.client(_strict_response_validation=False).embeddings.create(
        model="minilm", input=["The food was delicious", "The meal was excellent", "Quantum chromodynamics"]
    )
    assert [d.index for d in r.data] == [0, 1, 2]
    v = [np.array(d.embedding) for d in r.data]
    assert len(v[0]) == 384
    assert all(abs(np.linalg.norm(x) - 1.0) < 1e-4 for x in v), "vectors are normalized"
    para, unrelated = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert para > 0.6 and unrelated < 0.2 and para > unrelated + 0.4
    assert r.usage.prompt_tokens > 6 and r.usage.total_tokens == r.usage.prompt_tokens


def test_base64_equals_float(server: Server) -> None:
    c = server.client()
    f = c.embeddings.create(model="m", input="a small test sentence", encoding_format="float").data[0].embedding
    raw = server.http().post("/v1/embeddings", json={"input": "a small test sentence", "encoding_format": "base64"}).json()
    b = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(b, np.array(f, dtype=np.float32), atol=1e-7)


def test_token_array_inputs_match_text(server: Server) -> None:
    http = server.http()
    toks = http.post("/tokenize", json={"content": "hello world", "add_special": True}).json()["tokens"]
    c = server.client()
    by_text = c.embeddings.create(model="m", input="hello world", encoding_format="float").data[0].embedding
    by_tokens = c.embeddings.create(model="m", input=[toks], encoding_format="float").data[0].embedding
    assert np.allclose(by_text, by_tokens, atol=1e-6)


def test_many_inputs_in_one_request(server: Server) -> None:
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(20)]
    c = server.client()
    r = c.embeddings.create(model="m", input=texts, encoding_format="float")
    assert len(r.data) == 20
    single = c.embeddings.create(model="m", input=texts[7], encoding_format="float").data[0].embedding
    assert np.allclose(r.data[7].embedding, single, atol=1e-5), "batching does not change a vector"


def test_bad_embedding_inputs(server: Server) -> None:
    http = server.http()
    assert http.post("/v1/embeddings", json={"input": []}).status_code == 400
    assert http.post("/v1/embeddings", json={"input": 5}).status_code == 400
    for bad in ({"content": "string"}, {"content": [{"type": "unknown"}]}, {"nothing": 1}, [True],
                {"content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}):
        r = http.post("/v1/embeddings", json={"input": bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == "input", bad
    too_long = http.post("/v1/embeddings", json={"input": "word " * 2000})
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"


def test_generation_is_refused_in_embeddings_mode(server: Server) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        server.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.status_code == 501


def test_llama_server_input_forms(server: Server) -> None:
    """Mixed ids and text, object entries and an empty string, as llama-server takes them."""
    http = server.http()

    def embed(inp: object) -> list[list[float]]:
        r = http.post("/v1/embeddings", json={"input": inp})
        assert r.status_code == 200, (inp, r.text)
        return [d["embedding"] for d in r.json()["data"]]

    toks = http.post("/tokenize", json={"content": "hello world", "add_special": True}).json()["tokens"]
    text = embed("hello world")[0]
    assert np.allclose(embed({"prompt_string": "hello world"})[0], text, atol=1e-6)
    assert np.allclose(embed({"content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]})[0], text, atol=1e-6)
    # ids with a string among them: one input; the string adds no special tokens in the middle
    mid = http.post("/tokenize", json={"content": "hello"}).json()["tokens"]
    mixed = embed([toks[0], "hello", *toks[1 + len(mid):]])
    assert len(mixed) == 1 and np.allclose(mixed[0], text, atol=1e-6)
    many = embed(["hello world", toks, {"prompt_string": "hello world"}, [toks[0], "hello", *toks[1 + len(mid):]]])
    assert len(many) == 4 and all(np.allclose(v, text, atol=1e-6) for v in many)
    empty = embed("")  # the model's special tokens alone
    assert len(empty) == 1 and len(empty[0]) == 384


def test_pooling_flag(start_server: type[Server], minilm: Path) -> None:
    none = start_server("-m", str(minilm), "--embeddings", "--pooling", "none", "-c", "512").wait_ready()
    r = none.http().post("/embeddings", json={"input": "hello hello hello"})
    assert r.status_code == 200, r.text
    rows = r.json()[0]["embedding"]
    n_tok = len(none.http().post("/tokenize", json={"content": "hello hello hello", "add_special": True}).json()["tokens"])
    assert len(rows) == n_tok == 5 and all(len(v) == 384 for v in rows)  # [CLS] 3 words [SEP]
    assert all(abs(float(np.linalg.norm(v)) - 1.0) > 1e-3 for v in rows)  # raw, not normalized
    oai = none.http().post("/v1/embeddings", json={"input": "hello"})
    assert oai.status_code == 400 and "--pooling none" in oai.json()["error"]["message"]
    # cls against the model's own (mean) pooling: a different vector for the same text
    cls = start_server("-m", str(minilm), "--embeddings", "--pooling", "cls", "-c", "512").wait_ready()
    mean = start_server("-m", str(minilm), "--embeddings", "--pooling", "mean", "-c", "512").wait_ready()
    a = cls.http().post("/v1/embeddings", json={"input": "a test sentence"}).json()["data"][0]["embedding"]
    b = mean.http().post("/v1/embeddings", json={"input": "a test sentence"}).json()["data"][0]["embedding"]
    assert abs(float(np.linalg.norm(a)) - 1) < 1e-4 and float(np.dot(a, b)) < 0.999
    bad = start_server("-m", str(minilm), "--embeddings", "--pooling", "max")
    assert bad.proc.wait(60) == 2 and "--pooling" in bad.output()
