"""Vector-store benchmark: ingestion throughput against embedding the same chunks with a direct
llama-cpp-python call, and search latency and recall@10 at 10k and 100k chunks.

The corpus is real English prose: docstrings of the Python standard library and the installed
packages, a sentence or a short paragraph a passage, embedded with the prepared all-MiniLM-L6-v2 (384 dimensions). Vectors are
cached under ~/.cache/chimera/bench so repeated runs skip the embedding.
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import re
import statistics
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
CACHE = Path.home() / ".cache" / "chimera" / "bench"


def passages(limit: int) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    files = [p for root in roots for p in sorted(root.rglob("*.py"))]
    for path in files:
        if "tests" in path.parts or "test" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
                doc = ast.get_docstring(node) or ""
                for para in re.split(r"\n\s*\n|(?<=[.!?])\s+(?=[A-Z])", doc):
                    text = " ".join(para.split())
                    if 40 <= len(text) <= 400 and text not in seen and not text.startswith((">>>", "...")):
                        seen.add(text)
                        out.append(text)
                        if len(out) >= limit:
                            return out
    return out


def direct_embedder(model: Path, threads: int) -> Any:
    from llama_cpp import Llama

    from chimera.llm import native

    native.load()  # this wheel is built with dynamic backends: load them, as any user of it must
    return Llama(str(model), embedding=True, n_ctx=4096, n_batch=2048, n_ubatch=2048, n_threads=threads,
                 n_threads_batch=threads, verbose=False)


def embed_all(llm: Any, texts: list[str], batch: int = 1) -> np.ndarray:
    """One text a call: llama-cpp-python's batched `embed` puts every text of a call into one
    unified sequence set, and a BERT model then attends over the whole batch, so larger batches
    are slower (measured here: 146 short texts/s one at a time, 40/s sixty-four at a time)."""
    out = []
    for i in range(0, len(texts), batch):
        out += llm.embed(texts[i:i + batch], normalize=True)
    return np.asarray(out, dtype=np.float32)


def engine_embed(model: Path, threads: int, texts: list[str]) -> np.ndarray:
    """chimera's embedding engine in this process (the corpus for the search benchmark)."""
    import trio

    from chimera.config import resolve
    from chimera.llm.engine import Engine
    from chimera.metrics import Metrics
    from chimera.rag.service import embedder_settings

    async def run() -> list[list[float]]:
        engine = await Engine.load(embedder_settings(resolve({"threads": threads})), model, Metrics())
        out: list[list[float]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.run)
            for i in range(0, len(texts), 256):
                toks = [engine.model.tokenize(t, add_special=True, parse_special=False)[:500] for t in texts[i:i + 256]]
                out += await engine.embed(toks)
            nursery.cancel_scope.cancel()
        return out

    return np.asarray(trio.run(run), dtype=np.float32)


def corpus_vectors(model: Path, n: int, threads: int) -> tuple[list[str], np.ndarray]:
    texts = passages(n)
    CACHE.mkdir(parents=True, exist_ok=True)
    cache = CACHE / f"rag-{len(texts)}-{model.stem}.npy"
    if cache.exists():
        return texts, np.load(cache)
    t0 = time.perf_counter()
    vecs = engine_embed(model, threads, texts)
    print(f"embedded {len(texts)} passages in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    np.save(cache, vecs)
    return texts, vecs


def bench_ingest(model: Path, threads: int, docs: int) -> dict[str, float]:
    """Same documents through HTTP ingestion and through a direct llama-cpp-python embedding call."""
    import httpx

    from conftest import Server

    texts = passages(40_000)[-docs * 60:]
    documents = ["\n\n".join(texts[i:i + 60]) for i in range(0, len(texts), 60)]
    server = Server("--rag-model", str(model), "--rag-db", "/tmp/bench-rag-ingest.db", "-t", str(threads),
                    "-np", "1", "-c", "512")
    Path("/tmp/bench-rag-ingest.db").unlink(missing_ok=True)
    server.wait_ready()
    try:
        sid = httpx.post(server.base + "/v1/vector_stores", json={"name": f"ingest-{time.time()}"}).json()["id"]
        chunk_texts: list[str] = []
        t0 = time.perf_counter()
        n_chunks = 0
        for doc in documents:
            f = httpx.post(server.base + f"/v1/vector_stores/{sid}/files", json={"text": doc}, timeout=600).json()
            n_chunks += f["chunk_count"]
        http_s = time.perf_counter() - t0
        for f in httpx.get(server.base + f"/v1/vector_stores/{sid}/files?limit=100").json()["data"]:
            page = httpx.get(server.base + f"/v1/vector_stores/{sid}/files/{f['id']}/content").json()
            chunk_texts += [c["text"] for c in page["data"]]
    finally:
        server.stop()
    llm = direct_embedder(model, threads)
    t0 = time.perf_counter()
    embed_all(llm, chunk_texts)
    direct_s = time.perf_counter() - t0
    return {"chunks": n_chunks, "http_cps": n_chunks / http_s, "direct_cps": len(chunk_texts) / direct_s}


def bench_search(texts: list[str], vecs: np.ndarray, queries: np.ndarray, n: int) -> dict[str, float]:
    import trio

    from chimera.rag import db
    from chimera.rag.search import CoarseCache, hydrate, nearest

    path = CACHE / f"search-{n}.db"
    path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    con = db.connect(path)
    db.migrate(con)
    store = db.create_store(con, "bench", {}, "all-MiniLM-L6-v2-f16", vecs.shape[1])
    with con:
        db.insert_chunks(con, store["id"], "file-bench", 0, [(texts[i], 0, vecs[i].tobytes()) for i in range(n)])
        db.finish_file(con, store["id"], "file-bench", "bench.txt", None, 0, {}, n, 0)
    store = db.find_store(con, store["id"])
    cache = CoarseCache()
    nearest(con, cache, store, queries[0], 10, None)  # warm: loads the packed bits once
    base = vecs[:n]
    times, recalls = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = nearest(con, cache, store, q, 10, None)
        hydrate(con, store["id"], hits)
        times.append(time.perf_counter() - t0)
        truth = set((np.argpartition(-(base @ q), 10)[:10] + 1).tolist())  # rowids are 1-based insert order
        recalls.append(len(truth & {h[0] for h in hits}) / 10)
    con.close()
    del trio
    return {"n": n, "p50_ms": statistics.median(times) * 1000, "p95_ms": float(np.percentile(times, 95)) * 1000,
            "recall": float(np.mean(recalls)), "mode": "exact KNN" if n <= 20_000 else "binary pass + rescore"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ingest-docs", type=int, default=20)
    args = ap.parse_args()
    from chimera.models import prepare

    model = prepare("embed")
    ing = bench_ingest(model, args.threads, args.ingest_docs)
    texts, vecs = corpus_vectors(model, max(args.sizes) + args.queries, args.threads)
    queries, texts, vecs = vecs[-args.queries:], texts[:-args.queries], vecs[:-args.queries]
    rows = [bench_search(texts, vecs, queries, min(n, len(texts))) for n in args.sizes]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    print(f"ingest: {ing['chunks']} chunks; chimera HTTP {ing['http_cps']:.1f} chunks/s, direct llama-cpp-python "
          f"{ing['direct_cps']:.1f} chunks/s, ratio {ing['http_cps'] / ing['direct_cps']:.3f}")
    print("| chunks | search | p50 ms | p95 ms | recall@10 |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['mode']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['recall']:.3f} |")


if __name__ == "__main__":
    main()
