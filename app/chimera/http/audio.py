"""OpenAI audio routes: transcriptions (also streamed), translations, and chimera's detect-language."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from quart import Blueprint, Response, request

from ..audio.formats import FORMATS, render
from ..audio.pool import AudioPool
from ..errors import BadRequest, Loading, NotEnabled
from .common import json_response, services, sse_event, sse_response

blueprint = Blueprint("audio", __name__)
GRANULARITIES = ("segment", "word")


def _pool() -> AudioPool:
    s = services()
    if s.settings.whisper_model is None:
        raise NotEnabled("speech-to-text is off", feature="speech-to-text")
    if s.audio is None:
        raise Loading()
    return s.audio


async def _upload() -> tuple[bytes, Any]:
    ctype = request.headers.get("Content-Type", "")
    if not ctype.startswith("multipart/form-data"):
        raise BadRequest("send the audio as multipart/form-data with a 'file' field", param="file")
    files = await request.files
    form = await request.form
    f = files.get("file")
    if f is None:
        raise BadRequest("'file' is required", param="file")
    return f.read(), form


def _flag(form: Any, name: str) -> bool:
    value = (form.get(name) or "false").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise BadRequest(f"{name} must be true or false", param=name)
    return value in ("true", "1")


def _header(pool: AudioPool, form: Any, task: str) -> tuple[dict[str, Any], str, tuple[str, ...], bool]:
    fmt = form.get("response_format") or "json"
    if fmt not in FORMATS:
        raise BadRequest(f"response_format must be one of {', '.join(FORMATS)}", param="response_format")
    grans = tuple(form.getlist("timestamp_granularities[]") or form.getlist("timestamp_granularities"))
    for g in grans:
        if g not in GRANULARITIES:
            raise BadRequest(f"timestamp_granularities[] must be 'segment' or 'word', not {g!r}",
                             param="timestamp_granularities[]")
    if grans and fmt != "verbose_json":
        raise BadRequest("timestamp_granularities[] needs response_format=verbose_json", param="timestamp_granularities[]")
    stream = _flag(form, "stream")
    if stream and fmt not in ("json", "text"):
        raise BadRequest("stream=true works with response_format json or text", param="stream")
    temperature = None
    if form.get("temperature"):
        try:
            temperature = float(form["temperature"])
        except ValueError:
            raise BadRequest("temperature must be a number", param="temperature") from None
        if not 0.0 <= temperature <= 1.0:
            raise BadRequest("temperature must be between 0 and 1", param="temperature")
    language = form.get("language") or None
    if language and not pool.multilingual and language != "en":
        raise BadRequest("this whisper model is English-only", param="language")
    header = {"task": "transcribe", "language": language, "translate": task == "translate",
              "prompt": form.get("prompt"), "temperature": temperature, "words": "word" in grans, "stream": stream}
    return header, fmt, grans, stream


async def _sse(first: dict[str, Any], events: AsyncGenerator[dict[str, Any], None]) -> AsyncIterator[bytes]:
    """OpenAI's transcription stream: one `transcript.text.delta` per decoded segment, then `done`."""
    async with aclosing(events):
        started = False
        frame: dict[str, Any] | None = first
        while frame is not None:
            if "segments" in frame:  # the result
                text = " ".join(s["text"].strip() for s in frame["segments"]).strip()
                yield sse_event({"type": "transcript.text.done", "text": text})
                return
            delta = frame["text"].strip()
            delta = (" " if started and delta else "") + delta
            started = started or bool(delta)
            yield sse_event({"type": "transcript.text.delta", "delta": delta})
            frame = await anext(events, None)


async def _run(task: str) -> Response:
    pool = _pool()
    data, form = await _upload()
    header, fmt, grans, stream = _header(pool, form, task)
    if stream:
        events = pool.stream(header, data)
        try:
            first = await anext(events)  # input errors arrive before the first event: plain 4xx
        except BaseException:
            await events.aclose()
            raise
        return sse_response(_sse(first, events))
    result = await pool.request(header, data)
    body, ctype = render(result, fmt, task, grans)
    return Response(body, content_type=ctype)


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
