"""SQLite connections and forward-only schema migrations, shared by every chimera database."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import apsw


def connect(path: Path, *, vectors: bool = False) -> apsw.Connection:
    """A connection that waits on locks instead of failing, with foreign keys on; `vectors`
    loads sqlite-vec."""
    con = apsw.Connection(str(path))
    con.set_busy_timeout(10_000)
    if vectors:
        import sqlite_vec

        con.enable_load_extension(True)
        con.load_extension(sqlite_vec.loadable_path())
        con.enable_load_extension(False)
    con.execute("PRAGMA foreign_keys = ON")
    return con


def apply_migrations(con: apsw.Connection, migrations: list[str], target: int) -> int:
    """WAL mode, then migrations[i] takes the schema from version i to i+1 (PRAGMA user_version),
    one transaction per step, up to `target`. Returns the version reached."""
    con.execute("PRAGMA journal_mode = WAL")
    version = int(cast(int, con.execute("PRAGMA user_version").fetchall()[0][0]))
    while version < target:
        with con:
            con.execute(migrations[version])
            con.execute(f"PRAGMA user_version = {version + 1}")
        version += 1
    return int(version)
