"""Vector stores with the real MiniLM embedder: ingestion of txt/md/html/pdf, search quality,
filters, deletion, bad input, model mismatch, the openai SDK, and file_search in /v1/responses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import Server, module_server, shared_model

LIGHTHOUSE = """The Keeper's Log

Every evening at dusk the lighthouse keeper climbs the spiral stairs and lights the great lamp,
so that fishing boats can find their way past the rocks of the northern cape.

In winter storms he stays awake all night, winding the clockwork that turns the lens."""

SOURDOUGH = """# Baking sourdough at home

## The starter

Feed the sourdough starter with equal weights of flour and water the night before baking. It is
ready when it has doubled in size and smells pleasantly sour.

## The dough

Mix the active starter with flour, water and salt, fold the dough every half hour, then shape
the loaf and let it rise in a basket overnight in the fridge."""

VOLCANO = """<!doctype html><html><head><title>Volcanoes</title><style>p {color: red}</style>
<script>var tracking = "ignore me";</script></head><body>
<h1>How volcanoes erupt</h1>
<p>Deep underground, rock melts into magma. When pressure builds, the magma rises through cracks
and bursts out of the crater as lava, ash and gas.</p>
<p>Lava flows can travel for kilometres before they cool into new black rock.</p>
</body></html>"""

BEES = ("Honeybees visit thousands of flowers every day. As they collect nectar, pollen sticks to the "
        "hairs on their bodies and is carried from one blossom to the next, which pollinates the plants. "
        "A colony can hold fifty thousand workers and a single queen.")


def make_pdf(text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


@pytest.fixture(scope="module")
def rag_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rag") / "rag.db"


@pytest.fixture(scope="module")
def server(smollm: Path, minilm: Path, rag_db: Path) -> Iterator[Server]:
    yield from module_server("-m", str(smollm), "--rag-model", str(minilm), "--rag-db", str(rag_db),
                             "--rerank-model", str(shared_model("tiny-random-bert-rerank.gguf")))


def api(server: Server, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, server.base + path, timeout=120, **kw)


@pytest.fixture(scope="module")
def store(server: Server) -> dict[str, Any]:
    s = api(server, "POST", "/v1/vector_stores", json={"name": "library", "metadata": {"owner": "tests"}}).json()
    uploads = [("keeper.txt", LIGHTHOUSE.encode(), "text/plain", {"kind": "txt", "year": 1901}),
               ("sourdough.md", SOURDOUGH.encode(), "text/markdown", {"kind": "md", "year": 2020}),
               ("volcano.html", VOLCANO.encode(), "text/html", {"kind": "html", "year": 2021}),
               ("bees.pdf", make_pdf(BEES), "application/pdf", {"kind": "pdf", "year": 2022})]
    s["files"] = {}
    for name, data, ctype, attrs in uploads:
        import json

        r = api(server, "POST", f"/v1/vector_stores/{s['id']}/files", files={"file": (name, data, ctype)},
                data={"attributes": json.dumps(attrs)})
        assert r.status_code == 200, r.text
        s["files"][name] = r.json()
    return s


def search(server: Server, store_id: str, query: str, **kw: Any) -> list[dict[str, Any]]:
    r = api(server, "POST", f"/v1/vector_stores/{store_id}/search", json={"query": query, **kw})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


@pytest.mark.parametrize("question,filename,words", [
    ("Who switches on the beacon in the coastal tower when night falls?", "keeper.txt", "lights the great lamp"),
    ("How do I get the fermented culture ready before I bake bread?", "sourdough.md", "doubled in size"),
    ("What comes out of a mountain when molten rock pushes up from below?", "volcano.html", "magma rises"),
    ("Which insects carry pollen between blossoms?", "bees.pdf", "pollen sticks"),
])
def test_paraphrased_question_finds_its_passage_first(server: Server, store: dict[str, Any], question: str,
                                                      filename: str, words: str) -> None:
    hits = search(server, store["id"], question, max_num_results=4)
    assert hits[0]["filename"] == filename, [(h["filename"], h["score"]) for h in hits]
    assert words in " ".join(hits[0]["content"][0]["text"].split())
    assert hits[0]["score"] > hits[-1]["score"]


def test_text_extraction_drops_markup(server: Server, store: dict[str, Any]) -> None:
    f = store["files"]["volcano.html"]
    chunks = api(server, "GET", f"/v1/vector_stores/{store['id']}/files/{f['id']}/content").json()["data"]
    text = " ".join(c["text"] for c in chunks)
    assert "magma" in text and "tracking" not in text and "<p>" not in text and "color: red" not in text


def test_store_reports_counts_and_is_found_by_name(server: Server, store: dict[str, Any]) -> None:
    got = api(server, "GET", "/v1/vector_stores/library").json()
    assert got["id"] == store["id"] and got["file_counts"]["completed"] == 4
    assert got["chunk_count"] >= 4 and got["usage_bytes"] > 0 and got["embedding_dimension"] == 384
    listed = api(server, "GET", "/v1/vector_stores?limit=100").json()
    assert store["id"] in [s["id"] for s in listed["data"]]


def test_filters_restrict_results(server: Server, store: dict[str, Any]) -> None:
    q = "Which insects carry pollen between blossoms?"
    only_md = search(server, store["id"], q, filters={"type": "eq", "key": "kind", "value": "md"})
    assert only_md and {h["filename"] for h in only_md} == {"sourdough.md"}
    recent = search(server, store["id"], q, filters={"type": "and", "filters": [
        {"type": "gte", "key": "year", "value": 2021}, {"type": "ne", "key": "kind", "value": "pdf"}]})
    assert {h["filename"] for h in recent} == {"volcano.html"}
    r = api(server, "POST", f"/v1/vector_stores/{store['id']}/search", json={"query": q, "filters": {"type": "like"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "filters"


def test_seed_k_and_rerank(server: Server, store: dict[str, Any]) -> None:
    hits = search(server, store["id"], "bread", k=2)
    assert len(hits) == 2
    reranked = search(server, store["id"], "bread", k=2, rerank=True)
    assert len(reranked) == 2 and all("vector_score" in h and 0 <= h["score"] <= 1 for h in reranked)


def test_delete_file_removes_its_chunks(server: Server) -> None:
    s = api(server, "POST", "/v1/vector_stores", json={"name": "scratch"}).json()
    a = api(server, "POST", f"/v1/vector_stores/{s['id']}/files", json={"text": LIGHTHOUSE, "source_uri": "mem://keeper"}).json()
    api(server, "POST", f"/v1/vector_stores/{s['id']}/files", json={"text": SOURDOUGH, "filename": "bread.md"})
    before = api(server, "GET", f"/v1/vector_stores/{s['id']}").json()["chunk_count"]
    assert search(server, s["id"], "lighthouse keeper lamp")[0]["file_id"] == a["id"]
    r = api(server, "DELETE", f"/v1/vector_stores/{s['id']}/files/{a['id']}")
    assert r.json() == {"id": a["id"], "object": "vector_store.file.deleted", "deleted": True}
    after = api(server, "GET", f"/v1/vector_stores/{s['id']}").json()
    assert after["chunk_count"] == before - a["chunk_count"] and after["file_counts"]["total"] == 1
    assert all(h["file_id"] != a["id"] for h in search(server, s["id"], "lighthouse keeper lamp"))
    assert api(server, "GET", f"/v1/vector_stores/{s['id']}/files/{a['id']}").status_code == 404
    assert api(server, "POST", f"/v1/vector_stores/{s['id']}/delete").json()["deleted"] is True
    assert api(server, "GET", f"/v1/vector_stores/{s['id']}").status_code == 404


def test_bad_input_leaves_the_store_unchanged(server: Server, store: dict[str, Any]) -> None:
    sid = store["id"]
    before = api(server, "GET", f"/v1/vector_stores/{sid}").json()
    corrupt = make_pdf(BEES)[:300]
    r = api(server, "POST", f"/v1/vector_stores/{sid}/files", files={"file": ("broken.pdf", corrupt, "application/pdf")})
    assert r.status_code == 400 and "PDF" in r.json()["error"]["message"]
    r = api(server, "POST", f"/v1/vector_stores/{sid}/files", files={"file": ("cat.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png")})
    assert r.status_code == 415
    r = api(server, "POST", f"/v1/vector_stores/{sid}/files", files={"file": ("x.txt", b"\xc3\x28\xa0\xa1" * 10)})
    assert r.status_code == 400
    r = api(server, "POST", f"/v1/vector_stores/{sid}/files", json={"text": "   "})
    assert r.status_code == 400 and r.json()["error"]["param"] == "text"
    r = api(server, "POST", f"/v1/vector_stores/{sid}/files", json={"text": "x", "attributes": {"k": [1, 2]}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "attributes"
    after = api(server, "GET", f"/v1/vector_stores/{sid}").json()
    assert (after["chunk_count"], after["file_counts"]) == (before["chunk_count"], before["file_counts"])
    for path in ("/v1/vector_stores/vs_nope", "/v1/vector_stores/vs_nope/files", f"/v1/vector_stores/{sid}/files/file-nope"):
        r = api(server, "GET", path)
        assert r.status_code == 404 and "no " in r.json()["error"]["message"]
    assert api(server, "POST", "/v1/vector_stores/vs_nope/search", json={"query": "x"}).status_code == 404
    assert api(server, "POST", f"/v1/vector_stores/{sid}/search", json={"query": ""}).status_code == 400
    assert api(server, "POST", f"/v1/vector_stores/{sid}/search", json={"query": "x", "max_num_results": 500}).status_code == 400
    assert api(server, "POST", "/v1/vector_stores", json={"name": "library"}).status_code == 409
    assert api(server, "GET", "/v1/vector_stores?limit=0").status_code == 400


def test_concurrent_ingests_and_searches(server: Server) -> None:
    s = api(server, "POST", "/v1/vector_stores", json={"name": "busy"}).json()
    errors: list[str] = []

    def ingest(i: int) -> None:
        r = api(server, "POST", f"/v1/vector_stores/{s['id']}/files",
                json={"text": f"Document {i}. " + SOURDOUGH, "attributes": {"n": i}})
        if r.status_code != 200:
            errors.append(r.text)

    def query() -> None:
        for _ in range(5):
            r = api(server, "POST", f"/v1/vector_stores/{s['id']}/search", json={"query": "bread starter"})
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=ingest, args=(i,)) for i in range(6)] + [threading.Thread(target=query) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = api(server, "GET", f"/v1/vector_stores/{s['id']}").json()
    files = api(server, "GET", f"/v1/vector_stores/{s['id']}/files?limit=100").json()["data"]
    assert got["file_counts"]["total"] == 6 and got["chunk_count"] == sum(f["chunk_count"] for f in files)


def test_openai_sdk_vector_stores(server: Server, tmp_path: Path) -> None:
    client = server.client()
    vs = client.vector_stores.create(name="sdk-store", metadata={"via": "sdk"})
    doc = tmp_path / "keeper.txt"
    doc.write_text(LIGHTHOUSE)
    with open(doc, "rb") as fh:
        f = client.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=fh)
    assert f.status == "completed"
    page = client.vector_stores.search(vector_store_id=vs.id, query="who lights the lamp in the tower?", max_num_results=3)
    hits = list(page)
    assert hits and hits[0].filename == "keeper.txt" and "lamp" in hits[0].content[0].text
    assert [x.id for x in client.vector_stores.files.list(vector_store_id=vs.id)] == [f.id]
    assert client.vector_stores.retrieve(vs.id).file_counts.completed == 1
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve("vs_missing")
    assert client.vector_stores.delete(vs.id).deleted


def test_responses_file_search(server: Server, store: dict[str, Any]) -> None:
    client = server.client()
    r = client.responses.create(model="m", input="Which insects carry pollen between blossoms?", max_output_tokens=24,
                                tools=[{"type": "file_search", "vector_store_ids": [store["id"]], "max_num_results": 2}],
                                include=["file_search_call.results"], temperature=0)
    kinds = [o.type for o in r.output]
    assert kinds[0] == "file_search_call" and "message" in kinds
    call = r.output[0]
    assert call.status == "completed" and call.queries == ["Which insects carry pollen between blossoms?"]
    assert call.results and call.results[0].filename == "bees.pdf"
    message = next(o for o in r.output if o.type == "message")
    assert message.content[0].text.strip()
    cites = message.content[0].annotations
    assert cites and all(a.type == "file_citation" for a in cites)
    assert {a.filename for a in cites} <= {res.filename for res in call.results}


def test_responses_file_search_streaming(server: Server, store: dict[str, Any]) -> None:
    client = server.client()
    events = list(client.responses.create(model="m", input="How do I get the culture ready before baking bread?",
                                          max_output_tokens=16, stream=True,
                                          tools=[{"type": "file_search", "vector_store_ids": ["library"]}]))
    kinds = [e.type for e in events]
    assert kinds.index("response.file_search_call.completed") < kinds.index("response.output_text.delta")
    done = events[-1]
    assert done.type == "response.completed"
    assert [o.type for o in done.response.output][:2] == ["file_search_call", "message"]
    assert done.response.output[0].results is None  # not included unless asked


def test_model_mismatch_is_refused(start_server: type[Server], smollm: Path, rag_db: Path, server: Server,
                                   store: dict[str, Any]) -> None:
    other = start_server("-m", str(smollm), "--rag-model", str(shared_model("tiny-random-bert-embed.gguf")),
                         "--rag-db", str(rag_db)).wait_ready()
    r = httpx.post(other.base + f"/v1/vector_stores/{store['id']}/search", json={"query": "bees"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "embedding_model_mismatch"
    assert "384" in r.json()["error"]["message"]
    r = httpx.post(other.base + f"/v1/vector_stores/{store['id']}/files", json={"text": "more"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "embedding_model_mismatch"
    r = httpx.post(other.base + "/v1/vector_stores", json={"name": "x", "embedding_model": "all-MiniLM-L6-v2-f16"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "embedding_model"


def test_vector_stores_off_is_501(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm)).wait_ready()
    r = httpx.get(s.base + "/v1/vector_stores")
    assert r.status_code == 501 and "--rag-model" in r.json()["error"]["message"]


def test_rag_cli_uses_the_same_database(server: Server, store: dict[str, Any], rag_db: Path, minilm: Path,
                                        tmp_path: Path) -> None:
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chimera", "rag", *args, "--rag-db", str(rag_db),
                               "--rag-model", str(minilm)], capture_output=True, text=True, timeout=120)

    listed = cli("list")
    assert listed.returncode == 0 and "library" in listed.stdout and store["id"] in listed.stdout
    doc = tmp_path / "tides.md"
    doc.write_text("# Tides\n\nThe moon's gravity pulls the oceans, which makes the sea rise and fall twice a day.")
    r = cli("ingest", "cli-store", str(doc))
    assert r.returncode == 0, r.stderr
    r = cli("search", "cli-store", "why does the sea level go up and down?")
    assert r.returncode == 0 and "tides.md" in r.stdout.splitlines()[0]
    # the running server sees what the command line wrote
    hits = search(server, "cli-store", "moon gravity oceans")
    assert hits and hits[0]["filename"] == "tides.md"
    r = cli("search", "no-such-store", "x")
    assert r.returncode == 1 and "no vector store" in r.stderr


def test_models_and_info_report_the_embedder(server: Server, minilm: Path, rag_db: Path) -> None:
    ids = {m["id"]: m for m in httpx.get(server.base + "/v1/models").json()["data"]}
    assert ids[minilm.stem]["chimera"]["kind"] == "vector-store-embeddings"
    info = httpx.get(server.base + "/v1/chimera/info").json()["vector_stores"]
    assert info == {"db": str(rag_db), "embedding_model": minilm.stem, "dimension": 384, "chunk_tokens": 256,
                    "chunk_overlap": 32, "ready": True}
