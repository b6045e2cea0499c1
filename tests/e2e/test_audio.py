"""Speech-to-text through the openai SDK: worker processes, formats, bad input, crash recovery."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from conftest import Server, module_server


@pytest.fixture(scope="module")
def server(smollm: Path, whisper_model: Path) -> Iterator[Server]:
    yield from module_server("-m", str(smollm), "--whisper-model", str(whisper_model), "--max-audio-seconds", "60")


def _transcribe(server: Server, path: Path, **kw: object) -> object:
    with open(path, "rb") as fh:
        return server.client().audio.transcriptions.create(model="whisper-1", file=fh, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("sample", ["jfk.wav", "jfk.mp3"])
def test_transcribes_wav_and_mp3(server: Server, whisper_model: Path, sample: str) -> None:
    r = _transcribe(server, whisper_model.parent / sample)
    text = r.text.lower()  # type: ignore[attr-defined]
    assert "ask not what your country can do for you" in text and "ask what you can do for your country" in text


def test_response_formats(server: Server, whisper_model: Path) -> None:
    wav = whisper_model.parent / "jfk.wav"
    srt = str(_transcribe(server, wav, response_format="srt"))
    assert srt.startswith("1\n00:00:00,000 --> ") and "Americans" in srt
    vtt = str(_transcribe(server, wav, response_format="vtt"))
    assert vtt.startswith("WEBVTT\n\n")
    for text, sep in ((srt, ","), (vtt, ".")):
        stamp = r"(\d\d):(\d\d):(\d\d)" + re.escape(sep) + r"(\d\d\d)"
        cues = re.findall(stamp + " --> " + stamp, text)
        times = [(int(h) * 3600 + int(m) * 60 + int(sec) + int(ms) / 1000) for c in cues for h, m, sec, ms in (c[:4], c[4:])]
        assert cues and times == sorted(times) and times[-1] > 8.0  # well-formed cues, increasing, covering the clip
    blocks = srt.strip().split("\n\n")
    assert [b.split("\n")[0] for b in blocks] == [str(i + 1) for i in range(len(blocks))]
    txt = _transcribe(server, wav, response_format="text")
    assert "fellow Americans" in str(txt)
    verbose = _transcribe(server, wav, response_format="verbose_json")
    assert verbose.language == "en" and 10.5 < verbose.duration < 11.5  # type: ignore[attr-defined]
    assert verbose.segments and verbose.segments[0].start == 0.0  # type: ignore[attr-defined]


def test_bad_audio_is_a_clear_4xx(server: Server, whisper_model: Path) -> None:
    base = server.base
    r = httpx.post(base + "/v1/audio/transcriptions", files={"file": ("x.wav", b"RIFF....garbage")})
    assert r.status_code == 400 and "could not be decoded" in r.json()["error"]["message"]
    r = httpx.post(base + "/v1/audio/transcriptions", data={"model": "whisper-1"})
    assert r.status_code == 400
    r = httpx.post(base + "/v1/audio/transcriptions", files={"file": ("a.wav", (whisper_model.parent / "jfk.wav").read_bytes())},
                   data={"response_format": "xml"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
    r = httpx.post(base + "/v1/audio/translations", files={"file": ("a.wav", (whisper_model.parent / "jfk.wav").read_bytes())})
    assert r.status_code == 400 and "English-only" in r.json()["error"]["message"]


def test_too_long_audio_is_413(start_server: type[Server], smollm: Path, whisper_model: Path) -> None:
    s = start_server("-m", str(smollm), "--whisper-model", str(whisper_model), "--max-audio-seconds", "5").wait_ready()
    deadline_ok = False
    for _ in range(100):
        r = httpx.post(s.base + "/v1/audio/transcriptions", files={"file": ("a.wav", (whisper_model.parent / "jfk.wav").read_bytes())})
        if r.status_code != 503:
            deadline_ok = True
            break
        import time
        time.sleep(0.1)
    assert deadline_ok and r.status_code == 413


def test_worker_crash_costs_one_request(server: Server, whisper_model: Path) -> None:
    workers = [p for p in psutil.Process(server.proc.pid).children(recursive=True) if "_audio-worker" in " ".join(p.cmdline())]
    assert len(workers) == 1
    workers[0].kill()  # like a native abort: the process is gone mid-service
    try:
        for _ in range(100):
            if workers[0].status() == psutil.STATUS_ZOMBIE:
                break
            import time
            time.sleep(0.05)
    except psutil.NoSuchProcess:
        pass
    with pytest.raises(openai.InternalServerError) as exc:
        _transcribe(server, whisper_model.parent / "jfk.wav")
    assert "crashed" in exc.value.message
    r = _transcribe(server, whisper_model.parent / "jfk.wav")
    assert "ask not" in r.text.lower()  # type: ignore[attr-defined]
    assert httpx.get(server.base + "/health").status_code == 200


def test_audio_off_is_501(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm)).wait_ready()
    r = httpx.post(s.base + "/v1/audio/transcriptions", files={"file": ("a.wav", b"x")})
    assert r.status_code == 501 and "--whisper-model" in r.json()["error"]["message"]


def test_whisper_cli_shares_the_implementation(whisper_model: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "chimera", "whisper", str(whisper_model.parent / "jfk.mp3"),
                        "--model", str(whisper_model), "--output-format", "vtt"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1000:]
    assert r.stdout.startswith("WEBVTT") and "fellow Americans" in r.stdout
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    r = subprocess.run([sys.executable, "-m", "chimera", "whisper", str(bad), "--model", str(whisper_model)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "unrecognised audio format" in r.stderr


def test_models_props_and_info_report_the_whisper_model(server: Server, whisper_model: Path) -> None:
    models = server.client().models.list().data
    stt = [m for m in models if m.id == whisper_model.stem]
    assert stt and stt[0].model_extra["chimera"]["kind"] == "speech-to-text"  # type: ignore[index]
    props = httpx.get(server.base + "/props").json()["chimera"]["speech_to_text"]
    assert props["model"] == str(whisper_model) and props["ready"] and props["multilingual"] is False
    info = httpx.get(server.base + "/v1/chimera/info").json()
    assert info["speech_to_text"]["workers"] == 1 and info["speech_to_text"]["model"] == str(whisper_model)
