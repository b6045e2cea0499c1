"""What every chat dialect does around the serving core: check the saved-chat header, take a
lease on the request's model, prepare the turn on its engine, and start it with a saver for
--persist-chats. The lease is released when the run ends."""

from __future__ import annotations

from typing import Any

from ..llm.engine import Engine
from ..services import Services
from ..serving.run import ChatRun
from ..serving.turn import ChatTurn, Prepared, prepare
from .chats import HEADER, chat_id_for_request, persist
from .leases import lease, using


def prepare_on(s: Services, engine: Engine, turn: ChatTurn) -> Prepared:
    settings = s.settings
    return prepare(engine, turn, settings.thinking(), settings.reasoning_format)


async def start_turn(s: Services, turn: ChatTurn, model: str | None,
                     keep_alive: float | None = None) -> tuple[ChatRun, dict[str, str]]:
    """The running turn on the model the request names, and the response headers that name its
    saved chat."""
    chat_id = await chat_id_for_request(s)  # checked before any generation
    held = await lease(s, model, keep_alive)
    try:
        prepared = prepare_on(s, held.engine, turn)

        async def save(reply: dict[str, Any]) -> None:
            await persist(s, chat_id, held.model_id, prepared.history, reply)

        run = await ChatRun.start(held.engine, turn, prepared, media=s.media_sources,
                                  saver=save if chat_id else None, model_id=held.model_id, on_end=held.release)
    except BaseException:
        held.release()
        raise
    run.load_seconds = held.waited
    return run, ({HEADER: chat_id} if chat_id else {})


async def count_turn_tokens(s: Services, turn: ChatTurn, model: str | None) -> int:
    """The prompt tokens a turn would take on the model it names (its template, tools and media
    as generation would render them); nothing is generated."""
    async with using(s, model) as engine:
        prepared = prepare_on(s, engine, turn)
        if not prepared.media:
            return len(engine.tokenize_prompt(prepared.text))
        run = await ChatRun.start(engine, turn, prepared, media=s.media_sources)
        run.close()  # the media counted as the projector tokenizes them
        return run.prompt_tokens
