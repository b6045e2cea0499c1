"""OpenAI's vector store routes (plus the simpler forms: ids or names, `k`, POST .../delete,
direct multipart or JSON-text ingestion) and `/v1/files` for the SDK's upload flow."""

from __future__ import annotations

import json
from typing import Any

import trio
from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, request

from ..errors import BadRequest, Loading, NotEnabled
from ..rag import db
from ..rag.extract import extract
from ..rag.service import RagService
from .common import json_object, json_response, parse_model, services

blueprint = Blueprint("vector_stores", __name__)
MAX_METADATA = 16


def rag() -> RagService:
    s = services()
    if s.rag is None:
        if s.settings.rag_model is not None or s.settings.embeddings:
            s.check_loaded()
            raise Loading()
        raise NotEnabled("vector stores need an embedding model", feature="vector-stores")
    return s.rag


def _metadata(v: Any, param: str) -> dict[str, Any]:
    if v is None:
        return {}
    if isinstance(v, str):  # multipart form fields carry JSON text
        try:
            v = json.loads(v)
        except ValueError:
            raise BadRequest(f"{param} must be a JSON object", param=param) from None
    if not isinstance(v, dict) or len(v) > MAX_METADATA:
        raise BadRequest(f"{param} must be an object of at most {MAX_METADATA} keys", param=param)
    for key, val in v.items():
        if len(key) > 64 or not isinstance(val, (str, int, float, bool)) or (isinstance(val, str) and len(val) > 512):
            raise BadRequest(f"{param}: keys up to 64 characters, values strings (≤ 512), numbers or booleans", param=param)
    return dict(v)


def _limit() -> int:
    raw = request.args.get("limit", "20")
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest("limit must be an integer", param="limit") from None
    if not 1 <= limit <= 100:
        raise BadRequest("limit must be between 1 and 100", param="limit")
    return limit


def _order() -> str:
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc", param="order")
    return order


class CreateStore(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = Field(None, max_length=256)
    metadata: dict[str, Any] | None = None
    file_ids: list[str] | None = None
    embedding_model: str | None = None
    chunking_strategy: dict[str, Any] | None = None


@blueprint.post("/v1/vector_stores")
async def create_store() -> Response:
    svc = rag()
    req = parse_model(CreateStore, await json_object())
    store = await svc.create_store(req.name, _metadata(req.metadata, "metadata"), req.embedding_model)
    tokens, overlap = _chunking(req.chunking_strategy)
    for fid in req.file_ids or []:
        await _ingest_upload(svc, store["id"], fid, {}, tokens, overlap)
    if req.file_ids:
        store = await svc.read(lambda con: db.find_store(con, store["id"]))
    return json_response(store)


@blueprint.get("/v1/vector_stores")
async def list_stores() -> Response:
    svc = rag()
    limit, order = _limit(), _order()
    after, before = request.args.get("after"), request.args.get("before")
    return json_response(await svc.read(lambda con: db.list_stores(con, limit, order, after, before)))


@blueprint.get("/v1/vector_stores/<ref>")
async def get_store(ref: str) -> Response:
    return json_response(await rag().read(lambda con: db.find_store(con, ref)))


@blueprint.post("/v1/vector_stores/<ref>")
async def update_store(ref: str) -> Response:
    body = await json_object()
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not name or len(name) > 256):
        raise BadRequest("name must be a non-empty string", param="name")
    meta = _metadata(body["metadata"], "metadata") if body.get("metadata") is not None else None
    return json_response(await rag().write(lambda con: db.update_store(con, ref, name, meta)))


@blueprint.delete("/v1/vector_stores/<ref>")
@blueprint.post("/v1/vector_stores/<ref>/delete")
async def delete_store(ref: str) -> Response:
    sid = await rag().delete_store(ref)
    return json_response({"id": sid, "object": "vector_store.deleted", "deleted": True})


def _chunking(strategy: Any) -> tuple[int | None, int | None]:
    if strategy is None:
        return None, None
    if isinstance(strategy, str):
        try:
            strategy = json.loads(strategy)
        except ValueError:
            raise BadRequest("chunking_strategy must be a JSON object", param="chunking_strategy") from None
    if not isinstance(strategy, dict) or strategy.get("type") not in ("auto", "static"):
        raise BadRequest("chunking_strategy.type must be auto or static", param="chunking_strategy")
    if strategy["type"] == "auto":
        return None, None
    static = strategy.get("static") or {}
    size, overlap = static.get("max_chunk_size_tokens"), static.get("chunk_overlap_tokens", 0)
    if not isinstance(size, int) or not isinstance(overlap, int) or not 16 <= size <= 4096 or not 0 <= overlap <= size // 2:
        raise BadRequest("static chunking: max_chunk_size_tokens 16–4096, chunk_overlap_tokens 0–half of it",
                         param="chunking_strategy")
    return size, overlap


async def _ingest_upload(svc: RagService, ref: str, fid: str, attributes: dict[str, Any],
                         tokens: int | None, overlap: int | None) -> dict[str, Any]:
    if not isinstance(fid, str):
        raise BadRequest("file_id must be a string", param="file_id")
    data, filename, ctype = await svc.read(lambda con: db.upload_content(con, fid))
    text = await _extract(data, filename, ctype)
    return await svc.ingest(ref, text, filename=filename, source_uri=None, attributes=attributes, nbytes=len(data),
                            file_id=fid, chunk_tokens=tokens, overlap=overlap)


async def _extract(data: bytes, filename: str, ctype: str | None) -> str:
    return await trio.to_thread.run_sync(extract, data, filename, ctype)


