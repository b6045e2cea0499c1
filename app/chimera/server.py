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
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .config import Settings
from .errors import ConfigError, Unavailable, leaf_error
from .http.app import create_app
from .http.asgi import ConnectionGuard
from .http.resumable import ResumableStreams
from .logs import setup_logging
from .registry.catalog import ModelSpec
from .registry.catalog import build as build_catalog
from .registry.registry import ModelRegistry, engine_loader
from .services import Lifecycle, Services

if TYPE_CHECKING:
    from .images.setup import ImageSetup
    from .llm.rpc import DeviceGuard, RpcDevices
    from .tools.toolbox import ToolBox

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
    cfg.bind = []
    for host in settings.hosts():  # llama-server's --host: addresses, comma-separated, or UNIX sockets (*.sock)
        if host.endswith(".sock"):
            cfg.bind.append(f"unix:{host}")
        else:
            cfg.bind.append(f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}")
    cfg.graceful_timeout = settings.shutdown_timeout + FLUSH_SECONDS
    cfg.keep_alive_timeout = settings.keep_alive_timeout  # also bounds how long request headers may take
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("hypercorn.error")
    cfg.h11_max_incomplete_size = 64 * 1024
    if settings.ssl_cert_file is not None and settings.ssl_key_file is not None:  # HTTPS (HTTP/1.1 and HTTP/2)
        cfg.certfile = str(settings.ssl_cert_file)
        cfg.keyfile = str(settings.ssl_key_file)
    return cfg


