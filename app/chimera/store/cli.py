"""`chimera db status` and `chimera chats ...`: the same database file the server writes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import resolve
from ..errors import ChimeraError
from .chats import connect, get_chat, list_chats, migrate, status, to_markdown


def run_db_command(ns: argparse.Namespace) -> int:
    path = Path(ns.chat_db) if ns.chat_db else resolve({}).chat_db_path()
    if not path.exists():
        print(f"chimera: no chat database at {path}", file=sys.stderr)
        return 1
    migrate(path)
    con = connect(path)
    try:
        if ns.command == "db":
            print(json.dumps(status(con, path), indent=2))
            return 0
        if ns.action == "list":
            print(json.dumps(list_chats(con, ns.limit, None, ns.query), indent=2))
            return 0
        if not ns.chat_id:
            print(f"chimera: 'chats {ns.action}' needs a chat id", file=sys.stderr)
            return 2
        if ns.action == "delete":
            with con:
                if not con.execute("SELECT 1 FROM chats WHERE id = ?", (ns.chat_id,)).fetchall():
                    print(f"chimera: no chat {ns.chat_id}", file=sys.stderr)
                    return 1
                con.execute("DELETE FROM messages WHERE chat_id = ?", (ns.chat_id,))
                con.execute("DELETE FROM chats WHERE id = ?", (ns.chat_id,))
            return 0
        chat = get_chat(con, ns.chat_id)
        if ns.action == "export" and ns.format == "markdown":
            print(to_markdown(chat))
        else:
            print(json.dumps(chat, indent=2, ensure_ascii=False))
        return 0
    except ChimeraError as e:
        print(f"chimera: {e.message}", file=sys.stderr)
        return 1
    finally:
        con.close()
