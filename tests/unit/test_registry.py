"""The model registry's lifecycle logic with a fake loader (no model files): loading on demand,
waiting for a load, least-recently-used eviction under --models-max, pinning, keep-alive, the
memory check and failures. The same behaviours with real models are in tests/e2e/test_models_dir.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from chimera.config import Settings
from chimera.errors import InsufficientMemory, ModelFailed, ModelNotFound, Overloaded, Unavailable
from chimera.metrics import Metrics
from chimera.registry.catalog import ModelSpec
from chimera.registry.registry import ModelRegistry

GiB = 2**30


class FakeEngine:
    n_slots = 1
    lost = False
    n_ctx_slot = 128

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.closed = False

    async def run(self) -> None:
        await trio.sleep_forever()

    def close(self) -> None:
        self.closed = True
        self.log.append(f"close {self.name}")

    def abort_all(self, error: Exception) -> None:
        self.aborted = error
        for lease in list(self.holders):  # as a real engine: the generations end, their responses release
            lease.release()

    aborted: Exception | None = None
    holders: list[Any] = []


class Loader:
    """Loads in a worker thread, as the real one; names in `broken` fail as llama.cpp does."""

    def __init__(self, broken: tuple[str, ...] = ()) -> None:
        self.broken = broken
        self.log: list[str] = []
        self.engines: list[FakeEngine] = []

    def __call__(self, spec: ModelSpec, progress: Any) -> FakeEngine:
        import time

        self.log.append(f"load {spec.id}")
        progress(0.5)
        time.sleep(0.01)
        if spec.id in self.broken:
            raise ValueError("llama_model_load: error loading model: tensor 'output.weight' data is not within the file bounds")
        engine = FakeEngine(spec.id, self.log)
        self.engines.append(engine)
        return engine


def spec(name: str, *, pin: bool = False, keep_alive: float | None = None, size: int = 1000, aliases: tuple[str, ...] = (),
         stop_timeout: float = 10.0) -> ModelSpec:
    return ModelSpec(id=name, path=Path(f"/m/{name}.gguf"), settings=Settings(), pin=pin, keep_alive=keep_alive,
                     size=size, aliases=aliases, stop_timeout=stop_timeout)


def registry(specs: list[ModelSpec], loader: Loader, **kw: Any) -> ModelRegistry:
    kw.setdefault("free_memory", lambda: 64 * GiB)
    return ModelRegistry(specs, Metrics(), loader=loader, **kw)  # type: ignore[arg-type]


async def settle() -> None:
    """Let the worker threads and the tasks they wake finish what they do."""
    for _ in range(50):
        await trio.sleep(0.01)


def states(reg: ModelRegistry) -> dict[str, str]:
    return {h.id: h.state for h in reg.hosted.values()}


async def test_resolve_names_aliases_tags_and_a_single_model() -> None:
    reg = registry([spec("a", aliases=("alpha",)), spec("b")], Loader())
    assert reg.resolve("alpha").id == "a"
    assert reg.resolve("b:latest").id == "b"  # Ollama's NAME:TAG
    with pytest.raises(ModelNotFound):
        reg.resolve("c")
    with pytest.raises(ModelNotFound):
        reg.resolve(None)  # two models and no default: the request must name one
    assert registry([spec("a"), spec("b")], Loader(), default="b").resolve(None).id == "b"
    only = registry([spec("x")], Loader())
    assert only.resolve("gpt-4o").id == "x"  # one model: any name a client sends


async def test_loads_on_first_request_and_concurrent_requests_share_one_load() -> None:
    loader = Loader()
    reg = registry([spec("a"), spec("b")], loader)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        leases = []

        async def take() -> None:
            leases.append(await reg.acquire("a"))

        async with trio.open_nursery() as clients:
            for _ in range(3):
                clients.start_soon(take)
        assert loader.log == ["load a"]
        assert states(reg) == {"a": "loaded", "b": "unloaded"}
        assert reg.hosted["a"].in_flight == 3
        for lease in leases:
            lease.release()
        assert reg.hosted["a"].in_flight == 0
        nursery.cancel_scope.cancel()
    assert loader.engines[0].closed  # cancelling run() unloads every model


async def test_models_max_evicts_the_least_recently_used_idle_model() -> None:
    loader = Loader()
    reg = registry([spec("a"), spec("b"), spec("c")], loader, max_loaded=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        (await reg.acquire("a")).release()
        await trio.sleep(0.1)
        (await reg.acquire("b")).release()
        await trio.sleep(0.1)
        (await reg.acquire("a")).release()  # a is now the more recent
        await trio.sleep(0.1)
        (await reg.acquire("c")).release()
        assert states(reg) == {"a": "loaded", "b": "unloaded", "c": "loaded"}
        assert loader.log == ["load a", "load b", "load c", "close b"] or loader.log == ["load a", "load b", "close b", "load c"]
        nursery.cancel_scope.cancel()


async def test_a_busy_model_is_never_evicted_the_new_one_waits() -> None:
    loader = Loader()
    reg = registry([spec("a"), spec("b")], loader, max_loaded=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        busy = await reg.acquire("a")
        got: list[str] = []

        async def want_b() -> None:
            lease = await reg.acquire("b")
            got.append(lease.model_id)
            lease.release()

        nursery.start_soon(want_b)
        await settle()
        assert got == [] and states(reg) == {"a": "loaded", "b": "unloaded"}
        assert not loader.engines[0].closed
        busy.release()  # a's request ended: now it may go
        with trio.fail_after(5):
            while not got:
                await trio.sleep(0.01)
        assert states(reg) == {"a": "unloaded", "b": "loaded"}
        nursery.cancel_scope.cancel()


async def test_a_pinned_model_stays_and_the_others_make_room() -> None:
    loader = Loader()
    reg = registry([spec("a", pin=True), spec("b"), spec("c")], loader, max_loaded=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        (await reg.acquire("a")).release()  # a: least recently used, but pinned
        await trio.sleep(0.1)
        (await reg.acquire("b")).release()
        await trio.sleep(0.1)
        (await reg.acquire("c")).release()
        assert states(reg) == {"a": "loaded", "b": "unloaded", "c": "loaded"}
        nursery.cancel_scope.cancel()


async def test_when_every_loaded_model_is_pinned_a_new_one_is_refused() -> None:
    reg = registry([spec("a", pin=True), spec("b")], Loader(), max_loaded=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        (await reg.acquire("a")).release()
        with pytest.raises(Unavailable, match="loaded and pinned"):
            await reg.acquire("b")
        nursery.cancel_scope.cancel()


async def test_keep_alive_zero_unloads_after_the_request() -> None:
    loader = Loader()
    reg = registry([spec("a"), spec("b")], loader)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        lease = await reg.acquire("a", keep_alive=0)
        await settle()
        assert states(reg)["a"] == "loaded"  # not while the request runs
        lease.release()
        await settle()
        assert states(reg)["a"] == "unloaded" and loader.engines[0].closed
        # the next request without keep_alive gets the default again (stays loaded)
        (await reg.acquire("a")).release()
        await settle()
        assert states(reg)["a"] == "loaded"
        nursery.cancel_scope.cancel()


async def test_idle_models_unload_after_their_keep_alive(autojump_clock: trio.testing.MockClock) -> None:
    # jump only once the worker threads (loads, unloads) have had 0.1 s of real time: with the
    # default 0 the clock could run past a keep-alive while a busy CPU still runs an unload
    autojump_clock.autojump_threshold = 0.1
    reg = registry([spec("a", keep_alive=2.0), spec("b"), spec("c", keep_alive=-1)], Loader(), idle_seconds=5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        leases = [await reg.acquire(name) for name in ("a", "b", "c")]
        for lease in leases:  # idle from the same moment (the clock jumps while a worker thread loads)
            lease.release()
        await trio.sleep(3.0)
        assert states(reg) == {"a": "unloaded", "b": "loaded", "c": "loaded"}  # a's own keep-alive: 2 s
        await trio.sleep(3.0)
        assert states(reg) == {"a": "unloaded", "b": "unloaded", "c": "loaded"}  # --sleep-idle-seconds 5; c: forever
        lease = await reg.acquire("b", keep_alive=-1)  # per request: negative keeps it forever
        lease.release()
        await trio.sleep(8.0)
        assert states(reg)["b"] == "loaded"
        nursery.cancel_scope.cancel()


async def test_a_broken_model_fails_alone_and_load_tries_again() -> None:
    loader = Loader(broken=("bad",))
    reg = registry([spec("good"), spec("bad")], loader)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        with pytest.raises(ModelFailed, match="not within the file bounds"):
            await reg.acquire("bad")
        status = reg.status(reg.hosted["bad"])
        assert status["value"] == "failed" and status["failed"] is True
        assert "error loading model: tensor 'output.weight'" in status["error"]
        with pytest.raises(ModelFailed):  # its requests fail at once, without another load
            await reg.acquire("bad")
        assert loader.log.count("load bad") == 1
        (await reg.acquire("good")).release()
        assert states(reg)["good"] == "loaded"
        with pytest.raises(ModelFailed):
            await reg.load("bad")  # POST /models/load tries again
        assert loader.log.count("load bad") == 2
        nursery.cancel_scope.cancel()


async def test_a_model_that_cannot_fit_in_memory_is_refused_with_the_numbers() -> None:
    loader = Loader()
    big = spec("big", size=40 * GiB)
    reg = registry([spec("a", size=5 * GiB), big], loader, free_memory=lambda: 30 * GiB)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        with pytest.raises(InsufficientMemory, match=r"big needs about 40\.\d GiB to load and 30\.0 GiB is free") as e:
            await reg.acquire("big")
        assert e.value.status == 507
        assert loader.log == []  # refused before loading, not left to the OS's out-of-memory killer
        nursery.cancel_scope.cancel()


async def test_the_memory_check_evicts_idle_models_when_that_makes_room() -> None:
    loader = Loader()
    free = [12 * GiB]
    reg = registry([spec("a", size=8 * GiB), spec("b", size=8 * GiB)], loader, free_memory=lambda: free[0])
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        (await reg.acquire("a")).release()
        free[0] = 4 * GiB  # a took its share
        orig_unload = reg.unload

        async def unload(name: str) -> None:
            await orig_unload(name)
            free[0] += 8 * GiB

        reg.unload = unload  # type: ignore[method-assign]
        (await reg.acquire("b")).release()
        assert states(reg) == {"a": "unloaded", "b": "loaded"}
        nursery.cancel_scope.cancel()


async def test_unload_waits_for_in_flight_requests() -> None:
    loader = Loader()
    reg = registry([spec("a"), spec("b")], loader)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        lease = await reg.acquire("a")
        done = trio.Event()

        async def unload() -> None:
            await reg.unload("a")
            done.set()

        nursery.start_soon(unload)
        await settle()
        assert not done.is_set() and not loader.engines[0].closed
        lease.release()
        with trio.fail_after(5):
            await done.wait()
        assert loader.engines[0].closed and states(reg)["a"] == "unloaded"
        nursery.cancel_scope.cancel()


async def test_an_unload_ends_requests_still_running_after_the_stop_timeout(autojump_clock: trio.testing.MockClock) -> None:
    loader = Loader()
    reg = registry([spec("a", stop_timeout=3.0), spec("b")], loader)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        lease = await reg.acquire("a")
        engine = loader.engines[0]
        engine.holders = [lease]
        started = trio.current_time()
        await reg.unload("a")
        assert 3.0 <= trio.current_time() - started < 4.0  # waited its stop-timeout, not the default 10 s
        assert isinstance(engine.aborted, Unavailable) and engine.aborted.code == "model_unloaded"
        assert engine.closed and states(reg)["a"] == "unloaded"
        nursery.cancel_scope.cancel()


async def test_the_wait_for_a_model_is_bounded_by_max_queue() -> None:
    reg = registry([spec("a"), spec("b")], Loader(), max_loaded=1, max_queue=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        busy = await reg.acquire("a")
        for _ in range(2):
            nursery.start_soon(reg.acquire, "b")
        await settle()
        with pytest.raises(Overloaded, match="2 requests already wait for model b"):
            await reg.acquire("b")
        busy.release()
        nursery.cancel_scope.cancel()


async def test_status_events_report_loading_progress() -> None:
    reg = registry([spec("a"), spec("b")], Loader())
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        events = reg.listen()
        (await reg.acquire("a")).release()
        await settle()
        seen = []
        while True:
            try:
                seen.append(events.receive_nowait())
            except trio.WouldBlock:
                break
        assert [(e["model"], e["event"], e["data"]["status"]) for e in seen] == [("a", "model_status", "loading")] * 2 + [
            ("a", "model_status", "loaded")]
        assert [e["data"]["progress"]["value"] for e in seen[:2]] == [0.0, 0.5]
        nursery.cancel_scope.cancel()


async def test_a_dead_rpc_server_takes_only_the_models_on_it() -> None:
    from chimera.errors import DeviceLost

    def on(name: str, rpc: tuple[str, ...], ngl: int = 999) -> ModelSpec:
        s = spec(name)
        return ModelSpec(id=name, path=s.path, settings=Settings(rpc=rpc, n_gpu_layers=ngl), size=s.size)

    loader = Loader()
    reg = registry([on("a", ("h1:50052",)), on("b", ("h2:50052",)), on("c", ()), on("d", ("h1:50052",), ngl=0)], loader)
    async with trio.open_nursery() as nursery:
        await nursery.start(reg.run)
        for name in "abcd":
            (await reg.acquire(name)).release()
        held = await reg.acquire("a")
        FakeEngine.holders = [held]
        engine_a = reg.hosted["a"].engine
        assert reg.device_lost("the RPC server h1:50052 stopped answering", ["h1:50052"]) == ["a"]
        assert engine_a is not None and engine_a.lost and isinstance(engine_a.aborted, DeviceLost)
        assert reg.status(reg.hosted["a"])["error"].startswith("the RPC server h1:50052")
        with pytest.raises(DeviceLost, match="h1:50052"):
            await reg.acquire("a")
        with pytest.raises(DeviceLost):
            await reg.load("a")  # not again in this process
        for name in "bcd":  # another server's model, a CPU model, and one on the CPU alone (-ngl 0)
            (await reg.acquire(name)).release()
        # the failing server not known: every model on an RPC server is lost
        assert reg.device_lost("an RPC server failed", []) == ["b"]
        FakeEngine.holders = []
        nursery.cancel_scope.cancel()
    assert "close a" not in loader.log  # a lost engine is never freed: its thread is stuck in native code
