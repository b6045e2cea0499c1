"""ModelRegistry: the models a server serves, loaded when a request needs one and unloaded when
idle, each a child task of the registry's nursery.

    registry.run()                     one nursery
    ├─ reaper                          unloads models idle past their keep-alive
    └─ host(model) per loaded model    loads the engine (a worker thread), runs its loop in a
                                       cancel scope; unloading cancels that scope, the engine
                                       thread stops after its step, and the model is freed

A request holds a Lease on its model from before generation until its response ends: a model
with leases is never unloaded or evicted. `--models-max` bounds how many are loaded at once (the
least recently used idle model makes room); before a load, the memory it needs is compared with
what is free (and what evicting idle models would free), and a load that cannot fit is refused
with a 507 rather than left for the OS to kill the process.

Idle times are on trio's clock (tests run them on an autojump clock).

Cancellation handling: a request cancelled while waiting for its model to load stops waiting;
the load goes on for the next request. Cancelling run() unloads every model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import trio

from ..errors import DeviceLost, InsufficientMemory, ModelFailed, ModelNotFound, ModelNotLoaded, Overloaded, Unavailable
from ..llm.context import MEMORY_MARGIN, kv_bytes_per_token, plan_for
from ..llm.ranking import POOLING
from .catalog import ModelSpec

if TYPE_CHECKING:
    from ..llm.engine import Engine
    from ..llm.rpc import RpcDevices
    from ..metrics import Metrics

log = logging.getLogger("chimera.registry")
State = Literal["unloaded", "loading", "loaded", "failed"]
T = TypeVar("T")
COMPUTE_MARGIN = 256 * 1024 * 1024  # compute buffers and the like, beside weights and KV cache


@dataclass(eq=False)
class Hosted:
    spec: ModelSpec
    state: State = "unloaded"
    error: str | None = None
    engine: Engine | None = None
    in_flight: int = 0
    waiting: int = 0
    last_used: float = 0.0
    keep_alive: float | None = None  # the last request's keep_alive, overriding the model's
    progress: float = 0.0
    load_seconds: float = 0.0
    unloading: bool = False
    lost: bool = False  # its device is gone: failed for good, its engine thread abandoned
    scope: trio.CancelScope | None = None
    stopped: trio.Event = field(default_factory=trio.Event)
    loads: int = 0

    @property
    def id(self) -> str:
        return self.spec.id

    def idle_for(self, now: float) -> float:
        return now - self.last_used if self.in_flight == 0 and self.waiting == 0 else 0.0


class Lease:
    """A request's hold on a loaded model; release() when its response has ended."""

    def __init__(self, registry: ModelRegistry, hosted: Hosted, waited: float) -> None:
        self.registry = registry
        self.hosted = hosted
        self.waited = waited  # seconds the request waited for its model (to load, or for room)
        assert hosted.engine is not None
        self.engine: Engine = hosted.engine
        self._released = False

    @property
    def model_id(self) -> str:
        return self.hosted.id

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.registry._release(self.hosted)


