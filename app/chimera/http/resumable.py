"""ResumableStreams: ASGI middleware that keeps a streamed answer going after its client left,
for requests that carry `X-Conversation-Id` (llama-server's resumable streams).

Such a request runs in the stream store's nursery instead of the connection's task: the app
reads the request body from the connection and then never hears of a disconnect; what it sends
goes to the client while the client is there and, when it is an event stream, into the
conversation's session too, where `GET /v1/stream?conv_id=` reads it again from any offset.
While the request waits for its model the session is pending (the GET answers 503); a DELETE
then cancels the request, which answers 400 "cancelled" if nothing was sent yet. An answer that
is not an event stream (an error, a non-streamed reply) goes to the client only and its session
is forgotten.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import trio

from ..serving.stream_store import StreamSession, StreamStore
from .asgi import Message, Receive, Send

HEADER = b"x-conversation-id"
log = logging.getLogger("chimera.http")


def conversation_id(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == HEADER:
            cid = value.decode("latin-1").strip()
            return cid or None
    return None


def _answer(status: int, message: str, kind: str) -> list[Message]:
    body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
    return [{"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]},
            {"type": "http.response.body", "body": body, "more_body": False}]


class ResumableStreams:
    def __init__(self, app: Any, store: StreamStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        cid = conversation_id(scope) if scope["type"] == "http" and scope.get("method") == "POST" else None
        if cid is None or self.store.nursery is None:
            await self.app(scope, receive, send)
            return
        session = self.store.open(cid)
        to_client, from_app = trio.open_memory_channel[Message](math.inf)
        await self.store.nursery.start(self._produce, scope, receive, session, to_client)
        async with from_app:
            async for message in from_app:
                try:
                    await send(message)
                except Exception:  # noqa: BLE001 - the client left; the answer goes on into the session
                    return

    async def _produce(self, scope: Any, receive: Receive, session: StreamSession,
                       to_client: trio.MemorySendChannel[Message], *,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        body_read = False
        started = False
        ended = False

        async def app_receive() -> Message:
            nonlocal body_read
            if body_read:  # the client may leave now: the app does not hear of it
                await trio.sleep_forever()
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read = True
            return message

        async def tee_send(message: Message) -> None:
            nonlocal started, ended
            if message["type"] == "http.response.start":
                started = True
                ctype = dict((k.lower(), v) for k, v in message.get("headers", [])).get(b"content-type", b"")
                session.streaming = message.get("status") == 200 and ctype.startswith(b"text/event-stream")
                if not session.streaming:
                    self.store.forget(session)
            elif message["type"] == "http.response.body":
                if session.streaming and message.get("body"):
                    session.append(message["body"])
                ended = not message.get("more_body", False)
            try:
                to_client.send_nowait(message)  # unbounded: a slow client never holds the generation
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client is gone: the session keeps the stream

        with to_client, trio.CancelScope() as scope_:
            session.scope = scope_
            task_status.started()
            try:
                await self.app(scope, app_receive, tee_send)
            except Exception:  # noqa: BLE001 - never into the store's nursery (it would end the server)
                log.exception("request of conversation %s failed", session.conversation_id)
            finally:
                session.finish()
                last: list[Message] = []
                if not started:
                    self.store.forget(session)
                    last = (_answer(400, "the request was cancelled (DELETE /v1/stream)", "invalid_request_error")
                            if session.cancelled else _answer(500, "internal server error; see the server log", "api_error"))
                elif not ended:  # stopped mid-stream: end the body the client is reading
                    last = [{"type": "http.response.body", "body": b"", "more_body": False}]
                for message in last:
                    try:
                        to_client.send_nowait(message)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        break