def catalog(settings: Settings) -> tuple[list[ModelSpec], str | None]:
    """The models this server offers (files checked; the default model prepared if none given)."""
    for flag, path in (("--whisper-model", settings.whisper_model), ("--rerank-model", settings.rerank_model),
                       ("--rag-model", settings.rag_model), ("--model", settings.model)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{flag}: no such file: {path}")
    from .models import default_models_dir, prepare

    return build_catalog(settings, lambda: prepare("llm", default_models_dir(settings.models_cache)))


RANK_POOLING = 4  # llama.cpp's LLAMA_POOLING_TYPE_RANK


async def _watch_ready(services: Services) -> None:
    """Ready once every model loaded at start-up has loaded (or failed: a failed -m model is the
    server's load error; another failed model only fails its own requests)."""
    registry = services.require_models()
    startup = [h for h in registry.hosted.values() if h.spec.load_on_startup]
    while any(h.state in ("unloaded", "loading") for h in startup):
        await trio.sleep(0.02)
    main = registry.hosted.get(registry.default) if registry.default else None
    if main is not None and main.state == "failed":
        services.lifecycle.load_error = main.error
        return
    services.lifecycle.models_ready = True


async def _side_engines(services: Services) -> None:
    """The engines loaded beside the served models: --rerank-model, and the vector stores'
    embedder (--rag-model, or the default model when it makes embeddings)."""
    from .llm.engine import Engine
    from .rag.service import RagService, embedder_settings

    s, registry = services.settings, services.require_models()
    try:
        async with trio.open_nursery() as nursery:
            if s.rerank_model is not None:
                rank = s.model_copy(update={"embeddings": True, "ctx_size": 0})
                name = s.rerank_model.name.removesuffix(".gguf")
                reranker = await Engine.load(rank, s.rerank_model, services.metrics.for_model(name), pooling=RANK_POOLING)
                if not reranker.ranking:
                    raise RuntimeError("the rerank model has no rank pooling (it is not a cross-encoder reranker)")
                services.reranker = reranker
                nursery.start_soon(reranker.run)
            embedder = None
            if s.rag_model is not None:
                name = s.rag_model.name.removesuffix(".gguf")
                embedder = await Engine.load(embedder_settings(s), s.rag_model, services.metrics.for_model(name))
                nursery.start_soon(embedder.run)
            elif registry.default is not None and registry.hosted[registry.default].spec.kind == "embeddings":
                name = registry.default
                embedder = (await registry.acquire(name, load=True)).engine  # held for the server's life
            if embedder is not None:
                rag = RagService(s.rag_db_path(), embedder, name, s.rag_chunk_tokens, s.rag_chunk_overlap, services.reranker)
                try:
                    await rag.open()
                except Exception as e:
                    raise RuntimeError(f"--rag-db: cannot open {s.rag_db_path()}: {e}") from e
                services.rag = rag
                log.info("vector stores in %s, embedded with %s", s.rag_db_path(), name)
            services.lifecycle.side_ready = True
    except Exception as e:  # a side model that does not load: report it on /health, keep serving
        log.error("model failed to load: %s", e)
        services.lifecycle.load_error = str(e)


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


async def _toolbox(settings: Settings) -> ToolBox | None:
    """The tools of --tools and of the MCP servers configured, or None when there are none."""
    from . import __version__
    from .tools.flags import load_mcp_servers
    from .tools.toolbox import ToolBox

    try:
        mcp = await trio.to_thread.run_sync(load_mcp_servers, settings.mcp_servers_config, settings.mcp_servers_json)
        if not settings.tools and not mcp:
            return None
        return ToolBox(settings.tools, mcp, settings.tools_runtime or "", __version__)
    except ValueError as e:
        raise ConfigError(str(e)) from None


async def _probe(services: Services) -> None:
    from .info import probe_engines

    services.engine_versions = await trio.to_thread.run_sync(probe_engines)


async def run(settings: Settings, *, guard: DeviceGuard | None = None,
              task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    specs, default = await trio.to_thread.run_sync(catalog, settings)
    services = Services(settings=settings, api_keys=settings.api_keys())
    loader = None
    if guard is not None and any(spec.settings.rpc for spec in specs):
        _watch_devices(services, guard)
        loader = engine_loader(services.metrics, guard.servers)
    services.models = ModelRegistry(
        specs, services.metrics, loader=loader, max_loaded=settings.models_max, max_queue=settings.max_queue, default=default,
        autoload=not settings.no_models_autoload,
        idle_seconds=None if settings.sleep_idle_seconds < 0 else settings.sleep_idle_seconds)
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
    if settings.tools_enabled():
        services.tools = await _toolbox(settings)
    app = create_app(services)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals, services.lifecycle)
        if services.tools is not None:  # the MCP servers' children and a tools container live here
            nursery.start_soon(services.tools.run, services.lifecycle.shutdown_requested)
        nursery.start_soon(_probe, services)
        await nursery.start(services.streams.run)
        await nursery.start(services.models.run)
        nursery.start_soon(_watch_ready, services)
        nursery.start_soon(_side_engines, services)
        if settings.whisper_model is not None:
            nursery.start_soon(_run_audio, services)
        if image_setup is not None:
            nursery.start_soon(_run_images, services, image_setup)
        # hypercorn returns once the trigger fired and in-flight requests drained (up to
        # --shutdown-timeout); the engine keeps stepping until then, and is cancelled after.
        async with trio.open_nursery() as http:
            binds = await http.start(
                partial(
                    hypercorn_serve,
                    ConnectionGuard(ResumableStreams(app, services.streams), drain_bytes=DRAIN_BYTES,
                                    drain_seconds=DRAIN_SECONDS),
                    _hypercorn_config(settings),
                    shutdown_trigger=services.lifecycle.shutdown_requested.wait,
                )
            )
            tcp = [b for b in binds if "://unix:" not in b]
            port = int(tcp[0].rsplit(":", 1)[1]) if tcp else settings.port
            for url in binds:
                if settings.log_format == "json":  # every line of a JSON log is a JSON object
                    log.info("listening on %s", url, extra={"url": url})
                else:
                    print(f"chimera: listening on {url}", file=sys.stderr, flush=True)
            task_status.started(port)
            nursery.start_soon(_end_stragglers, services)
        log.info("shutdown complete")
        nursery.cancel_scope.cancel()


def _watch_devices(services: Services, guard: DeviceGuard) -> None:
    """--rpc: when an RPC server dies under a decode or a load, the models on its devices are
    marked lost (their requests end with a clear error) and the rest of the server serves on."""
    from .llm.native import load

    token = trio.lowlevel.current_trio_token()

    def mark(reason: str, dead: list[str]) -> None:  # trio thread
        services.device_lost = reason
        marked = services.require_models().device_lost(reason, dead)
        on_dead = not dead or bool(set(services.settings.rpc) & set(dead))
        for engine in (services.reranker, services.rag.embedder if services.rag is not None else None):
            if engine is not None and not engine.lost and services.settings.n_gpu_layers != 0 and on_dead:
                engine.lost = True
                engine.abort_all(Unavailable(f"lost a device: {reason}", retry_after=60, code="device_lost"))
        log.error("%s: models %s are lost until the server is restarted", reason, ", ".join(marked) or "(none)")

    def lost(message: str) -> None:  # the failing native thread, parked afterwards: it may block
        dead = guard.which_lost()
        reason = (f"the RPC server {', '.join(dead)} stopped answering" if dead else "an RPC server failed") + f" ({message})"
        try:
            token.run_sync_soon(mark, reason, dead)
        except trio.RunFinishedError:
            pass

    guard.install(load(), lost)


async def _end_stragglers(services: Services) -> None:
    """When the grace period ends, end unfinished generations with a clear error; hypercorn
    gives their streams FLUSH_SECONDS more to write it, so clients get a final error event
    instead of a cut connection."""
    await services.lifecycle.shutdown_requested.wait()
    await trio.sleep(services.settings.shutdown_timeout)
    for engine in services.require_models().engines():
        engine.abort_all(Unavailable("the server is shutting down", retry_after=5, code="shutting_down"))


def serve_main(settings: Settings, servers: RpcDevices | None = None) -> int:
    """`servers`: the RPC servers the CLI registered for --rpc (models' presets may add more)."""
    from .llm.rpc import DeviceGuard, RpcDevices

    setup_logging(settings.log_format, settings.verbose)
    guard = DeviceGuard(servers or RpcDevices())
    try:
        trio.run(partial(run, settings, guard=guard))
    except ConfigError:
        raise
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:  # a start-up check that failed inside the nursery
        config = leaf_error(group, ConfigError)
        if config is None:
            raise
        raise config from None
    if guard.lost:  # a parked native thread: exit-time destructors would wait on it
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)
    return 0
