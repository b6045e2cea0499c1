"""The vector-store database (apsw + sqlite-vec, WAL): schema, stores, files, chunk writes.

Per store, chunk text and full-precision vectors live in `chunks`, and a sqlite-vec `vec0` table
`vec_<store>` holds the same vectors for cosine KNN plus a binary-quantized copy (`coarse`) for
the first pass over large stores. Uploaded files (`/v1/files`) are kept in `uploads`.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import apsw

from ..errors import BadRequest, Conflict, NotFound
from ..store.sqlite import apply_migrations
from ..store.sqlite import connect as sqlite_connect

MIGRATIONS: list[str] = [
    """
    CREATE TABLE vector_stores (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL,
                                last_active_at INTEGER NOT NULL, metadata TEXT NOT NULL DEFAULT '{}',
                                embed_model TEXT NOT NULL, dim INTEGER NOT NULL, chunk_count INTEGER NOT NULL DEFAULT 0,
                                usage_bytes INTEGER NOT NULL DEFAULT 0, version INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE store_files (store_id TEXT NOT NULL REFERENCES vector_stores(id) ON DELETE CASCADE, id TEXT NOT NULL,
                              filename TEXT, source_uri TEXT, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL,
                              attributes TEXT NOT NULL DEFAULT '{}', chunks INTEGER NOT NULL, usage_bytes INTEGER NOT NULL,
                              PRIMARY KEY (store_id, id));
    CREATE TABLE chunks (id INTEGER PRIMARY KEY, store_id TEXT NOT NULL, file_id TEXT NOT NULL, seq INTEGER NOT NULL,
                         text TEXT NOT NULL, tokens INTEGER NOT NULL, embedding BLOB NOT NULL);
    CREATE INDEX chunks_file ON chunks(store_id, file_id);
    CREATE TABLE uploads (id TEXT PRIMARY KEY, filename TEXT NOT NULL, purpose TEXT NOT NULL, bytes INTEGER NOT NULL,
                          created_at INTEGER NOT NULL, content_type TEXT, data BLOB NOT NULL);
    """,
    # the chunking each file was split with (reported as its static chunking_strategy)
    """
    ALTER TABLE store_files ADD COLUMN chunk_tokens INTEGER;
    ALTER TABLE store_files ADD COLUMN chunk_overlap INTEGER;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path) -> apsw.Connection:
    return sqlite_connect(path, vectors=True)


def migrate(con: apsw.Connection) -> int:
    return apply_migrations(con, MIGRATIONS, SCHEMA_VERSION)


def vec_table(store_id: str) -> str:
    return "vec_" + store_id.removeprefix("vs_")


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _store_row(r: tuple[Any, ...]) -> dict[str, Any]:
    sid, name, created, active, meta, model, dim, chunks, usage, files_done = r
    return {"id": sid, "object": "vector_store", "name": name, "created_at": created, "last_active_at": active,
            "metadata": json.loads(meta), "status": "completed", "usage_bytes": usage, "expires_after": None,
            "expires_at": None,
            "file_counts": {"in_progress": 0, "completed": files_done, "failed": 0, "cancelled": 0, "total": files_done},
            "embedding_model": model, "embedding_dimension": dim, "chunk_count": chunks}


STORE_COLS = ("s.id, s.name, s.created_at, s.last_active_at, s.metadata, s.embed_model, s.dim, s.chunk_count, "
              "s.usage_bytes, (SELECT count(*) FROM store_files f WHERE f.store_id = s.id)")


def find_store(con: apsw.Connection, ref: str) -> dict[str, Any]:
    """A store by id, or by name (the seed's simpler form)."""
    rows = con.execute(f"SELECT {STORE_COLS} FROM vector_stores s WHERE s.id = ? OR s.name = ? "
                       "ORDER BY s.id = ? DESC LIMIT 1", (ref, ref, ref)).fetchall()
    if not rows:
        raise NotFound(f"no vector store {ref!r}", param="vector_store_id")
    return _store_row(rows[0])


def create_store(con: apsw.Connection, name: str | None, metadata: dict[str, str], model: str, dim: int) -> dict[str, Any]:
    sid = new_id("vs_")
    now = int(time.time())
    name = name or sid
    with con:
        if con.execute("SELECT 1 FROM vector_stores WHERE name = ?", (name,)).fetchall():
            raise Conflict(f"a vector store named {name!r} exists", param="name")
        con.execute("INSERT INTO vector_stores(id, name, created_at, last_active_at, metadata, embed_model, dim) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", (sid, name, now, now, json.dumps(metadata), model, dim))
        con.execute(f"CREATE VIRTUAL TABLE {vec_table(sid)} USING vec0(embedding float[{dim}] distance_metric=cosine, "
                    f"coarse bit[{dim}])")
    return find_store(con, sid)


