"""Nearest chunks of a query vector in one store.

- Up to EXACT_LIMIT chunks: sqlite-vec's cosine KNN over the full-precision vectors (exact).
- Larger stores: a first pass by Hamming distance over the binary-quantized vectors that
  sqlite-vec keeps in the store's `coarse` column (held in memory as packed 64-bit words and
  scanned with NumPy, reloaded when the store changes), then the candidates are rescored with
  their full-precision vectors. sqlite-vec's own KNN gets slower with k (its top-k merge is per
  chunk), so the wide candidate list is cheaper to take this way.
- With attribute filters: exact cosine distance over the chunks of the matching files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import apsw
import numpy as np

from .db import vec_table

EXACT_LIMIT = 20_000
CANDIDATES = 400


@dataclass
class Coarse:
    version: int
    ids: np.ndarray  # int64 rowids
    bits: np.ndarray  # (n, dim/64) uint64


class CoarseCache:
    """Per-store packed bits, keyed by the store's version (bumped by every ingest and delete)."""

    def __init__(self) -> None:
        self._by_store: dict[str, Coarse] = {}

    def get(self, con: apsw.Connection, store_id: str, dim: int) -> Coarse:
        version = int(cast(int, con.execute("SELECT version FROM vector_stores WHERE id = ?", (store_id,)).fetchall()[0][0]))
        hit = self._by_store.get(store_id)
        if hit is not None and hit.version == version:
            return hit
        rows: list[Any] = con.execute(f"SELECT rowid, coarse FROM {vec_table(store_id)}").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        width = (dim + 63) // 64 * 8
        raw = b"".join(bytes(r[1]).ljust(width, b"\0") for r in rows)
        bits = np.frombuffer(raw, dtype=np.uint64).reshape(len(rows), width // 8) if rows else np.zeros((0, width // 8), np.uint64)
        entry = Coarse(version, ids, bits)
        self._by_store[store_id] = entry
        return entry

    def drop(self, store_id: str) -> None:
        self._by_store.pop(store_id, None)


def _quantize(q: np.ndarray) -> np.ndarray:
    packed = np.packbits(q > 0, bitorder="little")  # sqlite-vec's bit order: element i is bit i%8 of byte i/8
    width = (q.size + 63) // 64 * 8
    return np.frombuffer(packed.tobytes().ljust(width, b"\0"), dtype=np.uint64)


def _rescore(con: apsw.Connection, ids: list[int], q: np.ndarray, k: int) -> list[tuple[int, float]]:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows: list[Any] = con.execute(f"SELECT id, embedding FROM chunks WHERE id IN ({marks})", ids).fetchall()
    mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), q.size)
    sims = mat @ q
    order = np.argsort(-sims)[:k]
    return [(int(rows[i][0]), float(sims[i])) for i in order]


def nearest(con: apsw.Connection, cache: CoarseCache, store: dict[str, Any], q: np.ndarray, k: int,
            where: tuple[str, list[Any]] | None) -> list[tuple[int, float]]:
    """(chunk id, cosine similarity), best first."""
    sid = store["id"]
    if where is not None:
        sql, args = where
        rows: list[Any] = con.execute(
            "SELECT c.id, 1 - vec_distance_cosine(c.embedding, ?) AS s FROM chunks c JOIN store_files f "
            f"ON f.store_id = c.store_id AND f.id = c.file_id WHERE c.store_id = ? AND {sql} ORDER BY s DESC LIMIT ?",
            (q.tobytes(), sid, *args, k)).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]
    if store["chunk_count"] <= EXACT_LIMIT:
        exact: list[Any] = con.execute(f"SELECT rowid, distance FROM {vec_table(sid)} WHERE embedding MATCH ? AND k = ?",
                                       (q.tobytes(), k)).fetchall()
        return [(int(r[0]), 1.0 - float(r[1])) for r in exact]
    coarse = cache.get(con, sid, q.size)
    n = len(coarse.ids)
    want = min(n, max(CANDIDATES, 40 * k))
    dist = np.bitwise_count(coarse.bits ^ _quantize(q)).sum(axis=1, dtype=np.uint32)
    picked = np.argpartition(dist, want - 1)[:want] if want < n else np.arange(n)
    return _rescore(con, [int(i) for i in coarse.ids[picked]], q, k)


def hydrate(con: apsw.Connection, store_id: str, hits: list[tuple[int, float]]) -> list[dict[str, Any]]:
    """Search results in OpenAI's shape, in the order of `hits`."""
    if not hits:
        return []
    marks = ",".join("?" * len(hits))
    rows: list[Any] = con.execute(
        "SELECT c.id, c.file_id, c.seq, c.text, f.filename, f.source_uri, f.attributes FROM chunks c JOIN store_files f "
        f"ON f.store_id = c.store_id AND f.id = c.file_id WHERE c.id IN ({marks})", [h[0] for h in hits]).fetchall()
    by_id = {r[0]: r for r in rows}
    out = []
    for cid, score in hits:
        r = by_id.get(cid)
        if r is None:
            continue
        out.append({"file_id": r[1], "filename": r[4] or r[5] or r[1], "score": round(score, 6),
                    "attributes": json.loads(r[6]), "content": [{"type": "text", "text": r[3]}],
                    "source_uri": r[5], "chunk_index": r[2]})
    return out
