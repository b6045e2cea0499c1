"""A request's hold on its model, from before generation until its response has ended.

Plain responses release in the handler (`using`); a streamed body releases when it ends, when
Quart closes it, or, if the client left before the body ever started, when the response is
dropped (`Streamed`), so an unloaded-on-idle model never waits for a lease nobody holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from ..llm.engine import Engine
from ..registry.registry import Lease
from ..services import Services


async def lease(s: Services, name: str | None, keep_alive: float | None = None) -> Lease:
    return await s.require_models().acquire(name, keep_alive)


@asynccontextmanager
async def using(s: Services, name: str | None) -> AsyncIterator[Engine]:
    """The named model's engine for the length of a plain (not streamed) response."""
    held = await lease(s, name)
    try:
        yield held.engine
    finally:
        held.release()


class Streamed:
    """A response body that holds its model until it has been sent (or will never be)."""

    def __init__(self, body: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        self.body = body
        self.release = release

    def __aiter__(self) -> Streamed:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.body.__anext__()
        except BaseException:
            self.release()
            raise

    async def aclose(self) -> None:
        try:
            closer: Any = getattr(self.body, "aclose", None)
            if closer is not None:
                await closer()
        finally:
            self.release()

    def __del__(self) -> None:  # the client left before the body started
        self.release()
