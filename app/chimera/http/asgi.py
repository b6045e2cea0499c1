"""ConnectionGuard: ASGI middleware between hypercorn and the Quart app, for what a connection
carries around a request.

- **The end of a response is never cancelled.** Quart-trio cancels a request's tasks as soon as
  the client side reports the exchange over, which can land inside hypercorn's work after the
  last body message: closing a `Connection: close` / HTTP/1.0 connection, or re-arming the
  keep-alive timer. A cancelled close leaves the socket open until the client gives up, so the
  last send runs shielded.
- **Early answers drain the body.** A response given before the request body was read (413 for
  a too-large body, 401 before an upload, any error raised first) waits, before its last
  message, until the rest of the body has arrived and been discarded (Quart's body reader keeps
  reading and drops what is over `--max-body-size`), up to `drain_bytes` more bytes and
  `drain_seconds`. Then a client that writes its whole body before reading (most do) gets the
  answer, and a kept-alive connection is clean for its next request. When the announced body is
  larger than the drain allowance, the answer says `Connection: close` and the connection is
  closed after it instead.
- **Header names in their usual case on HTTP/1.x.** Quart lowercases response header names;
  they go out as `Content-Type`, `Access-Control-Allow-Origin`, `Process-Start-Time-Unix`, as
  llama-server and most servers send them (names are case-insensitive, but scripts that read a
  response's headers into a plain dict look them up as written). HTTP/2 keeps them lowercase, as
  it requires.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

Message = Any  # ASGI events (TypedDicts in hypercorn.typing, read here by key)
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Exchange:
    """What the guard knows of one request's body while the app answers it."""

    def __init__(self, scope: dict[str, Any], drain_bytes: int) -> None:
        self.received = 0
        self.length = _content_length(scope)
        self.complete = trio.Event()  # the body is all in (or the client left)
        self.drain_bytes = drain_bytes
        self.received_at_answer: int | None = None
        self.closing = False  # answered with Connection: close: nothing to drain

    def note(self, message: Message) -> None:
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete.set()
        elif message["type"] == "http.disconnect":
            self.complete.set()
        if self.received_at_answer is not None and self.received - self.received_at_answer > self.drain_bytes:
            self.complete.set()  # over the allowance: stop waiting, the connection closes instead

    def too_much_left(self) -> bool:
        return self.length is not None and self.length - self.received > self.drain_bytes


def _usual_case(name: bytes) -> bytes:
    return b"-".join(part[:1].upper() + part[1:] for part in name.split(b"-"))


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class ConnectionGuard:
    def __init__(self, app: Any, *, drain_bytes: int, drain_seconds: float) -> None:
        self.app = app
        self.drain_bytes = drain_bytes
        self.drain_seconds = drain_seconds

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ex = _Exchange(scope, self.drain_bytes)
        http1 = scope.get("http_version", "1.1") in ("1.0", "1.1")

        async def guarded_receive() -> Message:
            message = await receive()
            ex.note(message)
            return message

        async def guarded_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start" and http1:
                message = {**message, "headers": [(_usual_case(n), v) for n, v in message.get("headers", [])]}
            if kind == "http.response.start" and not ex.complete.is_set():
                ex.received_at_answer = ex.received
                if ex.too_much_left():
                    ex.closing = True
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            if kind == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    if not ex.complete.is_set() and not ex.closing:
                        if ex.received_at_answer is None:
                            ex.received_at_answer = ex.received
                        with trio.move_on_after(self.drain_seconds):
                            await ex.complete.wait()
                    await send(message)
                return
            await send(message)

        await self.app(scope, guarded_receive, guarded_send)
