"""`chimera rag list|ingest|search`: the server's vector stores from the command line, on the same
database and with the same ingestion and search code (the embedder runs in this process)."""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from ..errors import ChimeraError, NotFound


def add_parser(sub: Any) -> None:
    rag = sub.add_parser("rag", help="vector stores: list, ingest files, search")
    rag.add_argument("action", choices=["list", "ingest", "search"])
    rag.add_argument("store", nargs="?", help="store id or name (list: show that store's files)")
    rag.add_argument("args", nargs="*", help="ingest: files; search: the query")
    rag.add_argument("--rag-db", default=None, metavar="PATH", help="database (default: rag.db beside the chat database)")
    rag.add_argument("--rag-model", default=None, metavar="PATH", help="embedding GGUF (default: the prepared MiniLM)")
    rag.add_argument("--attributes", default=None, metavar="JSON", help="ingest: attributes for every file")
    rag.add_argument("-k", "--max-num-results", type=int, default=5)
    rag.add_argument("--filters", default=None, metavar="JSON", help="search: OpenAI attribute filters")
    rag.add_argument("--json", action="store_true", help="print JSON")


def _settings(ns: argparse.Namespace) -> Any:
    from ..config import resolve

    cli = {k: v for k, v in (("rag_db", ns.rag_db), ("rag_model", ns.rag_model)) if v is not None}
    return resolve(cli)


async def _with_service(ns: argparse.Namespace, work: Callable[[Any], Awaitable[Any]]) -> Any:
    from ..llm.engine import Engine
    from ..metrics import Metrics
    from ..models import prepare
    from .service import RagService, embedder_settings

    s = _settings(ns)
    model = s.rag_model or prepare("embed")
    engine = await Engine.load(embedder_settings(s), model, Metrics().for_model(model.name.removesuffix(".gguf")))
    svc = RagService(s.rag_db_path(), engine, model.name.removesuffix(".gguf"), s.rag_chunk_tokens, s.rag_chunk_overlap)
    await svc.open()
    box: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(engine.run)
        try:
            box["out"] = await work(svc)
        except (ChimeraError, OSError, ValueError) as e:
            box["error"] = e
        finally:
            nursery.cancel_scope.cancel()
    if "error" in box:
        raise box["error"]
    return box["out"]


def _list(ns: argparse.Namespace) -> Any:
    from . import db

    path = _settings(ns).rag_db_path()
    if not path.exists():
        return {"object": "list", "data": []}
    con = db.connect(path)
    try:
        db.migrate(con)
        if ns.store:
            sid = db.find_store(con, ns.store)["id"]
            return db.list_files(con, sid, 1000, "asc", None)
        return db.list_stores(con, 1000, "asc", None, None)
    finally:
        con.close()


async def _ingest(ns: argparse.Namespace, svc: Any) -> list[dict[str, Any]]:
    from . import db
    from .extract import extract

    attributes = json.loads(ns.attributes) if ns.attributes else {}
    try:
        await svc.read(lambda con: db.find_store(con, ns.store))
    except NotFound:
        await svc.create_store(ns.store, {}, None)
    out = []
    for name in ns.args:
        path = Path(name)
        data = path.read_bytes()
        text = await trio.to_thread.run_sync(extract, data, path.name, mimetypes.guess_type(path.name)[0])
        out.append(await svc.ingest(ns.store, text, filename=path.name, source_uri=path.resolve().as_uri(),
                                    attributes=attributes, nbytes=len(data)))
    return out


def rag_main(ns: argparse.Namespace) -> int:
    try:
        if ns.action == "list":
            out = _list(ns)
            if ns.json:
                print(json.dumps(out, indent=2))
            for row in out["data"]:
                if ns.store:
                    print(f"{row['id']}  {row['chunk_count']:6d} chunks  {row['filename'] or row['source_uri']}")
                else:
                    print(f"{row['id']}  {row['name']}  {row['file_counts']['total']} files  {row['chunk_count']} chunks  "
                          f"{row['embedding_model']}")
            return 0
        if not ns.store or not ns.args:
            print(f"chimera: rag {ns.action} needs a store and {'files' if ns.action == 'ingest' else 'a query'}", file=sys.stderr)
            return 2
        if ns.action == "ingest":
            files = trio.run(_with_service, ns, lambda svc: _ingest(ns, svc))
            for f in files:
                print(json.dumps(f) if ns.json else f"{f['id']}  {f['chunk_count']} chunks  {f['filename']}")
            return 0
        filters = json.loads(ns.filters) if ns.filters else None
        page = trio.run(_with_service, ns, lambda svc: svc.search(ns.store, " ".join(ns.args), ns.max_num_results, filters))
        if ns.json:
            print(json.dumps(page, indent=2))
            return 0
        for hit in page["data"]:
            text = " ".join(hit["content"][0]["text"].split())
            print(f"{hit['score']:.3f}  {hit['filename']}  {text[:160]}")
        return 0
    except ChimeraError as e:
        print(f"chimera: {e.message}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"chimera: {e}", file=sys.stderr)
        return 1
