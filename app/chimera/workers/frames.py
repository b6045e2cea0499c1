"""The worker side of the pipe protocol.

A worker is the same executable started with a hidden subcommand (`chimera _audio-worker ...`,
`chimera _sd-worker ...`), frozen or not. Frames in both directions are a 4-byte little-endian
length and a body. A request is a JSON frame followed by a frame of raw bytes (the uploaded file).
Replies are JSON frames, each with a `type`: any number of `event` frames (progress, a decoded
segment), then exactly one `result` or `error` frame. The first frame a worker writes is `ready`.

Native code that prints to stdout would corrupt the protocol, so `open_protocol` keeps the real
stdout for frames and points fd 1 at stderr before any engine is loaded.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO


class WorkerInputError(Exception):
    """Bad input found inside the worker (undecodable media, out of bounds): a 4xx, not a crash."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


def read_frame(fh: BinaryIO) -> bytes | None:
    head = fh.read(4)
    if len(head) < 4:
        return None
    (n,) = struct.unpack("<I", head)
    return fh.read(n)


def write_frame(fh: BinaryIO, body: bytes) -> None:
    fh.write(struct.pack("<I", len(body)) + body)
    fh.flush()


class Protocol:
    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)  # anything native code prints goes to stderr, not into the protocol
        sys.stdout = sys.stderr
        self._in = sys.stdin.buffer

    def send(self, obj: dict[str, Any]) -> None:
        write_frame(self._out, json.dumps(obj).encode())

    def event(self, **fields: Any) -> None:
        self.send({"type": "event", **fields})

    def requests(self) -> Iterator[tuple[dict[str, Any], bytes]]:
        while True:
            head = read_frame(self._in)
            if head is None:
                return
            data = read_frame(self._in) or b""
            yield json.loads(head), data


def serve(handler: Callable[[Protocol, dict[str, Any], bytes], dict[str, Any]], ready: dict[str, Any],
          proto: Protocol) -> int:
    """Answer requests until stdin closes. `handler` may call `proto.event(...)` while it works."""
    proto.send({"type": "ready", **ready})
    for req, data in proto.requests():
        try:
            result = handler(proto, req, data)
        except WorkerInputError as e:
            proto.send({"type": "error", "message": str(e), "status": e.status, "param": e.param})
            continue
        proto.send({"type": "result", **result})
    return 0
