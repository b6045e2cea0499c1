"""Engine thread → trio thread hand-off that costs the engine thread no GIL round trip.

trio's `run_sync_soon` wakes the trio loop with a socket send, which releases the GIL; the woken
trio thread takes it, and the engine thread then waits for it back (up to the switch interval)
before it can start its next decode. Here the engine thread queues callbacks in a deque and
rings with a libc `write` made through `ctypes.PyDLL`, which keeps the GIL: the trio thread
wakes, waits for the GIL until the engine thread enters `llama_decode` (which releases it), and
runs the callbacks while the decode computes.
"""

from __future__ import annotations

import collections
import ctypes
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import trio


class Doorbell:
    def __init__(self) -> None:
        self.queue: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = collections.deque()
        self._pending = False
        if sys.platform != "win32":
            self._r, self._w = os.pipe()
            os.set_blocking(self._r, False)
            os.set_blocking(self._w, False)
            write = ctypes.PyDLL(None).write
            write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
            write.restype = ctypes.c_ssize_t
            fd = self._w
            self._ring = lambda: write(fd, b"\x00", 1)
            self._wait = lambda: trio.lowlevel.wait_readable(self._r)
            self._drain = lambda: os.read(self._r, 4096)
        else:  # Windows: trio waits on sockets only
            self._rs, self._ws = socket.socketpair()
            self._rs.setblocking(False)
            self._ws.setblocking(False)
            self._ring = lambda: self._ws.send(b"\x00")
            self._wait = lambda: trio.lowlevel.wait_readable(self._rs)
            self._drain = lambda: self._rs.recv(4096)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Engine thread: have `fn(*args)` run on the trio thread."""
        self.queue.append((fn, args))
        if not self._pending:
            self._pending = True
            try:
                self._ring()
            except (BlockingIOError, OSError):
                pass  # the pipe is full: the trio side has wake-ups pending already

    def close(self) -> None:
        """Close the pipe (or socket pair); only once `serve` has stopped and nothing rings."""
        if sys.platform != "win32":
            for fd in (self._r, self._w):
                os.close(fd)
        else:
            self._rs.close()
            self._ws.close()

    async def serve(self) -> None:
        """Trio thread: run queued callbacks as they arrive, forever."""
        while True:
            await self._wait()
            try:
                self._drain()
            except (BlockingIOError, OSError):
                pass
            self._pending = False
            while self.queue:
                fn, args = self.queue.popleft()
                fn(*args)
