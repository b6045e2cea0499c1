"""Which files of a hub repository make the model for a quant (llama-server's rules), and the
checksum check of a downloaded file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from chimera.errors import ConfigError
from chimera.hub import _verify, parse_repo, pick_files

FILES = ["README.md", "model-Q8_0.gguf", "model-Q4_K_M.gguf", "model-q4_0.gguf", "mmproj-model-f16.gguf",
         "mmproj-model-q8_0.gguf", "big/model-Q6_K-00002-of-00002.gguf", "big/model-Q6_K-00001-of-00002.gguf"]


def test_parse_repo() -> None:
    assert parse_repo("ggml-org/gemma-3-1b-it-GGUF:Q8_0") == ("ggml-org/gemma-3-1b-it-GGUF", "Q8_0")
    assert parse_repo("a/b") == ("a/b", None)
    for bad in ("noslash", "a/b/c", "/b", "a/"):
        with pytest.raises(ConfigError):
            parse_repo(bad)


def test_quant_picks_the_file_case_insensitively_with_the_projector() -> None:
    assert pick_files(FILES, "q8_0") == (["model-Q8_0.gguf"], "mmproj-model-f16.gguf")
    assert pick_files(FILES, "Q4_0") == (["model-q4_0.gguf"], "mmproj-model-f16.gguf")
    assert pick_files(FILES, None)[0] == ["model-Q4_K_M.gguf"]  # the default tag
    assert pick_files(["x-Q8_0.gguf", "x-F16.gguf"], None) == (["x-F16.gguf"], None)  # no Q4_K_M: the first
    with pytest.raises(ConfigError, match="no Q2_K file"):
        pick_files(FILES, "Q2_K")
    with pytest.raises(ConfigError, match="no GGUF model"):
        pick_files(["README.md", "mmproj-f16.gguf"], None)


def test_a_split_model_brings_every_part() -> None:
    assert pick_files(FILES, "Q6_K")[0] == ["big/model-Q6_K-00001-of-00002.gguf", "big/model-Q6_K-00002-of-00002.gguf"]


def test_verify_checks_sha256_git_blob_hash_and_size(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + bytes(range(200)))
    data = f.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert _verify(f, f'"{sha}"', len(data)) is None
    assert _verify(f, blob, None) is None
    assert "does not match" in (_verify(f, "0" * 64, None) or "")
    assert "does not match" in (_verify(f, "0" * 40, None) or "")
    assert "bytes where the hub said" in (_verify(f, sha, len(data) + 1) or "")
    assert _verify(f, "", None) is None  # a plain URL: no checksum to check