class ModelRegistry:
    def __init__(self, specs: list[ModelSpec], metrics: Metrics, *, max_loaded: int = 0,
                 idle_seconds: float | None = None, max_queue: int = 256, default: str | None = None, autoload: bool = True,
                 loader: Callable[[ModelSpec, Callable[[float], None]], Engine] | None = None,
                 free_memory: Callable[[], int] | None = None) -> None:
        """`loader` builds an engine in a worker thread (default: engine_loader(metrics))."""
        self.hosted = {s.id: Hosted(s) for s in specs}
        self._names = {name: h for h in self.hosted.values() for name in h.spec.names}
        self.metrics = metrics
        self.max_loaded = max_loaded  # 0: as many as fit
        self.idle_seconds = idle_seconds  # None or < 0: never unload an idle model
        self.max_queue = max_queue
        self.default = default
        self.autoload = autoload  # False: only POST /models/load (and start-up) loads a model
        self._loader = loader or engine_loader(metrics)
        self._free_memory = free_memory or _available_memory
        self._changed = trio.Event()
        self._lost = trio.Event()  # a device under the models died (device_lost)
        self._nursery: trio.Nursery | None = None
        self._listeners: list[trio.MemorySendChannel[dict[str, Any]]] = []

    # -- lookup ------------------------------------------------------------------------------
    def resolve(self, name: str | None) -> Hosted:
        """The model a request's `model` names: an id or an alias; with one model served, any
        name (clients send arbitrary ones); none given: the default (-m) model."""
        if name and name in self._names:
            return self._names[name]
        if len(self.hosted) == 1:
            return next(iter(self.hosted.values()))
        if not name and self.default is not None:
            return self.hosted[self.default]
        if name and ":" in name and name.rsplit(":", 1)[0] in self._names:  # Ollama's NAME:TAG
            return self._names[name.rsplit(":", 1)[0]]
        raise ModelNotFound(name or "")

    def find(self, name: str | None) -> Hosted | None:
        try:
            return self.resolve(name)
        except ModelNotFound:
            return None

    def loaded(self) -> list[Hosted]:
        return [h for h in self.hosted.values() if h.state == "loaded" and h.engine is not None]

    def engines(self) -> list[Engine]:
        return [h.engine for h in self.loaded() if h.engine is not None]

    # -- the nursery ---------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._reaper)
            for h in self.hosted.values():
                if h.spec.load_on_startup:
                    self._start(h)
            task_status.started()
            await trio.sleep_forever()

    def _notify(self, h: Hosted | None = None) -> None:
        self._changed.set()
        self._changed = trio.Event()
        if h is not None:
            event = self.event(h)
            for ch in list(self._listeners):
                try:
                    ch.send_nowait(event)
                except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                    self._listeners.remove(ch)

    def event(self, h: Hosted) -> dict[str, Any]:
        """A model's state as llama-server's router reports it on /models/sse."""
        data: dict[str, Any] = {"status": h.state}
        if h.state == "loading":
            stages = ["text_model", *(["mmproj_model"] if h.spec.settings.mmproj else [])]
            data["progress"] = {"stages": stages, "current": "text_model", "value": round(h.progress, 3)}
        if h.error:
            data |= {"failed": True, "error": h.error}
        return {"model": h.id, "event": "model_status", "data": data}

    def listen(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        """Status changes and load progress of every model, as they happen."""
        send, receive = trio.open_memory_channel[dict[str, Any]](256)
        self._listeners.append(send)
        return receive

    def _start(self, h: Hosted) -> None:
        assert self._nursery is not None, "the registry is not running"
        h.state, h.error, h.progress = "loading", None, 0.0
        h.stopped = trio.Event()
        self._notify(h)
        self._nursery.start_soon(self._host, h)

    async def _host(self, h: Hosted) -> None:
        started = time.perf_counter()
        token = trio.lowlevel.current_trio_token()

        def progress(p: float) -> None:
            """Loader thread: at most ~100 updates a load, handed over without waiting for the
            trio thread (a load must not slow the models that are generating)."""
            if p < 1.0 and p - h.progress < 0.01:
                return
            h.progress = p
            try:
                token.run_sync_soon(self._notify, h)
            except trio.RunFinishedError:
                pass

        try:
            engine = await trio.to_thread.run_sync(self._loader, h.spec, progress, abandon_on_cancel=True)
        except Exception as e:  # noqa: BLE001 - a model that does not load is marked, the rest serve on
            h.state, h.error = "failed", str(e)
            log.error("model %s failed to load: %s", h.id, e)
            self._notify(h)
            h.stopped.set()
            return
        h.engine, h.state, h.progress = engine, "loaded", 1.0
        h.load_seconds = time.perf_counter() - started
        h.last_used, h.loads = trio.current_time(), h.loads + 1
        self.metrics.model_loaded.labels(h.id).set(1)
        self.metrics.model_loads.labels(h.id).inc()
        self.metrics.model_load_seconds.labels(h.id).set(h.load_seconds)
        log.info("model %s ready in %.1f s: %d slots, %d tokens of context each", h.id, h.load_seconds,
                 engine.n_slots, engine.n_ctx_slot)
        self._notify(h)
        try:
            with trio.CancelScope() as scope:
                h.scope = scope
                await engine.run()
        finally:
            # gone for every reader (listings, /props, /metrics, /api/ps) before a worker thread
            # frees it: a reader on the trio thread must never touch a context being freed
            h.scope, h.engine, h.unloading = None, None, True
            self._notify()
            if not engine.lost:  # a lost engine's thread never returns: nothing can be freed
                with trio.CancelScope(shield=True):
                    await self._close(engine)
            h.state, h.unloading, h.progress = ("failed" if h.lost else "unloaded"), False, 0.0
            self.metrics.model_loaded.labels(h.id).set(0)
            log.info("model %s unloaded", h.id)
            self._notify(h)
            h.stopped.set()

    async def _close(self, engine: Engine) -> None:
        """Free an engine in a worker thread; abandoned (and leaked) if a device dies meanwhile,
        since freeing buffers on a dead RPC server would wait for ever."""
        async with trio.open_nursery() as n:
            async def close() -> None:
                await trio.to_thread.run_sync(engine.close, abandon_on_cancel=True)
                n.cancel_scope.cancel()

            n.start_soon(close)
            await self._lost.wait()
            n.cancel_scope.cancel()

    def device_lost(self, reason: str, dead: list[str]) -> list[str]:
        """Trio thread: a device under the models is gone (an RPC server died, and the thread
        that talked to it is parked for good). Every model loaded or loading on devices is
        marked lost: its requests end with DeviceLost, its engine thread (stuck in native code)
        is abandoned and never freed. Models on the CPU alone (-ngl 0), and models on other RPC
        servers than the `dead` ones (when known), serve on. Returns the ids marked."""
        self._lost.set()
        marked = []
        for h in self.hosted.values():
            if h.state not in ("loaded", "loading") or h.spec.settings.n_gpu_layers == 0:
                continue
            if not h.spec.settings.rpc or (dead and not set(h.spec.settings.rpc) & set(dead)):
                continue
            h.lost, h.state, h.error = True, "failed", reason
            if h.engine is not None:
                h.engine.lost = True
                h.engine.abort_all(DeviceLost(h.id, reason))
            self.metrics.model_loaded.labels(h.id).set(0)
            marked.append(h.id)
        self._notify()
        return marked

    # -- requests ------------------------------------------------------------------------------
    async def acquire(self, name: str | None, keep_alive: float | None = None, *, load: bool | None = None) -> Lease:
        """A lease on the named model, loading it (and making room for it) if needed; a request
        for a model that is loading waits for it. `load` False (default: the registry's
        autoload): a model that is neither loaded nor loading is refused instead."""
        h = self.resolve(name)
        autoload = self.autoload if load is None else load
        asked = time.perf_counter()
        if h.waiting >= self.max_queue:
            raise Overloaded(f"{self.max_queue} requests already wait for model {h.id} (--max-queue)")
        h.waiting += 1
        try:
            while not (h.state == "loaded" and not h.unloading):
                if h.lost:
                    raise DeviceLost(h.id, h.error or "")
                if h.state == "failed":
                    raise ModelFailed(h.id, h.error or "")
                if h.state == "unloaded" and not autoload:
                    raise ModelNotLoaded(h.id)
                if h.state == "unloaded":
                    await self._make_room(h)
                    if h.state == "unloaded":
                        self._start(h)
                        continue
                await self._changed.wait()
        finally:
            h.waiting -= 1
        h.in_flight += 1
        self.metrics.model_in_flight.labels(h.id).set(h.in_flight)
        h.last_used = trio.current_time()
        h.keep_alive = keep_alive  # as Ollama: each request sets it; none given, the model's default
        return Lease(self, h, time.perf_counter() - asked)

    def _release(self, h: Hosted) -> None:
        h.in_flight -= 1
        self.metrics.model_in_flight.labels(h.id).set(h.in_flight)
        h.last_used = trio.current_time()
        if h.in_flight == 0 and h.waiting == 0 and h.keep_alive == 0 and self._nursery is not None:
            self._nursery.start_soon(self.unload, h.id)
        self._notify()

    async def load(self, name: str) -> Hosted:
        """Load a model (POST /models/load); a failed one is tried again."""
        h = self.resolve(name)
        if h.lost:
            raise DeviceLost(h.id, h.error or "")
        if h.state == "failed":
            h.state, h.error = "unloaded", None
        lease = await self.acquire(h.id, load=True)
        lease.release()
        return h

    async def unload(self, name: str) -> None:
        """Unload a model once its in-flight requests have ended (those still running after its
        stop-timeout end with an error), and free its memory."""
        h = self.resolve(name)
        while h.state == "loading":
            await self._changed.wait()
        if h.state != "loaded" or h.unloading:
            if h.unloading:
                await h.stopped.wait()
            return
        h.unloading = True
        with trio.move_on_after(h.spec.stop_timeout):
            while h.in_flight > 0:
                await self._changed.wait()
        if h.in_flight > 0 and h.engine is not None:
            log.warning("model %s: %d requests still running after %.0f s (stop-timeout): ended", h.id,
                        h.in_flight, h.spec.stop_timeout)
            h.engine.abort_all(Unavailable(f"model {h.id} was unloaded", code="model_unloaded"))
            while h.in_flight > 0:  # their responses end with the error; the leases go
                await self._changed.wait()
        if h.scope is not None:
            h.scope.cancel()
        await h.stopped.wait()

    # -- room -------------------------------------------------------------------------------
    def needs(self, h: Hosted) -> int:
        """Bytes a model is expected to take once loaded: weights, KV cache, compute buffers."""
        if h.spec.kind != "chat":
            return h.spec.size + COMPUTE_MARGIN
        meta = h.spec.meta
        plan = plan_for(h.spec.settings, meta.get, max(0, _total_memory() - MEMORY_MARGIN - h.spec.size))
        kv = plan.n_ctx * kv_bytes_per_token(meta.get, h.spec.settings.cache_type_k, h.spec.settings.cache_type_v)
        return h.spec.size + kv + COMPUTE_MARGIN

    def _evictable(self, exclude: Hosted) -> list[Hosted]:
        """Idle loaded models that may be unloaded, least recently used first."""
        now = trio.current_time()
        idle = [x for x in self.loaded() if x is not exclude and x.in_flight == 0 and x.waiting == 0
                and not x.spec.pin and not x.unloading]
        return sorted(idle, key=lambda x: -x.idle_for(now))

    async def _make_room(self, h: Hosted) -> None:
        """Unload idle models until `h` fits the count and the memory; wait while every model
        that would have to go is busy. Refuses (507) a model that cannot fit at all."""
        while True:
            active = [x for x in self.hosted.values() if x is not h and x.state in ("loaded", "loading")]
            over = self.max_loaded > 0 and len(active) >= self.max_loaded
            need = self.needs(h)
            free = self._free_memory()
            short = need > free
            if not over and not short:
                return
            candidates = self._evictable(h)
            if short and not over:
                freeable = sum(self.needs(x) for x in candidates)
                if need > free + freeable:
                    busy = [x for x in active if x.in_flight or x.waiting]
                    if not busy:
                        raise InsufficientMemory(h.id, need, free)
                    await self._changed.wait()
                    continue
            if candidates:
                victim = candidates[0]
                log.info("unloading %s (idle) to make room for %s", victim.id, h.id)
                await self.unload(victim.id)
                continue
            if over and all(x.spec.pin for x in active):
                raise Unavailable(f"cannot load model {h.id}: the {self.max_loaded} models --models-max allows are "
                                  f"loaded and pinned ({', '.join(x.id for x in active)})", retry_after=60,
                                  code="models_pinned")
            await self._changed.wait()  # every other loaded model is busy: wait for one to be idle

    async def _reaper(self) -> None:
        while True:
            await trio.sleep(0.5)
            now = trio.current_time()
            for h in self.loaded():
                if h.in_flight or h.waiting or h.spec.pin or h.unloading:
                    continue
                keep = self.keep_alive_of(h)
                if keep is not None and keep >= 0 and h.idle_for(now) >= keep:
                    assert self._nursery is not None
                    self._nursery.start_soon(self.unload, h.id)

    # -- reports --------------------------------------------------------------------------------
    def keep_alive_of(self, h: Hosted) -> float | None:
        """Seconds the model stays loaded once idle (None or < 0: until unloaded on purpose)."""
        keep = h.keep_alive if h.keep_alive is not None else h.spec.keep_alive
        return self.idle_seconds if keep is None else keep

    def status(self, h: Hosted) -> dict[str, Any]:
        out: dict[str, Any] = {"value": h.state}
        if h.state == "loading":
            out["progress"] = round(h.progress, 3)
        if h.error:
            out["failed"] = True
            out["error"] = h.error
        return out


def _available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _total_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


LOAD_NICENESS = 10  # a model loads at a lower CPU priority than the models that are generating


def at_low_priority(fn: Callable[[], T]) -> T:
    """Run `fn` in a thread of its own at a lower CPU priority (Linux: nice +10 for that thread,
    and the threads it starts), so reading and repacking a model's weights does not take CPU time
    from the models that are busy generating."""
    import os
    import threading

    out: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        if hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOAD_NICENESS)
            except OSError:
                pass
        try:
            out.append(fn())
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            failed.append(e)

    t = threading.Thread(target=run, name="chimera-model-load", daemon=True)
    t.start()
    t.join()
    if failed:
        raise failed[0]
    return out[0]


def engine_loader(metrics: Metrics, servers: RpcDevices | None = None) -> Callable[[ModelSpec, Callable[[float], None]], Engine]:
    """The loader of real engines (worker thread): a rerank model gets rank pooling. `servers`:
    a model with RPC servers (--rpc, its preset's `rpc`) registers those not registered yet (one
    that does not answer fails the model, naming it) and gets their devices, and only theirs."""
    def load(spec: ModelSpec, progress: Callable[[float], None]) -> Engine:
        from ..llm.engine import Engine

        settings = spec.settings
        if servers is not None and (settings.rpc or servers.devices):
            from ..llm.native import load as load_native
            from ..llm.rpc import parse_endpoint

            native = load_native()
            servers.add(native, [parse_endpoint(e) for e in settings.rpc])
            picked = servers.devices_for(native, settings.rpc, settings.device)
            if picked:
                settings = settings.model_copy(update={"device": picked})
        pooling = 4 if spec.kind == "rerank" else POOLING.get(settings.pooling or "", -1)
        return at_low_priority(lambda: Engine.load_sync(settings, spec.path, metrics.for_model(spec.id), pooling,
                                                        progress=progress))

    return load
