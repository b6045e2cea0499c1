"""Chat history in SQLite (apsw, WAL): schema migrations, saving exchanges, reading them back.

One writer connection serialized by a trio lock; each read opens its own connection (WAL lets
readers run beside the writer). Blocking calls run in worker threads. `busy_timeout` is set on
every connection, so concurrent access waits instead of failing with "database is locked".
A commit returns before the HTTP response is released, and WAL commits survive a killed process.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import apsw
import trio

from ..errors import BadRequest, NotFound, UnknownChat
from .sqlite import apply_migrations, connect

CHAT_ID = re.compile(r"^chat_[0-9a-f]{32}$")

# Forward-only migrations; index i takes the schema from version i to i+1 (PRAGMA user_version).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE chats (id TEXT PRIMARY KEY, created_at REAL NOT NULL, updated_at REAL NOT NULL,
                        model TEXT, title TEXT);
    CREATE TABLE messages (id INTEGER PRIMARY KEY, chat_id TEXT NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
                           seq INTEGER NOT NULL, role TEXT NOT NULL, content TEXT, created_at REAL NOT NULL);
    CREATE INDEX messages_chat ON messages(chat_id, seq);
    CREATE INDEX chats_updated ON chats(updated_at, id);
    """,
    """
    ALTER TABLE messages ADD COLUMN reasoning_content TEXT;
    ALTER TABLE messages ADD COLUMN tool_calls TEXT;
    ALTER TABLE messages ADD COLUMN tool_call_id TEXT;
    ALTER TABLE messages ADD COLUMN finish_reason TEXT;
    ALTER TABLE messages ADD COLUMN usage TEXT;
    ALTER TABLE messages ADD COLUMN timings TEXT;
    ALTER TABLE messages ADD COLUMN incomplete INTEGER NOT NULL DEFAULT 0;
    CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id');
    INSERT INTO messages_fts(rowid, content) SELECT id, coalesce(content, '') FROM messages;
    CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
      INSERT INTO messages_fts(rowid, content) VALUES (new.id, coalesce(new.content, ''));
    END;
    CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
      INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, coalesce(old.content, ''));
    END;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(path: Path, target: int = SCHEMA_VERSION) -> int:
    """Bring the database at `path` to `target`, one transaction per step. Returns the version."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = connect(path)
    try:
        return apply_migrations(con, MIGRATIONS, target)
    finally:
        con.close()


def new_chat_id() -> str:
    return "chat_" + uuid.uuid4().hex


def _common_prefix(stored: list[tuple[str, str]], incoming: list[dict[str, Any]]) -> int:
    n = 0
    for (role, content), m in zip(stored, incoming):
        if role != m.get("role") or content != _text(m.get("content")):
            break
        n += 1
    return n


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return json.dumps(content, ensure_ascii=False)


class ChatStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._write_lock = trio.Lock()
        self._writer: apsw.Connection | None = None

    async def open(self) -> None:
        await trio.to_thread.run_sync(migrate, self.path)
        self._writer = await trio.to_thread.run_sync(connect, self.path)

    # -- writing ------------------------------------------------------------------------------
    async def check_chat(self, chat_id: str) -> None:
        if not CHAT_ID.match(chat_id):
            raise UnknownChat(chat_id, malformed=True)
        if not await self._read(lambda con: con.execute("SELECT 1 FROM chats WHERE id = ?", (chat_id,)).fetchall()):
            raise UnknownChat(chat_id, malformed=False)

    async def save_exchange(self, chat_id: str, model: str, request_messages: list[dict[str, Any]],
                            reply: dict[str, Any]) -> None:
        """Append the messages the chat lacks and the assistant reply, in one transaction."""
        def work() -> None:
            con = self._writer
            assert con is not None
            now = time.time()
            with con:
                row = con.execute("SELECT 1 FROM chats WHERE id = ?", (chat_id,)).fetchall()
                if not row:
                    title = next((_text(m.get("content"))[:80] for m in request_messages if m.get("role") == "user"), "")
                    con.execute("INSERT INTO chats(id, created_at, updated_at, model, title) VALUES (?,?,?,?,?)",
                                (chat_id, now, now, model, title))
                stored: list[Any] = con.execute("SELECT role, content FROM messages WHERE chat_id = ? ORDER BY seq",
                                                (chat_id,)).fetchall()
                keep = _common_prefix([(r, c or "") for r, c in stored], request_messages)
                seq = len(stored)
                for m in request_messages[keep:]:
                    con.execute(
                        "INSERT INTO messages(chat_id, seq, role, content, tool_calls, tool_call_id, created_at) VALUES (?,?,?,?,?,?,?)",
                        (chat_id, seq, m.get("role"), _text(m.get("content")),
                         json.dumps(m["tool_calls"]) if m.get("tool_calls") else None, m.get("tool_call_id"), now))
                    seq += 1
                con.execute(
                    "INSERT INTO messages(chat_id, seq, role, content, reasoning_content, tool_calls, finish_reason, usage,"
                    " timings, incomplete, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (chat_id, seq, "assistant", reply.get("content") or "", reply.get("reasoning_content"),
                     json.dumps(reply["tool_calls"]) if reply.get("tool_calls") else None, reply.get("finish_reason"),
                     json.dumps(reply.get("usage")), json.dumps(reply.get("timings")), int(bool(reply.get("incomplete"))), now))
                con.execute("UPDATE chats SET updated_at = ?, model = ? WHERE id = ?", (now, model, chat_id))

        async with self._write_lock:
            await trio.to_thread.run_sync(work)

    # -- reading ------------------------------------------------------------------------------
    async def _read(self, fn: Any) -> Any:
        def work() -> Any:
            con = connect(self.path)
            try:
                return fn(con)
            finally:
                con.close()

        return await trio.to_thread.run_sync(work)

    async def list_chats(self, limit: int, cursor: str | None, q: str | None) -> dict[str, Any]:
        return await self._read(lambda con: list_chats(con, limit, cursor, q))

    async def get_chat(self, chat_id: str) -> dict[str, Any]:
        return await self._read(lambda con: get_chat(con, chat_id))

    async def delete_chat(self, chat_id: str) -> None:
        def work() -> bool:
            con = self._writer
            assert con is not None
            with con:
                found = bool(con.execute("SELECT 1 FROM chats WHERE id = ?", (chat_id,)).fetchall())
                if found:
                    con.execute("DELETE FROM messages WHERE chat_id = ?", (chat_id,))
                    con.execute("DELETE FROM chats WHERE id = ?", (chat_id,))
            return found

        async with self._write_lock:
            if not await trio.to_thread.run_sync(work):
                raise NotFound(f"no chat {chat_id}")

    async def update_chat(self, chat_id: str, title: str | None, keep: int | None) -> dict[str, Any]:
        """Rename a chat, and/or keep only its first `keep` messages (a UI that edits a message or
        regenerates a reply drops what came after, then sends the new turn)."""
        def work() -> bool:
            con = self._writer
            assert con is not None
            with con:
                if not con.execute("SELECT 1 FROM chats WHERE id = ?", (chat_id,)).fetchall():
                    return False
                if title is not None:
                    con.execute("UPDATE chats SET title = ? WHERE id = ?", (title, chat_id))
                if keep is not None:
                    con.execute("DELETE FROM messages WHERE chat_id = ? AND seq >= ?", (chat_id, keep))
                con.execute("UPDATE chats SET updated_at = ? WHERE id = ?", (time.time(), chat_id))
            return True

        async with self._write_lock:
            if not await trio.to_thread.run_sync(work):
                raise NotFound(f"no chat {chat_id}")
        return await self.get_chat(chat_id)

    async def status(self) -> dict[str, Any]:
        return await self._read(lambda con: status(con, self.path))


