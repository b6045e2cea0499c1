"""OpenAI audio routes: transcriptions, translations, and chimera's detect-language."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from ..audio.formats import FORMATS, render
from ..audio.pool import AudioPool
from ..errors import BadRequest, Loading, NotEnabled
from .common import json_response, services

blueprint = Blueprint("audio", __name__)


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


def _render(result: dict[str, Any], fmt: str, task: str) -> Response:
    body, ctype = render(result, fmt, task)
    return Response(body, content_type=ctype)


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
