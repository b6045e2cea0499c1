"""Transcription results in OpenAI's response formats (shared by the HTTP routes and the CLI)."""

from __future__ import annotations

import json
from typing import Any

FORMATS = ("json", "text", "verbose_json", "srt", "vtt")


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def render(result: dict[str, Any], fmt: str, task: str, granularities: tuple[str, ...] = ()) -> tuple[str, str]:
    """(body, content type) of a worker's result in `fmt`; `granularities` pick what
    `verbose_json` holds (`segment`, the default, and/or `word`)."""
    segs = result["segments"]
    text = " ".join(s["text"].strip() for s in segs).strip()
    if fmt == "json":
        return json.dumps({"text": text}, ensure_ascii=False), "application/json"
    if fmt == "text":
        return text + "\n", "text/plain; charset=utf-8"
    if fmt == "verbose_json":
        body: dict[str, Any] = {"task": task, "language": result["language"], "duration": result["duration"], "text": text}
        if "word" in granularities:
            body["words"] = [w for s in segs for w in s.get("words", [])]
        if "segment" in granularities or not granularities:
            body["segments"] = [{k: v for k, v in s.items() if k != "words"} | {"text": s["text"].strip()} for s in segs]
        return json.dumps(body, ensure_ascii=False), "application/json"
    if fmt == "srt":
        blocks = [f"{i + 1}\n{_stamp(s['start'], ',')} --> {_stamp(s['end'], ',')}\n{s['text'].strip()}\n" for i, s in enumerate(segs)]
        return "\n".join(blocks), "text/plain; charset=utf-8"
    cues = [f"{_stamp(s['start'], '.')} --> {_stamp(s['end'], '.')}\n{s['text'].strip()}\n" for s in segs]
    return "WEBVTT\n\n" + "\n".join(cues), "text/vtt; charset=utf-8"
