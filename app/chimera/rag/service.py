"""Vector stores as a service: ingestion (extract → chunk → embed in batches → one transaction
per file) and search (embed the query → nearest chunks → optional rerank), over `db` and `search`.

One writer connection, serialized by a trio lock and used from worker threads; every read opens
its own connection (WAL lets reads run beside a long ingest). A failed or cancelled ingest rolls
its transaction back, so it leaves nothing behind.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import trio

from ..errors import BadRequest
from . import db
from .chunking import chunk, pieces
from .filters import to_sql
from .search import CoarseCache, hydrate, nearest

if TYPE_CHECKING:
    from ..config import Settings
    from ..llm.engine import Engine

EMBED_BATCH = 64
RERANK_POOL = 4


def embedder_settings(settings: Settings) -> Settings:
    """How a dedicated embedding model is loaded (--rag-model, and `chimera rag`): its trained
    context per sequence, 8 sequences a decode, no LoRA adapters of the main model."""
    return settings.model_copy(update={"embeddings": True, "ctx_size": 0, "parallel": 8, "lora": (), "lora_scaled": ()})


class RagService:
    def __init__(self, path: Path, embedder: Engine, model_name: str, chunk_tokens: int, overlap: int,
                 reranker: Engine | None = None) -> None:
        self.path = path
        self.embedder = embedder
        self.model_name = model_name
        self.dim = int(embedder.model.n_embd)
        self.reranker = reranker
        # room for the model's special tokens ([CLS] … [SEP]) inside one sequence
        self.chunk_tokens = max(16, min(chunk_tokens, embedder.n_ctx_slot - 4, embedder.n_batch - 4))
        self.overlap = max(0, min(overlap, self.chunk_tokens // 2))
        self._lock = trio.Lock()
        self._writer: Any = None
        self._coarse = CoarseCache()

    async def open(self) -> None:
        def work() -> Any:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = db.connect(self.path)
            db.migrate(con)
            return con

        self._writer = await trio.to_thread.run_sync(work)

    async def read(self, fn: Callable[[Any], Any]) -> Any:
        def work() -> Any:
            con = db.connect(self.path)
            try:
                return fn(con)
            finally:
                con.close()

        return await trio.to_thread.run_sync(work)

    async def write(self, fn: Callable[[Any], Any]) -> Any:
        async with self._lock:
            return await trio.to_thread.run_sync(fn, self._writer)

    def check_model(self, store: dict[str, Any]) -> None:
        if store["embedding_dimension"] != self.dim or store["embedding_model"] != self.model_name:
            raise BadRequest(
                f"vector store {store['id']} was built with {store['embedding_model']} ({store['embedding_dimension']} "
                f"dimensions); this server embeds with {self.model_name} ({self.dim} dimensions). Start the server "
                "with the store's embedding model (--rag-model), or use another store.", param="vector_store_id",
                code="embedding_model_mismatch")

    async def create_store(self, name: str | None, metadata: dict[str, str], model: str | None) -> dict[str, Any]:
        if model is not None and model != self.model_name:
            raise BadRequest(f"this server embeds with {self.model_name}, not {model}", param="embedding_model")
        return await self.write(lambda con: db.create_store(con, name, metadata, self.model_name, self.dim))

    async def delete_store(self, ref: str) -> str:
        sid: str = await self.write(lambda con: db.delete_store(con, ref))
        self._coarse.drop(sid)
        return sid

    # -- ingestion ----------------------------------------------------------------------------

    def _count(self, text: str) -> int:
        return len(self.embedder.model.tokenize(text, add_special=False, parse_special=False))

    def _with_specials(self, text: str) -> list[int]:
        toks = self.embedder.model.tokenize(text, add_special=True, parse_special=False)
        limit = min(self.embedder.n_ctx_slot, self.embedder.n_batch)
        return toks if len(toks) <= limit else toks[: limit - 1] + toks[-1:]

    async def _embed(self, texts: list[str]) -> list[tuple[list[int], np.ndarray]]:
        toks = await trio.to_thread.run_sync(lambda: [self._with_specials(t) for t in texts])
        vecs = await self.embedder.embed(toks)
        return [(t, np.asarray(v, dtype=np.float32)) for t, v in zip(toks, vecs)]

    async def ingest(self, store_ref: str, text: str, *, filename: str | None, source_uri: str | None,
                     attributes: dict[str, Any], nbytes: int, file_id: str | None = None,
                     chunk_tokens: int | None = None, overlap: int | None = None) -> dict[str, Any]:
        store = await self.read(lambda con: db.find_store(con, store_ref))
        self.check_model(store)
        sid = store["id"]
        fid = file_id or db.new_id("file-")
        limit = self.chunk_tokens if chunk_tokens is None else max(16, min(chunk_tokens, self.chunk_tokens))
        over = self.overlap if overlap is None else max(0, min(overlap, limit // 2))
        chunks = await trio.to_thread.run_sync(lambda: list(chunk(pieces(text, limit, self._count), limit, over)))
        if not chunks:
            raise BadRequest("the document holds no text to index", param="file")
        async with self._lock:
            con = self._writer
            def begin() -> None:
                con.execute("BEGIN IMMEDIATE")
                if con.execute("SELECT 1 FROM store_files WHERE store_id = ? AND id = ?", (sid, fid)).fetchall():
                    con.execute("ROLLBACK")
                    raise BadRequest(f"file {fid} is already in vector store {sid}", param="file_id")

            await trio.to_thread.run_sync(begin)
            committed = False
            try:
                usage = 0
                for start in range(0, len(chunks), EMBED_BATCH):
                    batch = chunks[start:start + EMBED_BATCH]
                    embedded = await self._embed(batch)
                    rows = [(t, len(toks), v.tobytes()) for t, (toks, v) in zip(batch, embedded)]
                    usage += await trio.to_thread.run_sync(db.insert_chunks, con, sid, fid, start, rows)

                def finish() -> None:
                    db.finish_file(con, sid, fid, filename, source_uri, nbytes, attributes, len(chunks), usage,
                                   (limit, over))
                    con.execute("COMMIT")

                await trio.to_thread.run_sync(finish)
                committed = True
            finally:
                if not committed:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(con.execute, "ROLLBACK")
        return await self.read(lambda con: db.get_file(con, sid, fid))

    # -- search -------------------------------------------------------------------------------

    async def search(self, store_ref: str, query: str, k: int, filters: Any = None, rerank: bool = False,
                     score_threshold: float | None = None) -> dict[str, Any]:
        if not query.strip():
            raise BadRequest("query must not be empty", param="query")
        where = to_sql(filters) if filters is not None else None
        if rerank and self.reranker is None:
            from ..errors import NotEnabled

            raise NotEnabled("reranking search results needs a reranker", feature="reranker")
        store = await self.read(lambda con: db.find_store(con, store_ref))
        self.check_model(store)
        t0 = time.perf_counter()
        [(_toks, q)] = await self._embed([query])
        pool = k * RERANK_POOL if rerank else k

        results: list[dict[str, Any]] = await self.read(
            lambda con: hydrate(con, store["id"], nearest(con, self._coarse, store, q, pool, where)))
        if rerank and results:
            results = await self._rerank(query, results)
        results = results[:k]
        if score_threshold is not None:
            results = [r for r in results if r["score"] >= score_threshold]
        return {"object": "vector_store.search_results.page", "search_query": [query], "data": results,
                "has_more": False, "next_page": None, "vector_store_id": store["id"],
                "timings": {"search_ms": round((time.perf_counter() - t0) * 1000, 3)}}

    async def _rerank(self, query: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from ..llm.ranking import rank_pair

        engine = self.reranker
        assert engine is not None
        limit = min(engine.n_ctx_slot, engine.n_batch)
        pairs = []
        for r in results:
            toks = rank_pair(engine, query, r["content"][0]["text"])
            pairs.append(toks if len(toks) <= limit else toks[: limit - 1] + toks[-1:])
        scores = await engine.score(pairs)
        for r, s in zip(results, scores):
            r["vector_score"] = r["score"]
            r["score"] = round(1.0 / (1.0 + math.exp(-s)), 6)  # the cross-encoder's logit as a 0..1 score
        return sorted(results, key=lambda r: r["score"], reverse=True)

