"""Saved chats (--persist-chats): the hook the chat route calls, and the read API."""

from __future__ import annotations

import logging
from typing import Any

import trio
from quart import Blueprint, Response, request

from ..errors import BadRequest, NotEnabled
from ..protocol.forms import UpdateChat
from ..services import Services
from ..store.chats import ChatStore, new_chat_id, to_markdown
from .advice import CHAT_HEADER
from .common import json_object, json_response, parse_model, services

log = logging.getLogger("chimera.chats")
blueprint = Blueprint("chats", __name__)
HEADER = CHAT_HEADER


async def chat_id_for_request(s: Services) -> str | None:
    """The chat this exchange belongs to (validated before any generation), or None."""
    given = request.headers.get(HEADER)
    if s.chats is None:
        if given is not None:
            raise NotEnabled(f"{HEADER} needs saved chats", feature="saved-chats")
        return None
    if given is None:
        return new_chat_id()
    await s.chats.check_chat(given.strip())
    return given.strip()


async def persist(s: Services, chat_id: str | None, model: str, messages: list[dict[str, Any]], reply: dict[str, Any]) -> None:
    """Save one exchange; a failing store is logged and counted, never raised to the client."""
    if s.chats is None or chat_id is None:
        return
    try:
        with trio.CancelScope(shield=True), trio.move_on_after(30):
            await s.chats.save_exchange(chat_id, model, messages, reply)
            s.metrics.persisted.inc()
            return
        raise TimeoutError("saving took longer than 30 s")
    except Exception as e:  # noqa: BLE001 - persistence never breaks a response
        s.metrics.persist_errors.inc()
        log.error("could not save chat %s: %s", chat_id, e)


def _store() -> ChatStore:
    s = services()
    if s.chats is None:
        raise NotEnabled("saved chats are off", feature="saved-chats")
    return s.chats


@blueprint.get("/v1/chimera/chats")
async def list_chats() -> Response:
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError:
        raise BadRequest("'limit' must be an integer", param="limit") from None
    if not 1 <= limit <= 100:
        raise BadRequest("'limit' must be 1..100", param="limit")
    # a page's `next_cursor` goes back as `cursor` (`after` is the older name, still accepted)
    cursor = request.args.get("cursor", request.args.get("after"))
    return json_response(await _store().list_chats(limit, cursor, request.args.get("q")))


@blueprint.get("/v1/chimera/chats/<chat_id>")
async def get_chat(chat_id: str) -> Response:
    return json_response(await _store().get_chat(chat_id))


@blueprint.delete("/v1/chimera/chats/<chat_id>")
async def delete_chat(chat_id: str) -> Response:
    await _store().delete_chat(chat_id)
    return json_response({"id": chat_id, "object": "chat", "deleted": True})


@blueprint.patch("/v1/chimera/chats/<chat_id>")
async def update_chat(chat_id: str) -> Response:
    req = parse_model(UpdateChat, await json_object())
    if req.title is None and req.keep_messages is None:
        raise BadRequest("send 'title' and/or 'keep_messages'")
    return json_response(await _store().update_chat(chat_id, req.title, req.keep_messages))


@blueprint.get("/v1/chimera/chats/<chat_id>/export")
async def export_chat(chat_id: str) -> Response:
    fmt = request.args.get("format", "json")
    chat = await _store().get_chat(chat_id)
    if fmt == "json":
        return json_response(chat, headers={"Content-Disposition": f'attachment; filename="{chat_id}.json"'})
    if fmt == "markdown":
        resp = Response(to_markdown(chat), content_type="text/markdown; charset=utf-8")
        resp.headers["Content-Disposition"] = f'attachment; filename="{chat_id}.md"'
        return resp
    raise BadRequest("'format' must be json or markdown", param="format")


@blueprint.get("/v1/chimera/db")
async def db_status() -> Response:
    return json_response(await _store().status())
