"""`chimera whisper FILE`: one transcription through the same worker and formats as the server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

from ..errors import ChimeraError
from .formats import render
from .pool import AudioPool


def whisper_main(ns: argparse.Namespace) -> int:
    from ..models import prepare

    model = Path(ns.model) if ns.model else prepare("whisper")
    try:
        data = Path(ns.file).read_bytes()
    except OSError as e:
        print(f"chimera: cannot read {ns.file}: {e.strerror}", file=sys.stderr)
        return 2

    async def run() -> str:
        pool = AudioPool(str(model), 1, ns.threads, 24 * 3600)
        box: dict[str, object] = {}
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            try:
                box["result"] = await pool.request(
                    {"task": "transcribe", "language": ns.language, "translate": ns.translate}, data)
            except ChimeraError as e:
                box["error"] = e
            nursery.cancel_scope.cancel()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return render(box["result"], ns.output_format, "translate" if ns.translate else "transcribe")[0]  # type: ignore[arg-type]

    try:
        print(trio.run(run), end="" if ns.output_format in ("text", "srt", "vtt") else "\n")
    except ChimeraError as e:
        print(f"chimera: {e.message}", file=sys.stderr)
        return 1
    return 0
