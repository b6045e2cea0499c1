"""The audio worker process: one whisper.cpp context, requests over its stdin/stdout.

Started as `chimera _audio-worker MODEL THREADS` (the same executable, frozen or not); the pipe
protocol is in `workers/frames.py`. While it decodes, the worker sends one `event` frame per
segment (the HTTP layer turns them into streaming deltas); the `result` frame holds all segments
and, when asked, word-level timestamps from whisper's token timestamps.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

from ..workers.frames import Protocol, WorkerInputError, serve
from .native import NoSpeech


def _words(pw: Any, ctx: Any, segment: int) -> list[dict[str, Any]]:
    """Merge a segment's text tokens into words (a token starting with a space starts a word)."""
    eot = pw.whisper_token_eot(ctx)
    words: list[dict[str, Any]] = []
    for j in range(pw.whisper_full_n_tokens(ctx, segment)):
        data = pw.whisper_full_get_token_data(ctx, segment, j)
        if data.id >= eot:  # special and timestamp tokens
            continue
        piece = pw.whisper_full_get_token_text(ctx, segment, j)
        start, end = data.t0 / 100, data.t1 / 100
        if words and not piece.startswith(" "):
            words[-1]["word"] += piece
            words[-1]["end"] = max(words[-1]["end"], end)
        else:
            words.append({"word": piece, "start": start, "end": end})
    return [w | {"word": w["word"].strip()} for w in words if w["word"].strip()]


def _segment_scores(pw: Any, ctx: Any, segment: int, text: str, no_speech: NoSpeech) -> dict[str, Any]:
    """OpenAI's per-segment fields: token ids, mean log-probability of the text tokens,
    gzip-style compression ratio of the text, and whisper.cpp's no-speech probability."""
    eot = pw.whisper_token_eot(ctx)
    tokens, logprobs = [], []
    for j in range(pw.whisper_full_n_tokens(ctx, segment)):
        data = pw.whisper_full_get_token_data(ctx, segment, j)
        tokens.append(int(data.id))
        if data.id < eot:
            logprobs.append(float(data.plog))
    raw = text.strip().encode()
    prob = no_speech.prob(segment)
    return {"tokens": tokens, "avg_logprob": sum(logprobs) / len(logprobs) if logprobs else 0.0,
            "compression_ratio": len(raw) / len(zlib.compress(raw)) if raw else 0.0,
            "no_speech_prob": prob if prob is not None else 0.0}


def _transcribe(proto: Protocol, model: Any, pw: Any, audio: Any, req: dict[str, Any], multilingual: bool,
                no_speech: NoSpeech) -> dict[str, Any]:
    language = req.get("language") or ("auto" if multilingual else "en")
    want_words = bool(req.get("words"))
    params: dict[str, Any] = {"language": language, "translate": bool(req.get("translate")),
                              "print_progress": False, "print_realtime": False, "no_context": True,
                              "token_timestamps": want_words}
    if req.get("prompt"):
        params["initial_prompt"] = req["prompt"]
    if req.get("temperature") is not None:
        params["temperature"] = float(req["temperature"])

    def on_segment(seg: Any) -> None:
        proto.event(start=seg.t0 / 100, end=seg.t1 / 100, text=seg.text)

    t0 = time.perf_counter()
    segments = model.transcribe(audio, new_segment_callback=on_segment if req.get("stream") else None, **params)
    ctx = model._ctx
    lang_id = pw.whisper_full_lang_id(ctx)
    detected = pw.whisper_lang_str(lang_id) if lang_id >= 0 else language
    out_segments = []
    temperature = float(params.get("temperature", 0.0))
    for i, s in enumerate(segments):
        seg: dict[str, Any] = {"id": i, "start": s.t0 / 100, "end": s.t1 / 100, "text": s.text,
                               **_segment_scores(pw, ctx, i, s.text, no_speech)}
        seg["seek"], seg["temperature"] = int(s.t0), temperature
        if want_words:
            seg["words"] = _words(pw, ctx, i)
        out_segments.append(seg)
    return {
        "language": detected if language == "auto" else language,
        "duration": round(len(audio) / 16000, 3),
        "segments": out_segments,
        "elapsed": round(time.perf_counter() - t0, 3),
    }


def main(model_path: str, threads: int) -> int:
    proto = Protocol()
    import _pywhispercpp as pw
    from pywhispercpp.model import Model

    from .decode import decode

    model = Model(model_path, n_threads=threads, print_progress=False, print_realtime=False, redirect_whispercpp_logs_to=False)
    ctx = getattr(model, "_ctx", None)  # the binding's whisper context
    if ctx is None:
        raise SystemExit(f"error: whisper.cpp could not load {model_path}")
    multilingual = bool(pw.whisper_is_multilingual(ctx))
    no_speech = NoSpeech(pw, ctx)

    def handle(proto: Protocol, req: dict[str, Any], data: bytes) -> dict[str, Any]:
        audio = decode(data, float(req.get("max_seconds", 3600)))
        if req.get("task") == "detect":
            (lang, _prob), _all = model.auto_detect_language(audio)
            return {"language": lang, "duration": round(len(audio) / 16000, 3)}
        if len(audio) < 1600:
            raise WorkerInputError("the audio is shorter than 0.1 s", param="file")
        return _transcribe(proto, model, pw, audio, req, multilingual, no_speech)

    return serve(handle, {"multilingual": multilingual}, proto)
