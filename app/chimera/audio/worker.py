"""The audio worker process: one whisper.cpp context, requests over its stdin/stdout.

Started as `chimera _audio-worker MODEL THREADS` (the same executable, frozen or not). Frames in
both directions are a 4-byte little-endian length and a body: a request is a JSON frame followed by
a frame with the audio file's bytes; a reply is one JSON frame. Native code that prints to stdout
would corrupt the protocol, so the worker keeps the real stdout for frames and points fd 1 at
stderr before loading whisper.cpp.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from typing import Any, BinaryIO


def read_frame(fh: BinaryIO) -> bytes | None:
    head = fh.read(4)
    if len(head) < 4:
        return None
    (n,) = struct.unpack("<I", head)
    return fh.read(n)


def write_frame(fh: BinaryIO, body: bytes) -> None:
    fh.write(struct.pack("<I", len(body)) + body)
    fh.flush()


def _transcribe(model: Any, pw: Any, audio: Any, req: dict[str, Any], multilingual: bool) -> dict[str, Any]:
    language = req.get("language") or ("auto" if multilingual else "en")
    params: dict[str, Any] = {"language": language, "translate": bool(req.get("translate")),
                              "print_progress": False, "print_realtime": False, "no_context": True}
    if req.get("prompt"):
        params["initial_prompt"] = req["prompt"]
    if req.get("temperature") is not None:
        params["temperature"] = float(req["temperature"])
    t0 = time.perf_counter()
    segments = model.transcribe(audio, **params)
    lang_id = pw.whisper_full_lang_id(model._ctx) if hasattr(pw, "whisper_full_lang_id") else -1
    detected = pw.whisper_lang_str(lang_id) if lang_id >= 0 and hasattr(pw, "whisper_lang_str") else language
    return {
        "language": detected if language == "auto" else language,
        "duration": round(len(audio) / 16000, 3),
        "segments": [{"id": i, "start": s.t0 / 100, "end": s.t1 / 100, "text": s.text} for i, s in enumerate(segments)],
        "elapsed": round(time.perf_counter() - t0, 3),
    }


def _detect(model: Any, audio: Any) -> dict[str, Any]:
    (lang, _prob), _all = model.auto_detect_language(audio)
    return {"language": lang, "duration": round(len(audio) / 16000, 3)}


def main(model_path: str, threads: int) -> int:
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything native code prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    proto_in = sys.stdin.buffer
    import _pywhispercpp as pw
    from pywhispercpp.model import Model

    from .decode import AudioError, decode

    model = Model(model_path, n_threads=threads, print_progress=False, print_realtime=False, redirect_whispercpp_logs_to=False)
    multilingual = bool(pw.whisper_is_multilingual(model._ctx)) if hasattr(pw, "whisper_is_multilingual") else True
    write_frame(proto_out, json.dumps({"ready": True, "multilingual": multilingual}).encode())
    while True:
        head = read_frame(proto_in)
        if head is None:
            return 0
        data = read_frame(proto_in) or b""
        req = json.loads(head)
        try:
            audio = decode(data, float(req.get("max_seconds", 3600)))
            reply = _detect(model, audio) if req.get("task") == "detect" else _transcribe(model, pw, audio, req, multilingual)
        except AudioError as e:
            reply = {"error": str(e), "status": 413 if "longer than" in str(e) else 400}
        write_frame(proto_out, json.dumps(reply).encode())
