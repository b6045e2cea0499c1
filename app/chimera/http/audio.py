"""OpenAI audio routes: transcriptions, translations, and chimera's detect-language."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from ..audio.pool import AudioPool
from ..errors import BadRequest, Loading, NotEnabled
from .common import json_response, services

blueprint = Blueprint("audio", __name__)
FORMATS = ("json", "text", "verbose_json", "srt", "vtt")


def _pool() -> AudioPool:
    s = services()
    if s.settings.whisper_model is None:
        raise NotEnabled("speech-to-text is off", flag="--whisper-model PATH")
    if s.audio is None:
        raise Loading()
    return s.audio


async def _upload() -> tuple[bytes, dict[str, str]]:
    ctype = request.headers.get("Content-Type", "")
    if not ctype.startswith("multipart/form-data"):
        raise BadRequest("send the audio as multipart/form-data with a 'file' field", param="file")
    files = await request.files
    form = await request.form
    f = files.get("file")
    if f is None:
        raise BadRequest("'file' is required", param="file")
    return f.read(), {k: form.get(k) for k in form}


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _render(result: dict[str, Any], fmt: str, task: str) -> Response:
    segs = result["segments"]
    text = " ".join(s["text"].strip() for s in segs).strip()
    if fmt == "json":
        return json_response({"text": text})
    if fmt == "text":
        return Response(text + "\n", content_type="text/plain; charset=utf-8")
    if fmt == "verbose_json":
        return json_response({"task": task, "language": result["language"], "duration": result["duration"], "text": text,
                              "segments": [s | {"text": s["text"].strip()} for s in segs]})
    if fmt == "srt":
        blocks = [f"{i + 1}\n{_stamp(s['start'], ',')} --> {_stamp(s['end'], ',')}\n{s['text'].strip()}\n" for i, s in enumerate(segs)]
        return Response("\n".join(blocks), content_type="text/plain; charset=utf-8")
    cues = [f"{_stamp(s['start'], '.')} --> {_stamp(s['end'], '.')}\n{s['text'].strip()}\n" for s in segs]
    return Response("WEBVTT\n\n" + "\n".join(cues), content_type="text/vtt; charset=utf-8")


async def _run(task: str) -> Response:
    pool = _pool()
    data, form = await _upload()
    fmt = form.get("response_format") or "json"
    if fmt not in FORMATS:
        raise BadRequest(f"response_format must be one of {', '.join(FORMATS)}", param="response_format")
    temperature = None
    if form.get("temperature"):
        try:
            temperature = float(form["temperature"])
        except ValueError:
            raise BadRequest("temperature must be a number", param="temperature") from None
    language = form.get("language") or None
    if language and not pool.multilingual and language != "en":
        raise BadRequest("this whisper model is English-only", param="language")
    header = {"task": "transcribe", "language": language, "translate": task == "translate",
              "prompt": form.get("prompt"), "temperature": temperature}
    result = await pool.request(header, data)
    return _render(result, fmt, task)


@blueprint.post("/v1/audio/transcriptions")
async def transcriptions() -> Response:
    return await _run("transcribe")


@blueprint.post("/v1/audio/translations")
async def translations() -> Response:
    return await _run("translate")


@blueprint.post("/v1/audio/detect-language")
async def detect_language() -> Response:
    pool = _pool()
    data, _ = await _upload()
    if not pool.multilingual:
        raise BadRequest("this whisper model is English-only: it cannot detect languages", param="model")
    result = await pool.request({"task": "detect"}, data)
    return json_response({"language": result["language"], "duration": result["duration"]})
