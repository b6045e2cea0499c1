"""Supervised audio worker processes, run from the trio nursery.

Each worker is `chimera _audio-worker` with one whisper context. Requests queue FIFO for the
next idle worker. A worker that dies (a native abort) answers its request with a 500 quoting the
last line it wrote to stderr, and is replaced; the server keeps serving.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import struct
import subprocess
from typing import Any

import trio

from ..errors import BadRequest, ChimeraError, PayloadTooLarge
from ..info import self_command

log = logging.getLogger("chimera.audio")


class WorkerDied(ChimeraError):
    pass


class Worker:
    def __init__(self, argv: list[str], index: int) -> None:
        self.argv = argv
        self.index = index
        self.proc: trio.Process | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.info: dict[str, Any] = {}
        self._buf = b""

    async def start(self, nursery: trio.Nursery) -> None:
        self.proc = await trio.lowlevel.open_process(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                     stderr=subprocess.PIPE)
        self._buf = b""
        nursery.start_soon(self._drain_stderr, self.proc)
        ready = await self._read_frame()
        self.info = json.loads(ready)

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
                    log.debug("worker %d: %s", self.index, text)

    async def _died(self) -> WorkerDied:
        """The worker is gone: wait for it, and quote its last native error line."""
        assert self.proc is not None
        await self.proc.wait()
        await trio.sleep(0.05)  # let the stderr reader take the last lines
        line = next((ln for ln in reversed(self.stderr_tail) if "assert" in ln.lower() or "error" in ln.lower()),
                    self.stderr_tail[-1] if self.stderr_tail else f"exit status {self.proc.returncode}")
        return WorkerDied(f"the audio worker crashed: {line}")

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

    async def call(self, header: dict[str, Any], data: bytes) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        body = json.dumps(header).encode()
        try:
            await self.proc.stdin.send_all(struct.pack("<I", len(body)) + body + struct.pack("<I", len(data)) + data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise await self._died() from None
        return dict(json.loads(await self._read_frame()))


class AudioPool:
    def __init__(self, model_path: str, workers: int, threads: int, max_seconds: float) -> None:
        self.model_path = model_path
        self.n = workers
        self.threads = threads
        self.max_seconds = max_seconds
        self.multilingual = True
        self._idle_send, self._idle_recv = trio.open_memory_channel[Worker](math.inf)
        self._nursery: trio.Nursery | None = None
        self.restarts = 0

    def _argv(self) -> list[str]:
        return [*self_command(), "_audio-worker", self.model_path, str(self.threads)]

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for i in range(self.n):
                w = Worker(self._argv(), i)
                await w.start(nursery)
                self.multilingual = bool(w.info.get("multilingual", True))
                self._idle_send.send_nowait(w)
            log.info("%d audio worker(s) ready (%s)", self.n, self.model_path)
            task_status.started()
            await trio.sleep_forever()

    async def request(self, header: dict[str, Any], data: bytes) -> dict[str, Any]:
        if header.get("translate") and not self.multilingual:
            raise BadRequest("this whisper model is English-only: it cannot translate (load a multilingual model)",
                             param="model")
        w = await self._idle_recv.receive()  # FIFO over waiting requests
        try:
            reply = await w.call(header | {"max_seconds": self.max_seconds}, data)
        except WorkerDied:
            self.restarts += 1
            log.error("audio worker %d crashed; restarting it", w.index)
            assert self._nursery is not None
            fresh = Worker(self._argv(), w.index)
            await fresh.start(self._nursery)
            self._idle_send.send_nowait(fresh)
            raise
        except BaseException:
            # cancelled mid-request: the worker's state is unknown, replace it
            if w.proc is not None:
                w.proc.kill()
            assert self._nursery is not None
            self._nursery.start_soon(self._replace, w)
            raise
        self._idle_send.send_nowait(w)
        if "error" in reply:
            if reply.get("status") == 413:
                raise PayloadTooLarge(reply["error"])
            raise BadRequest(reply["error"], param="file")
        return reply

    async def _replace(self, w: Worker) -> None:
        assert self._nursery is not None
        fresh = Worker(self._argv(), w.index)
        await fresh.start(self._nursery)
        self._idle_send.send_nowait(fresh)
