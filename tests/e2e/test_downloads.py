"""Model downloads as llama-server users ask for them (-hf REPO[:QUANT], --hf-file, --hf-token,
-mu URL, --offline) and `chimera pull`, against a local stand-in for the hub's file endpoints
(tests/hubmimic.py; HF_ENDPOINT points at it): the quant picked, the cache reused, an interrupted
download resumed in the same run and in the next one, a checksum mismatch refused."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubmimic import Blob, Hub

from conftest import REPO, Server, shared_model

TINY = "tiny-random-smollm2-vocab.gguf"
CHIMERA = [sys.executable, "-m", "chimera"]


@pytest.fixture
def hub() -> Iterator[Hub]:
    data = shared_model(TINY).read_bytes()
    h = Hub(repos={
        "org/tiny-GGUF": {"tiny-Q8_0.gguf": Blob(data + b"\0" * 64), "tiny-Q4_K_M.gguf": Blob(data),
                          "mmproj-tiny-f16.gguf": Blob(b"not a projector" * 100), "README.md": Blob(b"# tiny\n", lfs=False)},
        "org/plain-GGUF": {"plain-F16.gguf": Blob(data)},
    }).start()
    yield h
    h.stop()


def pull(hub: Hub, cache: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, HF_ENDPOINT=hub.endpoint, PYTHONPATH=str(REPO / "app"), **(env or {}))
    e.pop("HF_TOKEN", None) if "HF_TOKEN" not in (env or {}) else None
    return subprocess.run([*CHIMERA, "pull", *args, "--models-cache", str(cache)], env=e, capture_output=True, text=True,
                          timeout=300)


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_pull_picks_the_quant_and_the_projector_and_reuses_the_cache(hub: Hub, tmp_path: Path) -> None:
    r = pull(hub, tmp_path, "org/tiny-GGUF:q8_0")
    assert r.returncode == 0, r.stderr
    model, proj = (Path(x) for x in r.stdout.split())
    assert model.name == "tiny-Q8_0.gguf" and proj.name == "mmproj-tiny-f16.gguf"
    assert sha(model) == hub.repos["org/tiny-GGUF"]["tiny-Q8_0.gguf"].sha256
    assert model.is_relative_to(tmp_path / "hub" / "org" / "tiny-GGUF")
    assert len(hub.gets("tiny-Q8_0.gguf")) == 1
    again = pull(hub, tmp_path, "org/tiny-GGUF:Q8_0")  # the cached copy: metadata only, no bytes
    assert again.returncode == 0 and again.stdout == r.stdout
    assert len(hub.gets("tiny-Q8_0.gguf")) == 1
    # the default quant (Q4_K_M), without the projector; then an explicit file
    r = pull(hub, tmp_path, "org/tiny-GGUF", "--no-mmproj")
    assert r.returncode == 0 and Path(r.stdout.strip()).name == "tiny-Q4_K_M.gguf"
    r = pull(hub, tmp_path, "org/tiny-GGUF", "--hf-file", "README.md", "--no-mmproj")  # a git (non-LFS) file
    assert r.returncode == 0 and Path(r.stdout.strip()).read_bytes() == b"# tiny\n"
    missing = pull(hub, tmp_path, "org/tiny-GGUF:Q2_K")
    assert missing.returncode == 2 and "no Q2_K file" in missing.stderr and "tiny-Q8_0.gguf" in missing.stderr
    unknown = pull(hub, tmp_path, "org/nothing-GGUF")
    assert unknown.returncode == 2 and "no such repository" in unknown.stderr


def test_an_interrupted_download_resumes(hub: Hub, tmp_path: Path) -> None:
    blob = hub.repos["org/plain-GGUF"]["plain-F16.gguf"]
    # in the same run: the connection drops after 3 MiB, the next request asks for the rest
    blob.drop_after = 3 << 20
    r = pull(hub, tmp_path / "a", "org/plain-GGUF")
    assert r.returncode == 0, r.stderr
    ranges = hub.gets("plain-F16.gguf")
    assert ranges[0] == "" and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) >= 2 << 20
    assert sha(Path(r.stdout.strip())) == blob.sha256
    # across runs: the first run fails after 3 MiB (then the server answers 503), the second goes on from the .part file
    blob.drop_after, blob.fail_after_drop = 3 << 20, 10
    hub.log.clear()
    first = pull(hub, tmp_path / "b", "org/plain-GGUF")
    assert first.returncode == 2 and "run again to resume" in first.stderr
    part = tmp_path / "b" / "hub" / "org" / "plain-GGUF" / "plain-F16.gguf.part"
    have = part.stat().st_size
    assert have >= 2 << 20
    blob.fail_after_drop = 0
    hub.log.clear()
    second = pull(hub, tmp_path / "b", "org/plain-GGUF")
    assert second.returncode == 0, second.stderr
    assert hub.gets("plain-F16.gguf") == [f"bytes={have}-"]
    assert sha(Path(second.stdout.strip())) == blob.sha256 and not part.exists()


def test_a_checksum_mismatch_is_refused_and_deleted(hub: Hub, tmp_path: Path) -> None:
    hub.repos["org/plain-GGUF"]["plain-F16.gguf"].corrupt = True
    r = pull(hub, tmp_path, "org/plain-GGUF")
    assert r.returncode == 2 and "refused" in r.stderr and "does not match" in r.stderr
    folder = tmp_path / "hub" / "org" / "plain-GGUF"
    assert not [p for p in folder.iterdir() if p.name.endswith(".gguf") or p.name.endswith(".part")]


def test_serve_hf_downloads_then_serves(hub: Hub, start_server: type[Server], tmp_path: Path) -> None:
    env = {"HF_ENDPOINT": hub.endpoint}
    s = start_server("-hf", "org/tiny-GGUF:Q4_K_M", "--no-mmproj", "--models-cache", str(tmp_path), "-c", "512",
                     env=env).wait_ready()
    props = s.http().get("/props").json()
    assert Path(props["model_path"]) == tmp_path / "hub" / "org" / "tiny-GGUF" / "tiny-Q4_K_M.gguf"
    r = s.http().post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
    s.stop()
    # --offline: the cached copy, without asking the hub
    hub.log.clear()
    off = start_server("-hf", "org/tiny-GGUF:Q4_K_M", "--no-mmproj", "--offline", "--models-cache", str(tmp_path),
                       "-c", "512", env=env).wait_ready()
    assert Path(off.http().get("/props").json()["model_path"]).name == "tiny-Q4_K_M.gguf" and hub.log == []
    off.stop()
    absent = start_server("-hf", "org/plain-GGUF", "--offline", "--models-cache", str(tmp_path), env=env)
    assert absent.proc.wait(60) == 2 and "not in the cache" in absent.output()
    # -mu: a plain URL; llama-server's environment names too
    hub.urls["/urls/files/plain.gguf"] = hub.repos["org/plain-GGUF"]["plain-F16.gguf"]
    mu = start_server("--models-cache", str(tmp_path), "-c", "512",
                      env={**env, "LLAMA_ARG_MODEL_URL": hub.endpoint + "/urls/files/plain.gguf"}).wait_ready()
    assert Path(mu.http().get("/props").json()["model_path"]).name == "plain.gguf"


def test_a_gated_repository_wants_the_token(hub: Hub, tmp_path: Path, start_server: type[Server]) -> None:
    hub.gated["org/plain-GGUF"] = "hf_secret"
    r = pull(hub, tmp_path, "org/plain-GGUF")
    assert r.returncode == 2 and "gated" in r.stderr and "--hf-token" in r.stderr
    r = pull(hub, tmp_path, "org/plain-GGUF", "--hf-token", "hf_secret")
    assert r.returncode == 0, r.stderr
    r = pull(hub, tmp_path / "env", "org/plain-GGUF", env={"HF_TOKEN": "hf_secret"})
    assert r.returncode == 0, r.stderr
    s = start_server("-hf", "org/plain-GGUF", "-hft", "hf_secret", "--models-cache", str(tmp_path / "srv"), "-c", "512",
                     env={"HF_ENDPOINT": hub.endpoint}).wait_ready()
    info = s.http().get("/props").json()
    assert Path(info["model_path"]).name == "plain-F16.gguf"
    assert "hf_secret" not in s.output()
