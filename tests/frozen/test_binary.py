"""Smoke test of the one-file executable, `make test-binary`: every capability through dist/chimera.

The executable runs in a clean environment (PATH without the virtualenv, no PYTHONPATH or
VIRTUAL_ENV, a fresh runtime directory it unpacks itself into), so nothing of the build machine's
Python can be used by it; only the clients (the openai SDK, httpx) run in the test's virtualenv.
Skipped unless CHIMERA_TEST_BINARY=1 (set by `make test-binary`), so that `make test` never tests a
stale dist/chimera.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from conftest import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def binary() -> Path:
    if not os.environ.get("CHIMERA_TEST_BINARY"):
        pytest.skip("frozen-executable tests run with `make test-binary` (CHIMERA_TEST_BINARY=1)")
    exe = Path(os.environ.get("CHIMERA_BINARY", REPO / "dist" / "chimera")).resolve()
    if not exe.is_file():
        pytest.fail(f"{exe} does not exist: build it with `make binary`")
    return exe


@pytest.fixture(scope="module")
def runtime_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime")


@pytest.fixture(scope="module")
def env(runtime_root: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", str(runtime_root)), "LANG": "C.UTF-8",
            "CHIMERA_RUNTIME_DIR": str(runtime_root)}


class FrozenServer:
    """`dist/chimera serve` on a free port, in the clean environment."""

    def __init__(self, exe: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="chimera-frozen-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([str(exe), "serve", "--port", str(self.port), *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd="/")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> FrozenServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.output()}")

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key="none", max_retries=0, timeout=120,
                             _strict_response_validation=True)

    def shutdown(self, timeout: float = 60.0) -> int:
        r = httpx.post(self.base + "/v1/chimera/shutdown", timeout=10)
        assert r.status_code == 202, r.text
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def serve(binary: Path, env: dict[str, str]) -> Iterator[type[FrozenServer]]:
    started: list[FrozenServer] = []

    class _Server(FrozenServer):
        def __init__(self, *args: str) -> None:
            super().__init__(binary, env, *args)
            started.append(self)

    yield _Server
    for s in started:
        s.kill()


def run(binary: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=120, cwd="/")


def test_version_and_help_without_python(binary: Path, env: dict[str, str], runtime_root: Path) -> None:
    from chimera import __version__

    first = run(binary, env, "--version")  # unpacks into the runtime directory
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"chimera {__version__}"
    [runtime] = [p for p in runtime_root.iterdir() if p.is_dir()]
    assert runtime.name.startswith(f"{__version__}-"), runtime.name
    assert (runtime / "chimera").is_file() and (runtime / ".chimera-runtime" / "manifest").is_file()
    again = run(binary, env, "--version")  # reuses it
    assert again.returncode == 0 and again.stdout == first.stdout
    help_ = run(binary, env, "serve", "--help")
    assert help_.returncode == 0 and "--whisper-model" in help_.stdout
    # every file checked against the manifest's SHA-256
    verified = subprocess.run([str(binary), "--version"], env=env | {"CHIMERA_RUNTIME_VERIFY": "1"},
                              capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stderr


def test_damaged_runtime_is_unpacked_again(binary: Path, env: dict[str, str], runtime_root: Path) -> None:
    run(binary, env, "--version")
    [runtime] = [p for p in runtime_root.iterdir() if p.is_dir()]
    victim = next(runtime.glob("_internal/libpython*"))
    victim.write_bytes(b"truncated")
    r = run(binary, env, "--version")
    assert r.returncode == 0, r.stderr
    assert victim.stat().st_size > 1_000_000, "the damaged runtime was replaced"


def test_serve_chat_audio_chats_and_shutdown(serve: type[FrozenServer], binary: Path, env: dict[str, str],
                                             models_dir: Path, smollm: Path, whisper_model: Path,
                                             tmp_path: Path, runtime_root: Path) -> None:
    db = tmp_path / "chats.db"
    # the default model: no -m
    s = serve("--whisper-model", str(whisper_model), "--persist-chats", "--chat-db", str(db),
              "--models-cache", str(models_dir)).wait_ready()
    client = s.client()
    # streaming chat
    stream = client.chat.completions.create(
        model="any", messages=[{"role": "user", "content": "Say hello"}], max_tokens=16, temperature=0, stream=True)
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(parts).strip(), "streamed some text"
    # transcription of jfk.wav in the audio worker
    with open(whisper_model.parent / "jfk.wav", "rb") as fh:
        text = client.audio.transcriptions.create(model="whisper-1", file=fh).text
    assert "ask not what your country can do for you" in text.lower()
    # the workers are this same executable, not a Python interpreter
    info = httpx.get(s.base + "/v1/chimera/info", timeout=60).json()
    assert info["frozen"] is True
    assert "error" not in info["engines"]["whisper_cpp"] and "error" not in info["engines"]["stable_diffusion_cpp"]
    assert info["sqlite"]["sqlite_vec"].startswith("v")
    server = psutil.Process(s.proc.pid)
    exes = {Path(p.exe()) for p in [server, *server.children(recursive=True)]}
    assert exes and all(e.is_relative_to(runtime_root) for e in exes), exes
    assert len(server.children(recursive=True)) >= 1, "an audio worker runs"
    # the web UI ships inside the executable
    page = httpx.get(s.base + "/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and "<title>chimera</title>" in page.text
    app_js = httpx.get(s.base + "/js/app.js", timeout=10)
    assert app_js.status_code == 200 and "DOMContentLoaded" in app_js.text
    assert httpx.get(s.base + "/vendor/purify.js", timeout=10).status_code == 200
    # persisted chats
    chats = httpx.get(s.base + "/v1/chimera/chats", timeout=10).json()
    items = chats["data"] if isinstance(chats, dict) else chats
    assert len(items) == 1
    assert s.shutdown() == 0, s.output()
    # the database, read back by the executable's own CLI
    listed = run(binary, env, "chats", "list", "--chat-db", str(db))
    assert listed.returncode == 0 and items[0]["id"] in listed.stdout, listed.stdout + listed.stderr


def test_embeddings_vector_stores_and_images(serve: type[FrozenServer], minilm: Path, sd_models: Path,
                                             tmp_path: Path, runtime_root: Path) -> None:
    import base64
    import io

    from fpdf import FPDF
    from PIL import Image

    from conftest import sd_args

    s = serve("-m", str(minilm), "--embeddings", "--rag-db", str(tmp_path / "rag.db"), *sd_args(sd_models)).wait_ready()
    client = s.client()
    r = client.embeddings.create(model="any", input=["a cat", "a dog"], encoding_format="float")
    assert len(r.data) == 2 and len(r.data[0].embedding) == 384
    assert abs(sum(x * x for x in r.data[0].embedding) - 1.0) < 1e-3
    # vector stores: PDF (pypdf) and HTML (BeautifulSoup) extraction, sqlite-vec search, all frozen
    vs = client.vector_stores.create(name="frozen")
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 8, "Honeybees carry pollen from one flower to the next.")
    for name, data in (("bees.pdf", bytes(pdf.output())), ("tide.html", b"<p>The moon pulls the sea.</p>")):
        f = client.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=(name, data))
        assert f.status == "completed"
    hits = list(client.vector_stores.search(vector_store_id=vs.id, query="which insects move pollen?"))
    assert hits[0].filename == "bees.pdf"
    # image generation in a stable-diffusion worker started from this executable
    img = client.images.generate(model="sd", prompt="a cat", size="64x64", extra_body={"steps": 2, "cfg_scale": 1, "seed": 3})
    png = Image.open(io.BytesIO(base64.b64decode(img.data[0].b64_json or "")))
    assert png.size == (64, 64)
    workers = psutil.Process(s.proc.pid).children(recursive=True)
    assert any("_sd-worker" in " ".join(p.cmdline()) and Path(p.exe()).is_relative_to(runtime_root) for p in workers)
    assert s.shutdown() == 0, s.output()


def test_completion_and_info_report_the_cpu_variant(serve: type[FrozenServer], smollm: Path) -> None:
    s = serve("-m", str(smollm)).wait_ready()
    r = s.client().completions.create(model="any", prompt="Once upon a time", max_tokens=8, temperature=0)
    assert r.choices[0].text and r.usage.completion_tokens == 8
    llama = httpx.get(s.base + "/v1/chimera/info", timeout=60).json()["llama_cpp"]
    assert "CPU" in llama["backends"] and len(llama["cpu_variants_available"]) >= 10
    assert s.shutdown() == 0, s.output()


def test_audit_of_loaded_libraries(binary: Path, models_dir: Path, whisper_model: Path, minilm: Path) -> None:
    """packaging/audit.py: every library loaded comes from the bundle or the allowed system set."""
    import sys

    gpu = ["--allow-gpu"] if os.environ.get("CHIMERA_BACKEND", "cpu") != "cpu" else []
    r = subprocess.run([sys.executable, str(REPO / "packaging" / "audit.py"), str(binary),
                        "--models-cache", str(models_dir), *gpu], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok: every library loaded" in r.stdout


def test_pull_from_a_hub_stand_in(binary: Path, env: dict[str, str], tmp_path: Path) -> None:
    from hubmimic import Blob, Hub

    from conftest import shared_model

    data = shared_model("tiny-random-smollm2-vocab.gguf").read_bytes()
    hub = Hub(repos={"org/tiny-GGUF": {"tiny-Q4_K_M.gguf": Blob(data, drop_after=3 << 20)}}).start()
    try:
        r = run(binary, env | {"HF_ENDPOINT": hub.endpoint}, "pull", "org/tiny-GGUF", "--models-cache", str(tmp_path))
        assert r.returncode == 0, r.stderr
        assert Path(r.stdout.strip()).read_bytes() == data
        assert hub.gets("tiny-Q4_K_M.gguf")[-1].startswith("bytes=")  # resumed after the dropped connection
    finally:
        hub.stop()


def test_rpc_server_and_serve_rpc(serve: type[FrozenServer], binary: Path, env: dict[str, str], smollm: Path) -> None:
    """`chimera rpc-server` from the same file, and `serve --rpc` placing the layers on it."""
    import socket

    refused = run(binary, env, "rpc-server", "-H", "0.0.0.0", "-p", str(free_port()))
    assert refused.returncode == 2 and "--allow-network" in refused.stderr
    port = free_port()
    helper = subprocess.Popen([str(binary), "rpc-server", "-p", str(port), "-t", "1"], env=env, cwd="/",
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert helper.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        s = serve("-m", str(smollm), "-c", "512", "-np", "1", "--rpc", f"127.0.0.1:{port}", "-ngl", "99").wait_ready()
        r = s.client().completions.create(model="any", prompt="Once upon a time", max_tokens=8, temperature=0)
        assert r.usage.completion_tokens == 8
        devices = httpx.get(s.base + "/v1/chimera/info", timeout=60).json()["llama_cpp"]["devices"]
        assert [d["description"] for d in devices if d["rpc"]] == [f"127.0.0.1:{port}"]
        assert s.shutdown() == 0, s.output()
    finally:
        helper.kill()
        helper.wait()
