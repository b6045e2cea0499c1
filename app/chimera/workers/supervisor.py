"""Supervised worker processes, run from the trio nursery.

A `WorkerPool` starts N workers (see `frames.py` for the protocol). Requests wait FIFO for the next
idle worker, so they are served fairly in arrival order across all workers. A worker that dies (a
native abort) answers its request with a 500 quoting the last native error line it wrote to stderr
and is replaced; the server keeps serving. A request cancelled mid-way (client gone, shutdown)
kills its worker, whose state is then unknown, and a fresh one takes its place.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import struct
import subprocess
from collections.abc import AsyncGenerator, Callable
from typing import Any

import trio

from ..errors import BadRequest, ChimeraError, PayloadTooLarge, UnsupportedMediaType

log = logging.getLogger("chimera.workers")

_STATUS = {400: BadRequest, 413: PayloadTooLarge, 415: UnsupportedMediaType}


class WorkerDied(ChimeraError):
    pass


class StartupFailed(ChimeraError):
    pass


class Worker:
    def __init__(self, label: str, argv: list[str], index: int) -> None:
        self.label = label
        self.argv = argv
        self.index = index
        self.proc: trio.Process | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.info: dict[str, Any] = {}
        self._buf = b""

    async def start(self, nursery: trio.Nursery) -> None:
        self.proc = await trio.lowlevel.open_process(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                     stderr=subprocess.PIPE)
        self._buf = b""
        nursery.start_soon(self._drain_stderr, self.proc)
        try:
            ready = json.loads(await self._read_frame())
        except WorkerDied as e:
            raise StartupFailed(str(e).replace("crashed", "failed to start")) from None
        if ready.get("type") != "ready":
            await trio.sleep(0.05)  # let the stderr reader take the native lines written before it
            native = self.native_error_line() if self.stderr_tail else ""
            detail = f" ({native})" if native and native not in str(ready.get("message")) else ""
            raise StartupFailed(f"the {self.label} worker failed to start: {ready.get('message', ready)}{detail}")
        self.info = ready

    async def _drain_stderr(self, proc: trio.Process) -> None:
        assert proc.stderr is not None
        pending = b""
        async for chunk in proc.stderr:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace").rstrip()
                if text:
                    self.stderr_tail.append(text)
                    log.debug("%s worker %d: %s", self.label, self.index, text)

    def native_error_line(self) -> str:
        for ln in reversed(self.stderr_tail):
            low = ln.lower()
            if "assert" in low or "error" in low or "abort" in low:
                return ln
        if self.stderr_tail:
            return self.stderr_tail[-1]
        return f"exit status {self.proc.returncode if self.proc else '?'}"

    async def _died(self) -> WorkerDied:
        """The worker is gone: wait for it, and quote its last native error line."""
        assert self.proc is not None
        await self.proc.wait()
        await trio.sleep(0.05)  # let the stderr reader take the last lines
        return WorkerDied(f"the {self.label} worker crashed: {self.native_error_line()}")

    async def _read_exact(self, n: int) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        while len(self._buf) < n:
            chunk = await self.proc.stdout.receive_some(1 << 16)
            if not chunk:
                raise await self._died()
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    async def _read_frame(self) -> bytes:
        (n,) = struct.unpack("<I", await self._read_exact(4))
        return await self._read_exact(n)

    async def send(self, header: dict[str, Any], data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        body = json.dumps(header).encode()
        try:
            await self.proc.stdin.send_all(struct.pack("<I", len(body)) + body + struct.pack("<I", len(data)) + data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise await self._died() from None

    async def receive(self) -> dict[str, Any]:
        return dict(json.loads(await self._read_frame()))

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


class WorkerPool:
    """N supervised workers of one kind. `argv(index)` gives each worker's command line."""

    def __init__(self, label: str, argv: Callable[[int], list[str]], workers: int) -> None:
        self.label = label
        self._argv = argv
        self.n = workers
        self.info: dict[str, Any] = {}
        self.restarts = 0
        self._idle_send, self._idle_recv = trio.open_memory_channel[Worker](math.inf)
        self._nursery: trio.Nursery | None = None
        self._workers: dict[int, Worker] = {}

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for i in range(self.n):
                    w = Worker(self.label, self._argv(i), i)
                    self._workers[i] = w
                    await w.start(nursery)
                    self.info = w.info
                    self._idle_send.send_nowait(w)
                log.info("%d %s worker(s) ready", self.n, self.label)
                task_status.started()
                await trio.sleep_forever()
        finally:
            # the pool is done (shutdown, or a start-up check that is over): its workers go with it
            for w in self._workers.values():
                w.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                for w in self._workers.values():
                    if w.proc is not None:
                        await w.proc.wait()

    async def _replace(self, w: Worker) -> None:
        assert self._nursery is not None
        fresh = Worker(self.label, self._argv(w.index), w.index)
        self._workers[w.index] = fresh
        try:
            await fresh.start(self._nursery)
        except StartupFailed:
            log.exception("%s worker %d could not be restarted", self.label, w.index)
            raise
        self._idle_send.send_nowait(fresh)

    def prepare(self, header: dict[str, Any]) -> dict[str, Any]:
        """Check and complete a request header before it waits for a worker (subclasses)."""
        return header

    async def stream(self, header: dict[str, Any], data: bytes) -> AsyncGenerator[dict[str, Any], None]:
        """Yield the worker's `event` frames as they come, then its `result` frame.

        Consume it inside `contextlib.aclosing` so that a consumer that stops early (a client
        that disconnects) releases the worker at once.
        """
        header = self.prepare(header)
        w = await self._idle_recv.receive()  # FIFO over waiting requests
        done = False
        try:
            await w.send(header, data)
            while True:
                frame = await w.receive()
                kind = frame.pop("type", None)
                if kind == "event":
                    yield frame
                    continue
                done = True
                self._idle_send.send_nowait(w)  # the worker answered: it is free for the next request
                if kind == "error":
                    cls = _STATUS.get(int(frame.get("status", 400)), BadRequest)
                    raise cls(frame.get("message", "bad input"), param=frame.get("param"))
                yield frame
                return
        except WorkerDied:
            done = True
            self.restarts += 1
            log.error("%s worker %d crashed; restarting it", self.label, w.index)
            await self._replace(w)
            raise
        finally:
            if not done:
                # cancelled or abandoned mid-request: the worker's state is unknown, replace it
                w.kill()
                assert self._nursery is not None
                self._nursery.start_soon(self._replace, w)

    async def request(self, header: dict[str, Any], data: bytes) -> dict[str, Any]:
        result: dict[str, Any] = {}
        async for frame in self.stream(header, data):
            result = frame
        return result