@blueprint.post("/v1/vector_stores/<ref>/files")
async def add_file(ref: str) -> Response:
    svc = rag()
    ctype = request.headers.get("Content-Type", "")
    if ctype.startswith("multipart/form-data"):
        files, form = await request.files, await request.form
        f = files.get("file")
        if f is None:
            raise BadRequest("multipart ingestion needs a 'file' field", param="file")
        data = f.read()
        attributes = _metadata(form.get("attributes") or form.get("metadata"), "attributes")
        tokens, overlap = _chunking(form.get("chunking_strategy"))
        extracted = await _extract(data, f.filename or "", f.content_type)
        out = await svc.ingest(ref, extracted, filename=f.filename or None, source_uri=form.get("source_uri"),
                               attributes=attributes, nbytes=len(data), chunk_tokens=tokens, overlap=overlap)
        return json_response(out)
    body = await json_object()
    attributes = _metadata(body.get("attributes", body.get("metadata")), "attributes")
    tokens, overlap = _chunking(body.get("chunking_strategy"))
    if "file_id" in body:
        return json_response(await _ingest_upload(svc, ref, body["file_id"], attributes, tokens, overlap))
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("send 'file_id' (from /v1/files), a non-empty 'text', or a multipart 'file'", param="text")
    source_uri, filename = body.get("source_uri"), body.get("filename")
    for name, v in (("source_uri", source_uri), ("filename", filename)):
        if v is not None and not isinstance(v, str):
            raise BadRequest(f"{name} must be a string", param=name)
    out = await svc.ingest(ref, text, filename=filename, source_uri=source_uri, attributes=attributes,
                           nbytes=len(text.encode()), chunk_tokens=tokens, overlap=overlap)
    return json_response(out)


async def _store_id(svc: RagService, ref: str) -> str:
    return str((await svc.read(lambda con: db.find_store(con, ref)))["id"])


@blueprint.get("/v1/vector_stores/<ref>/files")
async def list_files(ref: str) -> Response:
    svc = rag()
    sid = await _store_id(svc, ref)
    limit, order, after = _limit(), _order(), request.args.get("after")
    return json_response(await svc.read(lambda con: db.list_files(con, sid, limit, order, after)))


@blueprint.get("/v1/vector_stores/<ref>/files/<fid>")
async def get_file(ref: str, fid: str) -> Response:
    svc = rag()
    sid = await _store_id(svc, ref)
    return json_response(await svc.read(lambda con: db.get_file(con, sid, fid)))


@blueprint.get("/v1/vector_stores/<ref>/files/<fid>/content")
async def file_content(ref: str, fid: str) -> Response:
    svc = rag()
    sid = await _store_id(svc, ref)
    texts = await svc.read(lambda con: db.file_chunks(con, sid, fid))
    return json_response({"object": "vector_store.file_content.page", "data": [{"type": "text", "text": t} for t in texts],
                          "has_more": False, "next_page": None})


@blueprint.delete("/v1/vector_stores/<ref>/files/<fid>")
async def delete_file(ref: str, fid: str) -> Response:
    svc = rag()
    sid = await _store_id(svc, ref)
    await svc.write(lambda con: db.delete_file(con, sid, fid))
    return json_response({"id": fid, "object": "vector_store.file.deleted", "deleted": True})


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    query: str | list[str]
    max_num_results: int | None = Field(None, ge=1, le=50)
    k: int | None = Field(None, ge=1, le=50)
    filters: dict[str, Any] | None = None
    ranking_options: dict[str, Any] | None = None
    rewrite_query: bool = False
    rerank: bool = False


@blueprint.post("/v1/vector_stores/<ref>/search")
async def search(ref: str) -> Response:
    svc = rag()
    req = parse_model(SearchRequest, await json_object())
    query = req.query if isinstance(req.query, str) else " ".join(q for q in req.query if isinstance(q, str))
    k = req.max_num_results or req.k or 10
    opts = req.ranking_options or {}
    threshold = opts.get("score_threshold")
    if threshold is not None and (not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1):
        raise BadRequest("ranking_options.score_threshold must be between 0 and 1", param="ranking_options")
    rerank = req.rerank or (opts.get("ranker") not in (None, "auto", "none") and svc.reranker is not None)
    return json_response(await svc.search(ref, query, k, req.filters, rerank, threshold))


# -- /v1/files: uploads for vector stores -----------------------------------------------------

@blueprint.post("/v1/files")
async def upload() -> Response:
    svc = rag()
    if not request.headers.get("Content-Type", "").startswith("multipart/form-data"):
        raise BadRequest("upload a file as multipart/form-data with 'file' and 'purpose'", param="file")
    files, form = await request.files, await request.form
    f = files.get("file")
    if f is None:
        raise BadRequest("'file' is required", param="file")
    purpose = form.get("purpose") or "assistants"
    data = f.read()
    if not data:
        raise BadRequest("the file is empty", param="file")
    name = f.filename or "upload"
    return json_response(await svc.write(lambda con: db.create_upload(con, name, purpose, data, f.content_type)))


@blueprint.get("/v1/files")
async def list_uploads() -> Response:
    svc = rag()
    purpose, limit = request.args.get("purpose"), _limit()
    return json_response(await svc.read(lambda con: db.list_uploads(con, purpose, limit)))


@blueprint.get("/v1/files/<fid>")
async def get_upload(fid: str) -> Response:
    return json_response(await rag().read(lambda con: db.get_upload(con, fid)))


@blueprint.get("/v1/files/<fid>/content")
async def upload_content(fid: str) -> Response:
    data, _name, ctype = await rag().read(lambda con: db.upload_content(con, fid))
    return Response(data, content_type=ctype or "application/octet-stream")


@blueprint.delete("/v1/files/<fid>")
async def delete_upload(fid: str) -> Response:
    await rag().write(lambda con: db.delete_upload(con, fid))
    return json_response({"id": fid, "object": "file", "deleted": True})
