"""The default speech model chimera prepares itself (faster-whisper weights → whisper.cpp ggml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chimera.convert_whisper import read_ct2, read_header

SCRIPT = """
import sys
from pywhispercpp.model import Model
m = Model(sys.argv[1], n_threads=2, print_progress=False, print_realtime=False)
print(" ".join(s.text.strip() for s in m.transcribe(sys.argv[2])))
"""


def transcribe(model: Path, audio: Path) -> str:
    # whisper.cpp carries its own ggml: keep it out of this process, as the server does
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(model), str(audio)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip().splitlines()[-1]


def test_converted_model_transcribes_real_speech(whisper_model: Path) -> None:
    text = transcribe(whisper_model, whisper_model.parent / "jfk.wav").lower()
    assert "ask not what your country can do for you" in text
    assert "ask what you can do for your country" in text


def test_header_and_weights_are_read_back(whisper_model: Path) -> None:
    header, hp = read_header(whisper_model.parent / "for-tests-ggml-tiny.en.bin")
    assert hp[0] == 51864 and hp[1] == 1500 and hp[9] == 80  # tiny.en: vocab, audio ctx, mel bins
    converted_header, _ = read_header(whisper_model)
    assert converted_header == header, "the converted file starts with the exact whisper.cpp header"
    assert whisper_model.stat().st_size > 70_000_000


def test_not_a_ct2_model_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x05\x00\x00\x00" + b"\x0b\x00NotWhisper\x00" + b"\x00" * 16)
    with pytest.raises(ValueError, match="not a Whisper model"):
        read_ct2(bad)
