"""The services a server instance is built from, created once and passed to the HTTP layer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from .config import Settings
from .metrics import Metrics
from .protocol.responses import ResponseStore
from .store.chats import ChatStore

if TYPE_CHECKING:
    from .audio.pool import AudioPool
    from .images.pool import ImagePool
    from .llm.engine import Engine
    from .rag.service import RagService


class Lifecycle:
    """Readiness and the shutdown trigger, shared by the signal watcher, the routes and run()."""

    def __init__(self) -> None:
        self.ready = False
        self.load_error: str | None = None
        self.shutdown_requested = trio.Event()
        self.started_at = time.time()

    def request_shutdown(self) -> None:
        self.shutdown_requested.set()


@dataclass
class Services:
    settings: Settings
    api_keys: tuple[str, ...]
    metrics: Metrics = field(default_factory=Metrics)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    responses: ResponseStore = field(default_factory=ResponseStore)
    engine: Engine | None = None
    reranker: Engine | None = None
    chats: ChatStore | None = None  # --persist-chats
    audio: AudioPool | None = None  # once its workers are up (--whisper-model)
    rag: RagService | None = None  # once its embedder is loaded (--rag-model, or --embeddings)
    images: ImagePool | None = None  # once its workers are up (--sd-model)
    engine_versions: dict[str, Any] | None = None  # from the probe process, filled at start-up
    model_path: str | None = None
    model_id: str = "model"

    def require_engine(self) -> Engine:
        from .errors import Loading, Unavailable

        if self.engine is None:
            if self.lifecycle.load_error:
                raise Unavailable(f"the model failed to load: {self.lifecycle.load_error}", retry_after=60)
            raise Loading()
        return self.engine