def list_stores(con: apsw.Connection, limit: int, order: str, after: str | None, before: str | None) -> dict[str, Any]:
    desc = order == "desc"
    where, args = [], []
    for ref, newer in ((after, not desc), (before, desc)):
        if ref:
            anchor = con.execute("SELECT created_at, id FROM vector_stores WHERE id = ?", (ref,)).fetchall()
            if not anchor:
                raise BadRequest(f"no vector store {ref!r} to page from", param="after" if ref == after else "before")
            where.append("(s.created_at, s.id) " + (">" if newer else "<") + " (?, ?)")
            args += list(anchor[0])
    sql = (f"SELECT {STORE_COLS} FROM vector_stores s {'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY s.created_at {'DESC' if desc else 'ASC'}, s.id {'DESC' if desc else 'ASC'} LIMIT ?")
    rows = [_store_row(r) for r in con.execute(sql, (*args, limit + 1))]
    page = rows[:limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(rows) > limit}


def delete_store(con: apsw.Connection, ref: str) -> str:
    store = find_store(con, ref)
    with con:
        con.execute("DELETE FROM chunks WHERE store_id = ?", (store["id"],))
        con.execute("DELETE FROM vector_stores WHERE id = ?", (store["id"],))
        con.execute(f"DROP TABLE IF EXISTS {vec_table(store['id'])}")
    return str(store["id"])


def update_store(con: apsw.Connection, ref: str, name: str | None, metadata: dict[str, str] | None) -> dict[str, Any]:
    store = find_store(con, ref)
    with con:
        if name is not None:
            if con.execute("SELECT 1 FROM vector_stores WHERE name = ? AND id != ?", (name, store["id"])).fetchall():
                raise Conflict(f"a vector store named {name!r} exists", param="name")
            con.execute("UPDATE vector_stores SET name = ? WHERE id = ?", (name, store["id"]))
        if metadata is not None:
            con.execute("UPDATE vector_stores SET metadata = ? WHERE id = ?", (json.dumps(metadata), store["id"]))
    return find_store(con, store["id"])


def file_row(store_id: str, r: tuple[Any, ...]) -> dict[str, Any]:
    fid, filename, source_uri, nbytes, created, attributes, chunks, usage, tokens, overlap = r
    static = {"max_chunk_size_tokens": tokens, "chunk_overlap_tokens": overlap} if tokens is not None else None
    return {"id": fid, "object": "vector_store.file", "vector_store_id": store_id, "created_at": created,
            "status": "completed", "last_error": None, "usage_bytes": usage, "attributes": json.loads(attributes),
            "chunking_strategy": {"type": "static", "static": static} if static else {"type": "other"},
            "filename": filename, "source_uri": source_uri, "bytes": nbytes, "chunk_count": chunks}


FILE_COLS = "id, filename, source_uri, bytes, created_at, attributes, chunks, usage_bytes, chunk_tokens, chunk_overlap"


def get_file(con: apsw.Connection, store_id: str, file_id: str) -> dict[str, Any]:
    rows = con.execute(f"SELECT {FILE_COLS} FROM store_files WHERE store_id = ? AND id = ?", (store_id, file_id)).fetchall()
    if not rows:
        raise NotFound(f"no file {file_id!r} in vector store {store_id!r}", param="file_id")
    return file_row(store_id, rows[0])


def list_files(con: apsw.Connection, store_id: str, limit: int, order: str, after: str | None) -> dict[str, Any]:
    desc = order == "desc"
    where, args = "", []
    if after:
        anchor = con.execute("SELECT created_at, id FROM store_files WHERE store_id = ? AND id = ?", (store_id, after)).fetchall()
        if not anchor:
            raise BadRequest(f"no file {after!r} to page from", param="after")
        where = " AND (created_at, id) " + ("<" if desc else ">") + " (?, ?)"
        args = list(anchor[0])
    sql = (f"SELECT {FILE_COLS} FROM store_files WHERE store_id = ?{where} "
           f"ORDER BY created_at {'DESC' if desc else 'ASC'}, id {'DESC' if desc else 'ASC'} LIMIT ?")
    rows = [file_row(store_id, r) for r in con.execute(sql, (store_id, *args, limit + 1))]
    page = rows[:limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(rows) > limit}