def list_chats(con: apsw.Connection, limit: int, cursor: str | None, q: str | None) -> dict[str, Any]:
    params: list[Any] = []
    where = []
    if cursor:
        try:
            ts, cid = cursor.split("|", 1)
            where.append("(c.updated_at < ? OR (c.updated_at = ? AND c.id < ?))")
            params += [float(ts), float(ts), cid]
        except ValueError:
            raise BadRequest("'cursor' is not a next_cursor this server gave out", param="cursor") from None
    if q:
        where.append("c.id IN (SELECT m.chat_id FROM messages_fts f JOIN messages m ON m.id = f.rowid WHERE messages_fts MATCH ?)")
        params.append(" ".join('"' + w.replace('"', '""') + '"' for w in q.split()))
    sql = ("SELECT c.id, c.created_at, c.updated_at, c.model, c.title, (SELECT count(*) FROM messages m WHERE m.chat_id = c.id)"
           " FROM chats c" + (" WHERE " + " AND ".join(where) if where else "") +
           " ORDER BY c.updated_at DESC, c.id DESC LIMIT ?")
    rows = con.execute(sql, (*params, limit + 1)).fetchall()
    data = [{"id": r[0], "object": "chat", "created_at": r[1], "updated_at": r[2], "model": r[3], "title": r[4],
             "message_count": r[5]} for r in rows[:limit]]
    more = len(rows) > limit
    return {"object": "list", "data": data, "has_more": more,
            "next_cursor": f"{data[-1]['updated_at']}|{data[-1]['id']}" if more and data else None}


def get_chat(con: apsw.Connection, chat_id: str) -> dict[str, Any]:
    rows = con.execute("SELECT id, created_at, updated_at, model, title FROM chats WHERE id = ?", (chat_id,)).fetchall()
    if not rows:
        raise NotFound(f"no chat {chat_id}")
    r = rows[0]
    msgs = []
    for m in con.execute("SELECT role, content, reasoning_content, tool_calls, tool_call_id, finish_reason, usage, timings,"
                         " incomplete, created_at FROM messages WHERE chat_id = ? ORDER BY seq", (chat_id,)):
        item: dict[str, Any] = {"role": m[0], "content": m[1], "created_at": m[9]}
        for key, value in (("reasoning_content", m[2]), ("tool_call_id", m[4]), ("finish_reason", m[5])):
            if value is not None:
                item[key] = value
        for key, value in (("tool_calls", m[3]), ("usage", m[6]), ("timings", m[7])):
            if value is not None and value != "null":
                item[key] = json.loads(value)
        if m[8]:
            item["incomplete"] = True
        msgs.append(item)
    return {"id": r[0], "object": "chat", "created_at": r[1], "updated_at": r[2], "model": r[3], "title": r[4],
            "messages": msgs}


def to_markdown(chat: dict[str, Any]) -> str:
    lines = [f"# {chat.get('title') or chat['id']}", "", f"- id: `{chat['id']}`", f"- model: {chat.get('model')}", ""]
    for m in chat["messages"]:
        lines.append(f"## {m['role']}" + (" (incomplete)" if m.get("incomplete") else ""))
        lines.append("")
        if m.get("reasoning_content"):
            lines += ["> " + ln for ln in m["reasoning_content"].splitlines()] + [""]
        lines.append(m.get("content") or "")
        for call in m.get("tool_calls") or []:
            fn = call.get("function", {})
            lines += ["", f"`{fn.get('name')}({fn.get('arguments')})`"]
        lines.append("")
    return "\n".join(lines)


_TABLE = re.compile(r"^[A-Za-z0-9_]+$")


def status(con: apsw.Connection, path: Path) -> dict[str, Any]:
    tables = {}
    names: list[Any] = con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
    for (name,) in names:
        if _TABLE.match(name) and not name.startswith(("sqlite_", "messages_fts_")):
            tables[name] = con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0]
    size = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    return {"path": str(path), "size_bytes": size, "schema_version": con.execute("PRAGMA user_version").fetchall()[0][0],
            "tables": tables}
