"""Resumable streams' routes: `GET /v1/stream?conv_id=&from=` replays a conversation's stream
from a byte offset and follows it live, `DELETE /v1/stream?conv_id=` stops it,
`POST /v1/streams/lookup` says which of the given conversations have one (http/resumable.py
keeps them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from quart import Blueprint, Response, request

from ..errors import BadRequest, Loading, NotFound
from ..serving.stream_store import StreamSession
from .common import json_object, json_response, services, sse_response

blueprint = Blueprint("streams", __name__)


def _conv_id() -> str:
    cid = request.args.get("conv_id", "")
    if not cid:
        raise BadRequest("give the conversation as ?conv_id=", param="conv_id")
    return cid


async def _follow(session: StreamSession, offset: int) -> AsyncIterator[bytes]:
    while True:
        await session.wait_past(offset)
        if offset < session.dropped:  # the front went while this reader was slow
            return
        chunk = session.read(offset)
        if chunk:
            offset += len(chunk)
            yield chunk
        elif session.done:
            return


@blueprint.get("/v1/stream")
async def replay() -> Response:
    session = services().streams.get(_conv_id())
    if session is None:
        raise NotFound("Stream not found or expired")
    try:
        offset = int(request.args.get("from", "0"))
        if offset < 0:
            raise ValueError
    except ValueError:
        raise BadRequest("Invalid 'from' offset", param="from") from None
    if not session.streaming:
        if session.done:
            raise NotFound("Stream not found or expired")
        raise Loading()  # its request waits for its model: 503, retry shortly
    if offset < session.dropped:
        raise BadRequest("Stream offset lost, please restart", param="from")
    return sse_response(_follow(session, offset))


@blueprint.delete("/v1/stream")
async def stop() -> Response:
    services().streams.stop(_conv_id())
    return Response(b"", status=204)


@blueprint.post("/v1/streams/lookup")
async def lookup() -> Response:
    body = await json_object()
    ids = body.get("conversation_ids", [])
    if not isinstance(ids, list):
        raise BadRequest("conversation_ids must be a list of strings", param="conversation_ids")
    wanted = [i for i in ids if isinstance(i, str) and i]
    return json_response([s.describe() for s in services().streams.lookup(wanted)])