def delete_file(con: apsw.Connection, store_id: str, file_id: str) -> None:
    f = get_file(con, store_id, file_id)
    table = vec_table(store_id)
    with con:
        con.execute(f"DELETE FROM {table} WHERE rowid IN (SELECT id FROM chunks WHERE store_id = ? AND file_id = ?)",
                    (store_id, file_id))
        con.execute("DELETE FROM chunks WHERE store_id = ? AND file_id = ?", (store_id, file_id))
        con.execute("DELETE FROM store_files WHERE store_id = ? AND id = ?", (store_id, file_id))
        con.execute("UPDATE vector_stores SET chunk_count = chunk_count - ?, usage_bytes = usage_bytes - ?, "
                    "version = version + 1, last_active_at = ? WHERE id = ?",
                    (f["chunk_count"], f["usage_bytes"], int(time.time()), store_id))


def insert_chunks(con: apsw.Connection, store_id: str, file_id: str, first_seq: int,
                  chunks: list[tuple[str, int, bytes]]) -> int:
    """Write a batch of (text, tokens, float32 vector bytes); the caller holds the transaction."""
    table = vec_table(store_id)
    usage = 0
    for i, (text, tokens, vec) in enumerate(chunks):
        con.execute("INSERT INTO chunks(store_id, file_id, seq, text, tokens, embedding) VALUES (?, ?, ?, ?, ?, ?)",
                    (store_id, file_id, first_seq + i, text, tokens, vec))
        rowid = con.last_insert_rowid()
        con.execute(f"INSERT INTO {table}(rowid, embedding, coarse) VALUES (?, ?, vec_quantize_binary(?))", (rowid, vec, vec))
        usage += len(text.encode()) + len(vec) * 2
    return usage


def finish_file(con: apsw.Connection, store_id: str, file_id: str, filename: str | None, source_uri: str | None,
                nbytes: int, attributes: dict[str, Any], chunks: int, usage: int, chunking: tuple[int, int]) -> None:
    con.execute("INSERT INTO store_files(store_id, id, filename, source_uri, bytes, created_at, attributes, chunks, "
                "usage_bytes, chunk_tokens, chunk_overlap) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (store_id, file_id, filename, source_uri, nbytes, int(time.time()), json.dumps(attributes), chunks, usage,
                 *chunking))
    con.execute("UPDATE vector_stores SET chunk_count = chunk_count + ?, usage_bytes = usage_bytes + ?, "
                "version = version + 1, last_active_at = ? WHERE id = ?", (chunks, usage, int(time.time()), store_id))


# -- uploads (/v1/files) ---------------------------------------------------------------------

def upload_row(r: tuple[Any, ...]) -> dict[str, Any]:
    fid, filename, purpose, nbytes, created = r
    return {"id": fid, "object": "file", "bytes": nbytes, "created_at": created, "filename": filename,
            "purpose": purpose, "status": "processed", "expires_at": None, "status_details": None}


def create_upload(con: apsw.Connection, filename: str, purpose: str, data: bytes, content_type: str | None) -> dict[str, Any]:
    fid = new_id("file-")
    with con:
        con.execute("INSERT INTO uploads(id, filename, purpose, bytes, created_at, content_type, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (fid, filename, purpose, len(data), int(time.time()), content_type, data))
    return get_upload(con, fid)


def get_upload(con: apsw.Connection, fid: str) -> dict[str, Any]:
    rows = con.execute("SELECT id, filename, purpose, bytes, created_at FROM uploads WHERE id = ?", (fid,)).fetchall()
    if not rows:
        raise NotFound(f"no file {fid!r}", param="file_id")
    return upload_row(rows[0])


def upload_content(con: apsw.Connection, fid: str) -> tuple[bytes, str, str | None]:
    rows: list[Any] = con.execute("SELECT data, filename, content_type FROM uploads WHERE id = ?", (fid,)).fetchall()
    if not rows:
        raise NotFound(f"no file {fid!r}", param="file_id")
    return bytes(rows[0][0]), rows[0][1], rows[0][2]


def list_uploads(con: apsw.Connection, purpose: str | None, limit: int) -> dict[str, Any]:
    sql = "SELECT id, filename, purpose, bytes, created_at FROM uploads"
    args: list[Any] = []
    if purpose:
        sql += " WHERE purpose = ?"
        args.append(purpose)
    rows = [upload_row(r) for r in con.execute(sql + " ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit + 1))]
    return {"object": "list", "data": rows[:limit], "has_more": len(rows) > limit,
            "first_id": rows[0]["id"] if rows else None, "last_id": rows[:limit][-1]["id"] if rows else None}


def delete_upload(con: apsw.Connection, fid: str) -> None:
    get_upload(con, fid)
    with con:
        con.execute("DELETE FROM uploads WHERE id = ?", (fid,))


def file_chunks(con: apsw.Connection, store_id: str, fid: str) -> list[str]:
    get_file(con, store_id, fid)
    return [r[0] for r in con.execute("SELECT text FROM chunks WHERE store_id = ? AND file_id = ? ORDER BY seq", (store_id, fid))]
