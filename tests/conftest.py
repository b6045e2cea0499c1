"""Shared fixtures: real models prepared by chimera's own code, tiny random-weight models generated
by tests/models, and real server processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from models import tiny_model, tiny_sd_set

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def models_dir() -> Path:
    from chimera.models import default_models_dir

    return default_models_dir()


@pytest.fixture(scope="session")
def smollm(models_dir: Path) -> Path:
    from chimera.models import prepare

    return prepare("llm", models_dir)


@pytest.fixture(scope="session")
def minilm(models_dir: Path) -> Path:
    from chimera.models import prepare

    return prepare("embed", models_dir)


@pytest.fixture(scope="session")
def gemma(models_dir: Path) -> Path:
    """Gemma 3 270M: a second real chat architecture (PyPI chunk packages, joined)."""
    from chimera.models import prepare

    return prepare("gemma", models_dir)


def shared_model(name: str) -> Path:
    """A tiny random-weight model (a name in tests/models MODELS), generated on first use and cached."""
    return tiny_model(name)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --models-dir with the tiny random Llama as `tiny`."""
    d = tmp_path_factory.mktemp("models")
    (d / "tiny.gguf").symlink_to(shared_model("tiny-random-llama-spm.gguf"))
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_error(s: Server, timeout: float = 60) -> str:
    """The error /health reports once the server's model has failed to load."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            h = httpx.get(s.base + "/health")
            if h.status_code == 503 and h.json().get("status") == "error":
                return str(h.json()["error"])
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, s.output()
        time.sleep(0.1)


class Server:
    """`chimera serve` as a real child process on a free port."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, api_key: str = "none") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.log = tempfile.NamedTemporaryFile(prefix="chimera-", suffix=".log", delete=False)
        full_env = dict(os.environ, PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chimera", "serve", "--port", str(self.port), *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float = 90.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                r = httpx.get(self.base + "/health", timeout=2)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.output()}")

    def client(self, **kw: object) -> openai.OpenAI:
        kw.setdefault("_strict_response_validation", True)  # the SDK checks every response against its types
        kw.setdefault("timeout", 120)
        return openai.OpenAI(base_url=self.base + "/v1", api_key=self.api_key, max_retries=0, **kw)  # type: ignore[arg-type]

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=120, headers={"Authorization": f"Bearer {self.api_key}"})

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"server did not exit within {timeout}s of {sig}:\n{self.output()}") from None
        return int(self.proc.returncode)


@pytest.fixture
def start_server() -> Iterator[type[Server]]:
    """Factory for servers that live for one test; each must exit with 0 on SIGTERM."""
    started: list[Server] = []

    class _Server(Server):
        def __init__(self, *a: str, **kw: object) -> None:
            super().__init__(*a, **kw)  # type: ignore[arg-type]
            started.append(self)

    yield _Server
    for s in started:
        already = s.proc.poll()
        rc = s.stop()
        if already is None:
            assert rc == 0, f"server exited with {rc} on SIGTERM:\n{s.output()}"


def module_server(*args: str, **kw: object) -> Iterator[Server]:
    """Body of a module-scoped server fixture: ready before the first test, clean exit after."""
    s = Server(*args, **kw)  # type: ignore[arg-type]
    try:
        s.wait_ready()
        yield s
    finally:
        rc = s.stop()
    assert rc == 0, f"server exited with {rc} on SIGTERM:\n{s.output()}"


@pytest.fixture(scope="session")
def whisper_model(models_dir: Path) -> Path:
    from chimera.models import prepare

    return prepare("whisper", models_dir)


# --- image generation: the synthetic FLUX.2-klein set that tests/models/tiny_sd.py writes ---
@pytest.fixture(scope="session")
def sd_models() -> Path:
    return tiny_sd_set()


def sd_args(sd: Path, *extra: str) -> list[str]:
    """Server flags for the tiny image model (it needs its tiny autoencoder)."""
    return ["--sd-model", str(sd / "tiny-flux2-klein.ckpt"), "--sd-taesd", str(sd / "tiny-taef2.ckpt"), *extra]
