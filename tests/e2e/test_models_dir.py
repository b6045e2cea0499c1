"""Models on demand with real models: a --models-dir folder of two real chat models of different
architectures (SmolLM2's Llama, Gemma 3), an embedding model, a reranker, a vision model in its own
subfolder and a broken file; requests through the official clients pick their model, which loads
on first use; --models-max, pinning, keep_alive, presets, the load/unload routes and their events,
and load/unload cycles that leak neither memory nor file descriptors."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import psutil
import pytest

from conftest import REPO, Server, module_server, shared_model

TINY_LLAMA = "tiny-random-llama-spm.gguf"
TINY_SMOL = "tiny-random-smollm2-vocab.gguf"


def link(path: Path, target: Path) -> None:
    path.symlink_to(target)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, smollm: Path, gemma: Path, minilm: Path) -> Path:
    d = tmp_path_factory.mktemp("models")
    link(d / "smollm.gguf", smollm)
    link(d / "gemma.gguf", gemma)
    link(d / "minilm.gguf", minilm)
    link(d / "tiny-rerank.gguf", shared_model("tiny-random-bert-rerank.gguf"))
    vision = d / "tiny-vision"  # a model and its projector, in a folder named for the model
    vision.mkdir()
    link(vision / TINY_LLAMA, shared_model(TINY_LLAMA))
    link(vision / "mmproj-tiny.gguf", shared_model("tiny-random-mmproj-64.gguf"))
    (d / "broken.gguf").write_bytes(smollm.read_bytes()[: 1 << 20])  # a truncated download
    (d / "README.txt").write_text("not a model")
    return d


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[Server]:
    yield from module_server("--models-dir", str(folder), "-np", "2", "-c", "2048")


def listing(s: Server) -> dict[str, dict[str, Any]]:
    r = httpx.get(s.base + "/v1/models", timeout=30)
    assert r.status_code == 200, r.text
    return {m["id"]: m for m in r.json()["data"]}


def state(s: Server, model: str) -> str:
    return str(listing(s)[model]["status"]["value"])


def wait_state(s: Server, model: str, want: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (got := state(s, model)) != want:
        assert time.monotonic() < deadline, f"{model} is {got}, not {want}"
        time.sleep(0.05)


def chat(s: Server, model: str, text: str = "Say hello.", **kw: Any) -> Any:
    return s.client().chat.completions.create(model=model, messages=[{"role": "user", "content": text}],
                                              max_tokens=kw.pop("max_tokens", 8), temperature=0, **kw)


def test_the_folder_is_listed_with_kinds_and_capabilities_nothing_loaded(server: Server) -> None:
    assert httpx.get(server.base + "/health").status_code == 200  # nothing loads at start: ready at once
    models = listing(server)
    assert set(models) == {"smollm", "gemma", "minilm", "tiny-rerank", "tiny-vision", "broken"}  # not README.txt
    assert {m["status"]["value"] for m in models.values()} == {"unloaded"}
    assert models["smollm"]["kind"] == models["gemma"]["kind"] == "chat"
    assert "chat" in models["gemma"]["capabilities"] and "completion" in models["smollm"]["capabilities"]
    assert models["minilm"]["kind"] == "embeddings" and models["minilm"]["capabilities"] == ["embeddings"]
    assert models["tiny-rerank"]["kind"] == "rerank"
    assert "vision" in models["tiny-vision"]["capabilities"]
    assert models["tiny-vision"]["architecture"]["input_modalities"] == ["text", "image"]
    assert models["gemma"]["meta"]["n_ctx_train"] == 32768  # read from the header, without loading
    ids = [m.id for m in server.client().models.list()]  # the SDK's own types accept the listing
    assert sorted(ids) == sorted(models)
    assert httpx.get(server.base + "/models").json() == httpx.get(server.base + "/v1/models").json()


def test_each_model_answers_its_own_requests_through_the_sdk(server: Server) -> None:
    client = server.client()
    small = chat(server, "smollm")
    assert small.model == "smollm" and small.choices[0].message.content
    g = chat(server, "gemma", "What is the capital of France? One word.")
    assert g.model == "gemma" and g.choices[0].message.content
    emb = client.embeddings.create(model="minilm", input=["a cat", "a dog"], encoding_format="float")
    assert emb.model == "minilm" and len(emb.data) == 2 and len(emb.data[0].embedding) == 384
    r = httpx.post(server.base + "/v1/rerank", json={"model": "tiny-rerank", "query": "cats",
                                                     "documents": ["a cat", "a car", "a hat"]}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "tiny-rerank" and len(r.json()["results"]) == 3
    png = _png()
    v = client.chat.completions.create(model="tiny-vision", max_tokens=4, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]}])
    assert v.model == "tiny-vision" and v.usage is not None and v.usage.prompt_tokens > 10  # the image's tokens count
    models = listing(server)
    for name in ("smollm", "gemma", "minilm", "tiny-rerank", "tiny-vision"):
        assert models[name]["status"]["value"] == "loaded", name
    # the two chat models are different models: their tokenizers differ
    toks = {m: httpx.post(server.base + "/tokenize", json={"model": m, "content": "Hello world"}).json()["tokens"]
            for m in ("smollm", "gemma")}
    assert toks["smollm"] != toks["gemma"]
    # the dialects pick their model the same way
    a = httpx.post(server.base + "/v1/messages", json={"model": "gemma", "max_tokens": 4,
                                                       "messages": [{"role": "user", "content": "Hi"}]}, timeout=60)
    assert a.status_code == 200 and a.json()["model"] == "gemma"
    o = ollama.Client(host=server.base).chat(model="smollm:latest", messages=[{"role": "user", "content": "Hi"}],
                                             options={"num_predict": 4})
    assert o.model == "smollm:latest" and o.done


def _png() -> str:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_an_unknown_model_is_404_in_each_dialect(server: Server) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        chat(server, "llama-70b")
    body: Any = e.value.body
    assert body["code"] == "model_not_found" and body["param"] == "model"
    assert "smollm" not in body["message"] and ".gguf" not in body["message"]  # lists neither the models nor paths
    r = httpx.post(server.base + "/v1/messages", json={"model": "nope", "max_tokens": 4,
                                                       "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 404 and r.json()["type"] == "error" and r.json()["error"]["type"] == "not_found_error"
    with pytest.raises(ollama.ResponseError) as oe:
        ollama.Client(host=server.base).chat(model="nope:7b", messages=[{"role": "user", "content": "Hi"}])
    assert oe.value.status_code == 404 and "nope" in oe.value.error
    assert httpx.post(server.base + "/models/load", json={"model": "nope"}).status_code == 404
    assert httpx.get(server.base + "/props", params={"model": "nope"}).status_code == 404


def test_a_broken_file_fails_alone_with_llama_cpps_reason(server: Server) -> None:
    with pytest.raises(openai.APIStatusError) as e:
        chat(server, "broken")
    assert e.value.status_code == 503
    body: Any = e.value.body
    assert body["code"] == "model_failed" and "broken" in body["message"]
    entry = listing(server)["broken"]
    assert entry["status"]["value"] == "failed" and entry["status"]["failed"] is True
    assert entry["status"]["error"]  # llama.cpp's reason
    with pytest.raises(openai.APIStatusError):
        chat(server, "broken")  # again: the same answer, no new load
    assert chat(server, "smollm").choices[0].message.content  # the others serve on
    assert httpx.get(server.base + "/health").status_code == 200


def test_concurrent_streams_to_two_models_loading_at_once_both_complete(server: Server) -> None:
    for m in ("smollm", "gemma"):
        assert httpx.post(server.base + "/models/unload", json={"model": m}, timeout=60).json() == {"success": True, "model": m}
    results: dict[str, Any] = {}

    def stream(model: str, key: str) -> None:
        try:
            chunks = list(server.client().chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Count to twenty."}], max_tokens=24, stream=True,
                extra_body={"ignore_eos": True}))
            results[key] = (chunks[0].model, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
                            [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason])
        except Exception as exc:  # noqa: BLE001 - reported below
            results[key] = exc

    threads = [threading.Thread(target=stream, args=(m, f"{m}{i}")) for m in ("smollm", "gemma") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert len(results) == 4
    for key, got in results.items():
        assert not isinstance(got, Exception), f"{key}: {got!r}"  # none waited into a 503
        model, text, reasons = got
        assert model == key[:-1] and text and reasons == ["length"]


def test_load_unload_routes_props_slots_and_progress_events(server: Server) -> None:
    events: list[dict[str, Any]] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", server.base + "/models/sse", timeout=60) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    ev = json.loads(line[6:])
                    events.append(ev)
                    if ev["model"] == "gemma" and ev["data"]["status"] == "unloaded" and len(events) > 6:
                        ready.set()
                    if ev["model"] == "gemma" and ev["data"]["status"] == "loaded" and ready.is_set():
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    http = server.http()
    assert http.post("/models/unload", json={"model": "gemma"}).json()["success"]
    assert state(server, "gemma") == "unloaded"
    props = http.get("/props", params={"model": "gemma"}).json()
    assert props["is_sleeping"] is True and props["model_alias"] == "gemma"  # asking does not load it
    assert http.get("/slots", params={"model": "gemma"}).json() == []
    assert state(server, "gemma") == "unloaded"
    time.sleep(0.5)
    r = http.post("/models/load", json={"model": "gemma"})
    assert r.status_code == 200 and r.json()["success"] is True and r.json()["load_seconds"] > 0
    t.join(30)
    mine = [e for e in events if e["model"] == "gemma"]
    statuses = [e["data"]["status"] for e in mine]
    assert statuses[-1] == "loaded" and "loading" in statuses
    progress = [e["data"]["progress"]["value"] for e in mine if e["data"]["status"] == "loading"]
    assert progress == sorted(progress) and progress[-1] > 0.5, progress  # a bar a UI can draw
    props = http.get("/props", params={"model": "gemma"}).json()
    assert props["is_sleeping"] is False and props["n_ctx_slot"] == 1024 and props["total_slots"] == 2
    slots = http.get("/slots", params={"model": "gemma"}).json()
    assert len(slots) == 2
    metrics = http.get("/metrics").text
    assert 'chimera_model_loaded{model="gemma"} 1.0' in metrics
    assert 'chimera_model_loads_total{model="gemma"}' in metrics
    assert 'chimera_llm_generated_tokens_total{model="smollm"}' in metrics  # engine metrics by model
    assert 'chimera_model_loaded{model="broken"}' not in metrics or 'chimera_model_loaded{model="broken"} 0.0' in metrics


def test_ollama_keep_alive_zero_unloads_after_the_request_and_ps_shows_expiry(server: Server) -> None:
    client = ollama.Client(host=server.base)
    r = client.generate(model="gemma", prompt="Hi", options={"num_predict": 4}, keep_alive="5m")
    assert r.done
    ps = {m.model: m for m in client.ps().models}
    assert "gemma:latest" in ps
    expires = ps["gemma:latest"].expires_at
    assert expires is not None and 240 < expires.timestamp() - time.time() <= 301
    r = client.generate(model="gemma", prompt="Hi", options={"num_predict": 4}, keep_alive=0)
    assert r.done and r.response is not None
    wait_state(server, "gemma", "unloaded", 15)
    assert "gemma:latest" not in {m.model for m in client.ps().models}
    r = client.generate(model="gemma", prompt="Hi", options={"num_predict": 2})  # loads again
    assert r.done and (r.load_duration or 0) > 0
    client.generate(model="gemma", keep_alive=0)  # Ollama's way to unload: no prompt, keep_alive 0
    assert state(server, "gemma") == "unloaded"
    r = client.generate(model="gemma")  # and to load
    assert r.done_reason == "load" and state(server, "gemma") == "loaded"


# --- --models-max, pinning, presets --------------------------------------------------------------
@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory, smollm: Path) -> Path:
    d = tmp_path_factory.mktemp("small-models")
    link(d / "smollm.gguf", smollm)
    link(d / "tiny-a.gguf", shared_model(TINY_SMOL))
    link(d / "tiny-b.gguf", shared_model(TINY_LLAMA))
    return d


def test_models_max_1_evicts_the_idle_model_never_the_busy_one(start_server: type[Server], small_folder: Path) -> None:
    s = start_server("--models-dir", str(small_folder), "--models-max", "1", "-np", "2").wait_ready()
    chat(s, "tiny-a")
    assert state(s, "tiny-a") == "loaded"
    chat(s, "tiny-b")  # tiny-a is idle: it makes room
    assert (state(s, "tiny-a"), state(s, "tiny-b")) == ("unloaded", "loaded")
    # a long stream holds smollm; the request for tiny-a waits for it instead of evicting it
    stream = s.client().chat.completions.create(model="smollm", messages=[{"role": "user", "content": "Tell a story."}],
                                                max_tokens=120, stream=True, extra_body={"ignore_eos": True})
    first = next(iter(stream))
    assert first.model == "smollm" and state(s, "tiny-b") == "unloaded"
    waited: dict[str, float] = {}

    def other() -> None:
        chat(s, "tiny-a")
        waited["done"] = time.monotonic()

    t = threading.Thread(target=other)
    t.start()
    time.sleep(1.0)
    assert state(s, "smollm") == "loaded" and state(s, "tiny-a") == "unloaded"  # it waits
    chunks = list(stream)
    stream_end = time.monotonic()
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    t.join(60)
    assert waited["done"] >= stream_end - 0.05
    assert (state(s, "smollm"), state(s, "tiny-a")) == ("unloaded", "loaded")


def test_no_models_autoload_refuses_until_loaded_and_props_is_the_routers(start_server: type[Server],
                                                                         small_folder: Path) -> None:
    s = start_server("--models-dir", str(small_folder), "--no-models-autoload", "--models-max", "2").wait_ready()
    http = s.http()
    props = http.get("/props").json()  # no model named, no default: the server itself
    assert props["role"] == "router" and props["max_instances"] == 2 and props["models_autoload"] is False
    assert props["build_info"].startswith("b0-") and props["models"] == ["smollm", "tiny-a", "tiny-b"]
    body = {"model": "tiny-a", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_not_loaded", r.text
    assert "/models/load" in r.json()["error"]["message"] and state(s, "tiny-a") == "unloaded"
    r = http.post("/api/chat", json={"model": "tiny-a", "stream": False, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 400 and "not loaded" in r.json()["error"], r.text  # Ollama's shape
    assert http.post("/models/load", json={"model": "tiny-a"}).status_code == 200
    assert http.post("/v1/chat/completions", json=body).status_code == 200
    assert http.post("/models/unload", json={"model": "tiny-a"}).status_code == 200
    assert http.post("/v1/chat/completions", json=body).status_code == 400  # unloaded again: not reloaded
    default = start_server("--models-dir", str(small_folder), "--models-autoload").wait_ready()
    assert default.http().get("/props").json()["models_autoload"] is True
    assert default.http().post("/v1/chat/completions", json=body).status_code == 200


def test_presets_pin_alias_and_per_model_options(start_server: type[Server], small_folder: Path, tmp_path: Path) -> None:
    preset = tmp_path / "models.toml"
    preset.write_text(
        '[defaults]\nctx-size = 1024\nparallel = 1\n\n'
        '[smollm]\npin = true\nalias = ["small", "default"]\nc = 2048\nnp = 2\nload-on-startup = true\ntags = ["chat", "fast"]\n\n'
        '[tiny-b]\nkeep-alive = "1s"\ntags = "fim, small"\n\n'
        f'[extra]\nmodel = "{shared_model(TINY_SMOL)}"\n')
    s = start_server("--models-dir", str(small_folder), "--models-preset", str(preset), "--models-max", "2").wait_ready()
    assert state(s, "smollm") == "loaded"  # load-on-startup: loaded before /health is 200
    models = listing(s)
    assert set(models) == {"smollm", "tiny-a", "tiny-b", "extra"}
    assert models["smollm"]["pinned"] is True and models["smollm"]["aliases"] == ["small", "default"]
    assert (models["smollm"]["tags"], models["tiny-b"]["tags"], models["tiny-a"]["tags"]) == (["chat", "fast"], ["fim", "small"], [])
    props = s.http().get("/props", params={"model": "small"}).json()
    assert (props["model_alias"], props["n_ctx_slot"], props["total_slots"]) == ("smollm", 1024, 2)  # model's table
    assert chat(s, "small").model == "smollm"
    chat(s, "tiny-a")
    props = s.http().get("/props", params={"model": "tiny-a"}).json()
    assert (props["n_ctx_slot"], props["total_slots"]) == (1024, 1)  # [defaults]
    chat(s, "extra")  # the least recently used is the pinned smollm: tiny-a goes instead
    assert (state(s, "smollm"), state(s, "tiny-a"), state(s, "extra")) == ("loaded", "unloaded", "loaded")
    chat(s, "tiny-b")
    wait_state(s, "tiny-b", "unloaded", 10)  # its keep-alive: 1 s
    assert state(s, "smollm") == "loaded"


@pytest.mark.parametrize(("text", "expect"), [
    ("[smollm]\nctx-sizee = 10\n", "[smollm] ctx-sizee: unknown key"),
    ("[smollm]\nctx-size = \"big\"\n", "[smollm] ctx-size:"),
    ("[defaults]\nkeep-alive = \"soon\"\n", "[defaults] keep-alive: expected a duration"),
    ("[missing]\nc = 10\n", "[missing]: no model 'missing'"),
    ("[smollm\n", "is not valid TOML"),
])
def test_a_bad_preset_exits_2_naming_file_table_and_key(small_folder: Path, tmp_path: Path, text: str, expect: str) -> None:
    preset = tmp_path / "bad.toml"
    preset.write_text(text)
    r = subprocess.run([sys.executable, "-m", "chimera", "serve", "--models-dir", str(small_folder), "--models-preset",
                        str(preset), "--port", "0"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 2, r.stderr
    assert str(preset) in r.stderr and expect in r.stderr, r.stderr


def test_m_and_models_dir_together(start_server: type[Server], small_folder: Path, smollm: Path) -> None:
    s = start_server("-m", str(shared_model(TINY_LLAMA)), "--models-dir", str(small_folder), "--alias", "zed,main,tiny-2",
                     "--tags", "chat,small").wait_ready()
    assert state(s, "main") == "loaded"  # -m loads at start, as before; its id: the first alias in sorted order
    r = s.http().post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert r.json()["model"] == "main"  # no model named: -m's
    assert chat(s, "smollm").model == "smollm"
    assert chat(s, "main").model == "main" and chat(s, "zed").model == "main"
    main = listing(s)["main"]
    assert set(main["aliases"]) == {"main", "tiny-2", "zed"} and main["tags"] == ["chat", "small"]
    assert listing(s)["smollm"]["tags"] == []  # --tags is the -m model's


# --- leaks ---------------------------------------------------------------------------------------
def test_ten_load_unload_cycles_leak_neither_memory_nor_descriptors(start_server: type[Server], small_folder: Path) -> None:
    s = start_server("--models-dir", str(small_folder)).wait_ready()
    proc = psutil.Process(s.proc.pid)
    http = s.http()
    chat(s, "tiny-a")  # the server's own first-use allocations, before counting

    def ask() -> None:  # one kept-alive client: a new SDK client per request would hold a socket each
        r = http.post("/v1/chat/completions", json={"model": "smollm", "max_tokens": 4,
                                                    "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200, r.text

    def cycle() -> None:
        assert http.post("/models/load", json={"model": "smollm"}).status_code == 200
        ask()
        assert http.post("/models/unload", json={"model": "smollm"}).status_code == 200

    cycle()
    before_rss, before_fds = proc.memory_info().rss, proc.num_fds()
    loaded_rss = []
    for _ in range(10):
        assert http.post("/models/load", json={"model": "smollm"}).status_code == 200
        ask()
        loaded_rss.append(proc.memory_info().rss)
        assert http.post("/models/unload", json={"model": "smollm"}).status_code == 200
    after_rss, after_fds = proc.memory_info().rss, proc.num_fds()
    mb = 2**20
    assert after_fds <= before_fds, (before_fds, after_fds)  # no growth (an idle client's socket may close meanwhile)
    assert after_rss - before_rss < 25 * mb, (before_rss / mb, after_rss / mb)  # 2-4 MB measured (35 before malloc_trim)
    assert min(loaded_rss) - after_rss > 40 * mb, "unloading gave the model's memory back"  # it was loaded, then freed
