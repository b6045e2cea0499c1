"""Where the test models' tokenizers come from: files the project prepares itself, offline after
the first run.

- SmolLM2's BPE tokenizer and chat template: the prepared SmolLM2 GGUF (`prepare("llm")`).
- A BERT WordPiece tokenizer: the prepared all-MiniLM-L6-v2 GGUF (`prepare("embed")`).
- llama's SentencePiece tokenizer: the vocab-only GGUF in llama.cpp's source tree, inside the
  llama-cpp-python sdist that native/build-wheels.sh downloads into ~/.cache/chimera/sdist.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LLAMA_SPM_MEMBER = "vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf"


def smollm2() -> Path:
    from chimera.models import prepare

    return prepare("llm")


def minilm() -> Path:
    from chimera.models import prepare

    return prepare("embed")


def llama_cpp_python_version() -> str:
    """The pinned version, from native/versions.env (what the build downloads and builds)."""
    for line in (REPO / "native" / "versions.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "LLAMA_CPP_PYTHON_VERSION":
            return value.strip()
    raise RuntimeError("LLAMA_CPP_PYTHON_VERSION is not in native/versions.env")


def sdist_dir() -> Path:
    """The build's sdist cache, as native/build-wheels.sh names it."""
    return Path(os.environ.get("CHIMERA_CACHE") or Path.home() / ".cache" / "chimera") / "sdist"


def llama_cpp_sdist() -> Path:
    """The llama-cpp-python sdist: the build's copy, or downloaded with pip the way the build does."""
    version, cache = llama_cpp_python_version(), sdist_dir()
    names = [f"llama_cpp_python-{version}.tar.gz", f"llama-cpp-python-{version}.tar.gz"]
    found = [cache / n for n in names if (cache / n).exists()]
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "-d", str(cache), f"llama-cpp-python=={version}"], check=True)
        found = [cache / n for n in names if (cache / n).exists()]
    if not found:
        raise RuntimeError(f"pip did not leave llama-cpp-python {version}'s sdist in {cache}")
    return found[0]


@contextlib.contextmanager
def llama_spm() -> Iterator[Path]:
    """llama.cpp's ggml-vocab-llama-spm.gguf (32000 SentencePiece tokens), unpacked from the sdist
    into a temporary folder for as long as the context lasts."""
    sdist = llama_cpp_sdist()
    with tempfile.TemporaryDirectory(prefix="chimera-vocab-") as tmp, tarfile.open(sdist) as tar:
        for member in tar:  # the archive streams: stop reading at the member
            if member.isfile() and member.name.endswith("/" + LLAMA_SPM_MEMBER):
                src = tar.extractfile(member)
                assert src is not None
                out = Path(tmp) / Path(LLAMA_SPM_MEMBER).name
                with src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                yield out
                return
        raise RuntimeError(f"{LLAMA_SPM_MEMBER} is not in {sdist}")
