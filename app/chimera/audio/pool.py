"""The speech-to-text workers: a `WorkerPool` of `chimera _audio-worker` processes."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..info import self_command
from ..workers.supervisor import WorkerPool


class AudioPool(WorkerPool):
    def __init__(self, model_path: str, workers: int, threads: int, max_seconds: float) -> None:
        super().__init__("audio", lambda _i: [*self_command(), "_audio-worker", model_path, str(threads)], workers)
        self.model_path = model_path
        self.threads = threads
        self.max_seconds = max_seconds

    @property
    def multilingual(self) -> bool:
        return bool(self.info.get("multilingual", True))

    def prepare(self, header: dict[str, Any]) -> dict[str, Any]:
        if header.get("translate") and not self.multilingual:
            raise BadRequest("this whisper model is English-only: it cannot translate (load a multilingual model)",
                             param="model")
        return header | {"max_seconds": self.max_seconds}
