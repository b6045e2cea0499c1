"""POST /v1/rerank (and /rerank, /v1/reranking): cross-encoder relevance of documents to a query.

Each (query, document) pair becomes `[BOS] query [EOS] [SEP] document [EOS]` (with the tokens the
vocabulary adds), as llama-server builds it; every pair of a request is scored in as few decodes
as fit, and the score is the rank-pooled output itself, read from the low-level API.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response

from ..errors import BadRequest, Loading, NotEnabled
from ..llm.engine import Engine
from ..llm.ranking import rank_pair
from .common import json_object, json_response, parse_model, services
from .leases import using

blueprint = Blueprint("rerank", __name__)


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    model: str | None = None
    query: str
    documents: list[Any] | None = None
    texts: list[Any] | None = None  # the TEI form
    top_n: int | None = Field(None, ge=1)
    return_documents: bool | None = None
    return_text: bool | None = None  # TEI
    raw_scores: bool = False  # TEI


def _doc_text(d: Any, i: int, field: str) -> str:
    if isinstance(d, str):
        return d
    if isinstance(d, dict) and isinstance(d.get("text"), str):
        return str(d["text"])
    raise BadRequest(f"{field}[{i}] must be a string or {{\"text\": string}}", param=f"{field}.{i}")


@blueprint.post("/v1/rerank")
@blueprint.post("/rerank")
@blueprint.post("/v1/reranking")
async def rerank() -> Response:
    s = services()
    req = parse_model(RerankRequest, await json_object())
    registry = s.require_models()
    named = registry.find(req.model)
    if named is not None and named.spec.kind == "rerank":
        async with using(s, named.id) as engine:
            return await _rerank(named.id, engine, req)
    if s.reranker is None:
        if s.settings.rerank_model is not None:
            s.check_loaded()
            if not s.lifecycle.side_ready:
                raise Loading()
        raise NotEnabled("no reranking model is loaded", feature="rerank")
    assert s.settings.rerank_model is not None
    return await _rerank(s.settings.rerank_model.name.removesuffix(".gguf"), s.reranker, req)


async def _rerank(model_id: str, engine: Engine, req: RerankRequest) -> Response:
    tei = req.documents is None and req.texts is not None
    field = "texts" if tei else "documents"
    docs_raw = req.texts if tei else req.documents
    if not docs_raw:
        raise BadRequest(f"'{field}' must be a non-empty array", param=field)
    docs = [_doc_text(d, i, field) for i, d in enumerate(docs_raw)]
    pairs = []
    for i, d in enumerate(docs):
        toks = rank_pair(engine, req.query, d)
        if len(toks) > min(engine.n_ctx_slot, engine.n_batch):
            raise BadRequest(f"query + {field}[{i}] is {len(toks)} tokens; the reranker takes at most "
                             f"{min(engine.n_ctx_slot, engine.n_batch)}", param=field, code="context_length_exceeded")
        pairs.append(toks)
    scores = await engine.score(pairs)
    order = sorted(range(len(docs)), key=lambda i: scores[i], reverse=True)
    if req.top_n is not None:
        order = order[: req.top_n]
    n_tokens = sum(len(p) for p in pairs)
    if tei:
        return json_response([{"index": i, "score": scores[i], **({"text": docs[i]} if req.return_text else {})} for i in order])
    results: list[dict[str, Any]] = []
    for i in order:
        item: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
        if req.return_documents:
            item["document"] = {"text": docs[i]}
        results.append(item)
    return json_response({"object": "list", "model": model_id, "results": results,
                          "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})
