"""Resumable streams: the bytes of a streamed answer kept by conversation id, so a client that
lost its connection (a page reload) can read the answer again from any offset while it is still
being written, and stop it (llama-server's `X-Conversation-Id`, `GET/DELETE /v1/stream`).

One conversation id has at most one live session: a new request with the same id stops and
replaces the old one. A session keeps the last MAX_BYTES of its stream (an offset before that is
lost) and is forgotten TTL_SECONDS after it ended. The generations behind the sessions run in
this store's nursery, not in their requests' tasks, so a client leaving does not end them; a
DELETE (or a newer request with the same id, or the server shutting down) does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import trio

MAX_BYTES = 4 * 1024 * 1024
TTL_SECONDS = 300.0
GC_SECONDS = 60.0


@dataclass(eq=False)
class StreamSession:
    conversation_id: str
    started_at: float = field(default_factory=time.time)
    completed_at: float | None = None
    streaming: bool = False  # the answer is an event stream (before that: waiting for its model)
    dropped: int = 0  # bytes dropped from the front (beyond MAX_BYTES)
    buffer: bytearray = field(default_factory=bytearray)
    scope: trio.CancelScope | None = None  # the generation's, once it runs
    cancelled: bool = False
    _changed: trio.Event = field(default_factory=trio.Event)

    @property
    def done(self) -> bool:
        return self.completed_at is not None

    @property
    def total(self) -> int:
        return self.dropped + len(self.buffer)

    def append(self, data: bytes) -> None:
        self.buffer += data
        over = len(self.buffer) - MAX_BYTES
        if over > 0:
            del self.buffer[:over]
            self.dropped += over
        self._wake()

    def finish(self) -> None:
        if self.completed_at is None:
            self.completed_at = time.time()
        self._wake()

    def cancel(self) -> None:
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()
        self.finish()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def read(self, offset: int) -> bytes:
        """What follows `offset` now (b"" when nothing yet). The caller checks lost offsets."""
        return bytes(self.buffer[offset - self.dropped:])

    async def wait_past(self, offset: int) -> None:
        """Until there is more than `offset` bytes, or the stream ended."""
        while self.total <= offset and not self.done:
            await self._changed.wait()

    def describe(self) -> dict[str, object]:
        return {"conversation_id": self.conversation_id, "is_done": self.done, "total_bytes": self.total,
                "started_at": int(self.started_at),
                "completed_at": int(self.completed_at) if self.completed_at is not None else None}


class StreamStore:
    def __init__(self) -> None:
        self._sessions: dict[str, StreamSession] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the generations of the live sessions; forget ended sessions after TTL_SECONDS."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(GC_SECONDS)
                self.collect(time.time())

    def collect(self, now: float) -> None:
        for cid, s in list(self._sessions.items()):
            if s.completed_at is not None and now - s.completed_at > TTL_SECONDS:
                del self._sessions[cid]

    @property
    def nursery(self) -> trio.Nursery | None:
        return self._nursery

    def open(self, conversation_id: str) -> StreamSession:
        """A new session for the id, stopping and replacing any earlier one."""
        old = self._sessions.pop(conversation_id, None)
        if old is not None:
            old.cancel()
        session = self._sessions[conversation_id] = StreamSession(conversation_id)
        return session

    def get(self, conversation_id: str) -> StreamSession | None:
        return self._sessions.get(conversation_id)

    def forget(self, session: StreamSession) -> None:
        """Drop a session that is not a stream after all (the request failed before streaming)."""
        if self._sessions.get(session.conversation_id) is session:
            del self._sessions[session.conversation_id]

    def stop(self, conversation_id: str) -> None:
        """DELETE: end the generation and forget the session (nothing to stop is fine)."""
        session = self._sessions.pop(conversation_id, None)
        if session is not None:
            session.cancel()

    def lookup(self, ids: list[str]) -> list[StreamSession]:
        """The sessions of these ids, and of `<id>::<model>` variants; never any other."""
        out = []
        for rid in ids:
            out += [s for cid, s in self._sessions.items() if cid == rid or cid.startswith(rid + "::")]
        return out
