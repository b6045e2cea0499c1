"""run(): the nursery tree of `chimera serve`, and nothing else.

    run(settings)
    ├─ signal watcher           SIGINT/SIGTERM → lifecycle.request_shutdown(); a 2nd SIGINT exits now
    ├─ engine                   loads the model (progress on the terminal), then runs the batch loop
    └─ hypercorn.trio.serve     answers /health with 503 while loading; on shutdown it stops
                                accepting and drains in-flight requests up to --shutdown-timeout
    When the HTTP server has drained, the rest of the tree is cancelled and run() returns.

Cancellation handling: run() returns normally after a requested shutdown; the engine's thread
calls are abandoned on cancel only while a model is still loading.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .config import Settings
from .errors import ConfigError, Unavailable, leaf_error
from .http.app import create_app
from .http.asgi import ConnectionGuard
from .logs import setup_logging
from .services import Lifecycle, Services

if TYPE_CHECKING:
    from .images.setup import ImageSetup
    from .llm.engine import Engine

log = logging.getLogger("chimera")
# after --shutdown-timeout, ended generations get this long to write their last event
FLUSH_SECONDS = 2.0
# an answer given before the request body was read waits for up to this much more of it (then
# the connection is closed instead): see http/asgi.py
DRAIN_BYTES = 256 * 1024 * 1024
DRAIN_SECONDS = 30.0


async def watch_signals(lifecycle: Lifecycle) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if lifecycle.shutdown_requested.is_set() and signum == signal.SIGINT:
                log.warning("second interrupt: exiting now")
                os._exit(130)
            log.info("%s received: shutting down", signal.Signals(signum).name)
            lifecycle.request_shutdown()


def _hypercorn_config(settings: Settings) -> HypercornConfig:
    cfg = HypercornConfig()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    cfg.bind = [f"{host}:{settings.port}"]
    cfg.graceful_timeout = settings.shutdown_timeout + FLUSH_SECONDS
    cfg.keep_alive_timeout = settings.keep_alive_timeout  # also bounds how long request headers may take
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("hypercorn.error")
    cfg.h11_max_incomplete_size = 64 * 1024
    return cfg


def resolve_model(settings: Settings) -> Path:
    if settings.whisper_model is not None and not settings.whisper_model.is_file():
        raise ConfigError(f"--whisper-model: no such file: {settings.whisper_model}")
    if settings.rerank_model is not None and not settings.rerank_model.is_file():
        raise ConfigError(f"--rerank-model: no such file: {settings.rerank_model}")
    if settings.rag_model is not None and not settings.rag_model.is_file():
        raise ConfigError(f"--rag-model: no such file: {settings.rag_model}")
    if settings.model is not None:
        if not settings.model.is_file():
            raise ConfigError(f"--model: no such file: {settings.model}")
        return settings.model
    from .models import default_models_dir, prepare

    return prepare("llm", default_models_dir(settings.models_dir))


RANK_POOLING = 4  # llama.cpp's LLAMA_POOLING_TYPE_RANK


async def _load_engine(services: Services, model_path: Path) -> None:
    """Load the main model (and the reranker, if any), then run their loops."""
    from .llm.engine import Engine

    settings = services.settings
    try:
        if settings.reranking:
            rank_settings = settings.model_copy(update={"embeddings": True})
            engine = await Engine.load(rank_settings, model_path, services.metrics, pooling=RANK_POOLING)
            services.reranker = engine
        else:
            engine = await Engine.load(settings, model_path, services.metrics)
        if settings.rerank_model is not None:
            rank_settings = settings.model_copy(update={"embeddings": True, "ctx_size": 0})
            services.reranker = await Engine.load(rank_settings, settings.rerank_model, services.metrics, pooling=RANK_POOLING)
        if services.reranker is not None and not services.reranker.ranking:
            raise RuntimeError("the rerank model has no rank pooling (it is not a cross-encoder reranker)")
        embedder = await _load_embedder(services, engine)
    except Exception as e:  # a model that does not load: report it on /health, keep serving
        log.error("model failed to load: %s", e)
        services.lifecycle.load_error = str(e)
        return
    services.engine = engine
    services.lifecycle.ready = True
    log.info("model %s ready: %d slots, %d tokens of context each", services.model_id, engine.n_slots, engine.n_ctx_slot)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(engine.run)
        if services.reranker is not None and services.reranker is not engine:
            nursery.start_soon(services.reranker.run)
        if embedder is not None and embedder is not engine:
            nursery.start_soon(embedder.run)


async def _load_embedder(services: Services, engine: Engine) -> Engine | None:
    """The vector stores' embedder: --rag-model, or the main model when it makes embeddings."""
    from .llm.engine import Engine
    from .rag.service import RagService, embedder_settings

    s = services.settings
    if s.rag_model is not None:
        embedder = await Engine.load(embedder_settings(s), s.rag_model, services.metrics)
        name = s.rag_model.name.removesuffix(".gguf")
    elif s.embeddings and not engine.ranking:
        embedder, name = engine, services.model_id
    else:
        return None
    rag = RagService(s.rag_db_path(), embedder, name, s.rag_chunk_tokens, s.rag_chunk_overlap, services.reranker)
    try:
        await rag.open()
    except Exception as e:
        raise RuntimeError(f"--rag-db: cannot open {s.rag_db_path()}: {e}") from e
    services.rag = rag
    log.info("vector stores in %s, embedded with %s", s.rag_db_path(), name)
    return embedder


