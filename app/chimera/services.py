"""The services a server instance is built from, created once and passed to the HTTP layer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from .config import Settings
from .llm.media import MediaSources
from .metrics import Metrics
from .protocol.responses import ResponseStore
from .serving.stream_store import StreamStore
from .store.chats import ChatStore

if TYPE_CHECKING:
    from .audio.pool import AudioPool
    from .images.pool import ImagePool
    from .llm.engine import Engine
    from .rag.service import RagService
    from .registry.registry import ModelRegistry
    from .tools.toolbox import ToolBox


class Lifecycle:
    """Readiness and the shutdown trigger, shared by the signal watcher, the routes and run()."""

    def __init__(self) -> None:
        self.models_ready = False  # every model loaded at start-up is up (or failed on its own)
        self.side_ready = False  # the reranker and the vector stores' embedder, if any
        self.load_error: str | None = None
        self.shutdown_requested = trio.Event()
        self.started_at = time.time()

    @property
    def ready(self) -> bool:
        return self.models_ready and self.side_ready and self.load_error is None

    def request_shutdown(self) -> None:
        self.shutdown_requested.set()


@dataclass
class Services:
    settings: Settings
    api_keys: tuple[str, ...]
    metrics: Metrics = field(default_factory=Metrics)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    responses: ResponseStore = field(default_factory=ResponseStore)
    streams: StreamStore = field(default_factory=StreamStore)  # resumable streams (X-Conversation-Id)
    models: ModelRegistry | None = None  # the served models, loaded on demand
    reranker: Engine | None = None  # --rerank-model
    chats: ChatStore | None = None  # --persist-chats
    audio: AudioPool | None = None  # once its workers are up (--whisper-model)
    rag: RagService | None = None  # once its embedder is loaded (--rag-model, or --embeddings)
    images: ImagePool | None = None  # once its workers are up (--sd-model)
    tools: ToolBox | None = None  # --tools, --mcp-servers-json / --mcp-servers-config
    engine_versions: dict[str, Any] | None = None  # from the probe process, filled at start-up
    device_lost: str | None = None  # an RPC server died (--rpc): why, and which

    @property
    def media_sources(self) -> MediaSources:
        """Where message media may be read from: --allow-remote-media, --media-path."""
        return MediaSources(remote=self.settings.allow_remote_media, local_dir=self.settings.media_path)

    def require_models(self) -> ModelRegistry:
        if self.models is None:
            from .errors import Loading

            raise Loading()
        return self.models

    def check_loaded(self) -> None:
        """503 while the models loaded at start-up are loading, or after the default one failed."""
        from .errors import Loading, Unavailable

        if self.lifecycle.load_error:
            raise Unavailable(f"the model failed to load: {self.lifecycle.load_error}", retry_after=60)
        if not self.lifecycle.models_ready:
            raise Loading()
