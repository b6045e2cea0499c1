"""What every chat dialect does around the serving core: check the saved-chat header, prepare
the turn on the server's engine, and start it with a saver for --persist-chats."""

from __future__ import annotations

from typing import Any

from ..services import Services
from ..serving.run import ChatRun
from ..serving.turn import ChatTurn, Prepared, prepare
from .chats import HEADER, chat_id_for_request, persist


def prepare_turn(s: Services, turn: ChatTurn) -> Prepared:
    settings = s.settings
    return prepare(s.require_engine(), turn, settings.reasoning_budget == 0, settings.reasoning_format)


async def start_turn(s: Services, turn: ChatTurn) -> tuple[ChatRun, dict[str, str]]:
    """The running turn, and the response headers that name its saved chat."""
    engine = s.require_engine()
    chat_id = await chat_id_for_request(s)  # checked before any generation
    prepared = prepare_turn(s, turn)

    async def save(reply: dict[str, Any]) -> None:
        await persist(s, chat_id, prepared.history, reply)

    run = await ChatRun.start(engine, turn, prepared, allow_remote_media=s.settings.allow_remote_media,
                              saver=save if chat_id else None)
    return run, ({HEADER: chat_id} if chat_id else {})