async def _run_audio(services: Services) -> None:
    from .audio.pool import AudioPool

    s = services.settings
    assert s.whisper_model is not None
    pool = AudioPool(str(s.whisper_model), s.whisper_workers, s.whisper_threads, s.max_audio_seconds)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        services.audio = pool


async def _run_images(services: Services, setup: ImageSetup) -> None:
    """Check the LoRA aliases in a throwaway worker, then start the image workers. A model that
    leaves no context, or an adapter that does not fit, ends start-up with a clear error."""
    from .images.lora import check_loras
    from .images.pool import ImagePool, worker_argv
    from .workers.supervisor import StartupFailed

    pool = ImagePool(setup)
    try:
        await check_loras(setup.loras, lambda _i: worker_argv(setup))
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            services.images = pool
    except BaseException as exc:  # noqa: BLE001 - nurseries wrap errors in groups
        failed = leaf_error(exc, StartupFailed)
        if failed is None:
            raise
        raise ConfigError(f"image model: {failed}") from None


async def _probe(services: Services) -> None:
    from .info import probe_engines

    services.engine_versions = await trio.to_thread.run_sync(probe_engines)


async def run(settings: Settings, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    model_path = await trio.to_thread.run_sync(resolve_model, settings)
    services = Services(settings=settings, api_keys=settings.api_keys())
    services.model_path = str(model_path)
    services.model_id = settings.alias or model_path.name.removesuffix(".gguf")
    if settings.persist_chats:
        from .store.chats import ChatStore

        services.chats = ChatStore(settings.chat_db_path())
        try:
            await services.chats.open()
        except Exception as e:
            raise ConfigError(f"--chat-db: cannot open {settings.chat_db_path()}: {e}") from e
        log.info("saving chats to %s", settings.chat_db_path())
    image_setup = None
    if settings.sd_enabled():
        from .images.setup import image_setup as check_image_flags

        image_setup = check_image_flags(settings)
    app = create_app(services)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals, services.lifecycle)
        nursery.start_soon(_probe, services)
        nursery.start_soon(_load_engine, services, model_path)
        if settings.whisper_model is not None:
            nursery.start_soon(_run_audio, services)
        if image_setup is not None:
            nursery.start_soon(_run_images, services, image_setup)
        # hypercorn returns once the trigger fired and in-flight requests drained (up to
        # --shutdown-timeout); the engine keeps stepping until then, and is cancelled after.
        async with trio.open_nursery() as http:
            binds = await http.start(
                partial(
                    hypercorn_serve, ConnectionGuard(app, drain_bytes=DRAIN_BYTES, drain_seconds=DRAIN_SECONDS),
                    _hypercorn_config(settings),
                    shutdown_trigger=services.lifecycle.shutdown_requested.wait,
                )
            )
            port = int(binds[0].rsplit(":", 1)[1]) if binds else settings.port
            url = f"http://{settings.host}:{port}"
            if settings.log_format == "json":  # every line of a JSON log is a JSON object
                log.info("listening on %s", url, extra={"url": url})
            else:
                print(f"chimera: listening on {url}", file=sys.stderr, flush=True)
            task_status.started(port)
            nursery.start_soon(_end_stragglers, services)
        log.info("shutdown complete")
        nursery.cancel_scope.cancel()


async def _end_stragglers(services: Services) -> None:
    """When the grace period ends, end unfinished generations with a clear error; hypercorn
    gives their streams FLUSH_SECONDS more to write it, so clients get a final error event
    instead of a cut connection."""
    await services.lifecycle.shutdown_requested.wait()
    await trio.sleep(services.settings.shutdown_timeout)
    if services.engine is not None:
        services.engine.abort_all(Unavailable("the server is shutting down", retry_after=5, code="shutting_down"))


def serve_main(settings: Settings) -> int:
    setup_logging(settings.log_format, settings.verbose)
    try:
        trio.run(run, settings)
    except ConfigError:
        raise
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:  # a start-up check that failed inside the nursery
        config = leaf_error(group, ConfigError)
        if config is None:
            raise
        raise config from None
    return 0
