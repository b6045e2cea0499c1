"""/v1/rerank with a cross-encoder GGUF (random weights: shape, ordering and determinism)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Server, module_server, shared_model

DOCS = ["the cat sat on the mat", "stock markets fell today", "a kitten is a young cat", "rain is expected"]


@pytest.fixture(scope="module")
def server(smollm: Path) -> Iterator[Server]:
    yield from module_server("-m", str(smollm), "--rerank-model", str(shared_model("tiny-random-bert-rerank.gguf")))


def test_rerank_sorted_top_n_and_documents(server: Server) -> None:
    http = server.http()
    r = http.post("/v1/rerank", json={"query": "cats", "documents": DOCS, "return_documents": True})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert sorted(x["index"] for x in res) == [0, 1, 2, 3]
    scores = [x["relevance_score"] for x in res]
    assert scores == sorted(scores, reverse=True)
    assert all(x["document"]["text"] == DOCS[x["index"]] for x in res)
    assert r.json()["usage"]["prompt_tokens"] > 8
    top = http.post("/rerank", json={"query": "cats", "documents": [{"text": d} for d in DOCS], "top_n": 2}).json()["results"]
    assert [x["index"] for x in top] == [x["index"] for x in res[:2]] and "document" not in top[0]


def test_scores_equal_single_and_batched(server: Server) -> None:
    http = server.http()
    batched = {x["index"]: x["relevance_score"] for x in http.post("/v1/rerank", json={"query": "cats", "documents": DOCS}).json()["results"]}
    for i, d in enumerate(DOCS):
        single = http.post("/v1/rerank", json={"query": "cats", "documents": [d]}).json()["results"][0]["relevance_score"]
        assert abs(single - batched[i]) < 1e-4, (i, single, batched[i])


def test_tei_form(server: Server) -> None:
    r = server.http().post("/rerank", json={"query": "cats", "texts": DOCS, "return_text": True}).json()
    assert isinstance(r, list) and {x["index"] for x in r} == {0, 1, 2, 3} and "text" in r[0] and "score" in r[0]


def test_bad_rerank_requests(server: Server) -> None:
    http = server.http()
    assert http.post("/v1/rerank", json={"query": "q", "documents": []}).status_code == 400
    assert http.post("/v1/rerank", json={"query": "q", "documents": [5]}).status_code == 400
    assert http.post("/v1/rerank", json={"documents": ["a"]}).status_code == 400
    assert server.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=2).choices


def test_rerank_without_model_is_501(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm)).wait_ready()
    r = httpx.post(s.base + "/v1/rerank", json={"query": "q", "documents": ["a"]})
    assert r.status_code == 501 and "--rerank-model" in r.json()["error"]["message"]


def test_main_model_as_reranker(start_server: type[Server]) -> None:
    s = start_server("-m", str(shared_model("tiny-random-bert-rerank.gguf")), "--reranking").wait_ready()
    r = httpx.post(s.base + "/v1/rerank", json={"query": "cats", "documents": DOCS})
    assert r.status_code == 200 and len(r.json()["results"]) == 4
    chat = httpx.post(s.base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 501
    emb = httpx.post(s.base + "/v1/embeddings", json={"input": "hi"})
    assert emb.status_code == 501
