"""Every configured MCP server, and their tools as /tools lists them (`<server>_<tool>`).

At start-up each server is spawned and asked for its tools, all at once, each within
WARMUP_SECONDS; one that cannot start or answer is left out with a warning (the others, and the
server, go on). The servers that answered keep running. A call finds its server's session, or
starts a new one when the last one died (a crash is one failed call, not a dead tool); a command
that cannot be started is not tried again for COOLDOWN_SECONDS. Each call has its server's
`timeout_ms`; at shutdown, calls in flight end at once with "cancelled".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from .base import Bound, Context, Json, Tool
from .flags import McpServerConfig
from .mcp import McpSession, McpToolDef, RpcFailed

log = logging.getLogger("chimera.tools")

WARMUP_SECONDS = 10.0
COOLDOWN_SECONDS = 5.0


class McpServers:
    def __init__(self, configs: list[McpServerConfig], version: str = "0") -> None:
        self.configs = {c.name: c for c in configs}
        self.version = version
        self.tools: list[McpToolDef] = []  # what the warm-up found, in the configs' order
        self._sessions: dict[str, McpSession] = {}
        self._locks = {name: trio.Lock() for name in self.configs}
        self._cooldown: dict[str, float] = {}
        self._nursery: trio.Nursery | None = None
        self._stopping = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Warm every server up, report started, then hold their sessions until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                found: dict[str, list[McpToolDef]] = {}
                async with trio.open_nursery() as warmups:
                    for name in self.configs:
                        warmups.start_soon(self._warm_up, name, found)
                self.tools = [t for name in self.configs for t in found.get(name, [])]
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._stopping = True
            self._nursery = None

    async def _warm_up(self, name: str, found: dict[str, list[McpToolDef]]) -> None:
        session = await self._session(name)
        if session is None:
            return
        try:
            found[name] = await session.list_tools(trio.current_time() + WARMUP_SECONDS)
            log.info("MCP server %r: %d tools", name, len(found[name]))
        except RpcFailed as e:
            tail = session.stderr_tail.strip()
            log.warning("MCP server %r left out: %s%s", name, e, f"; last stderr: {tail}" if tail else "")
            session.close()

    def stop(self) -> None:
        """No new sessions from now on (the server is shutting down)."""
        self._stopping = True

    async def _session(self, name: str) -> McpSession | None:
        """The server's live session, started anew if it died; None while it cools down."""
        async with self._locks[name]:
            if self._stopping or self._nursery is None:
                return None
            if trio.current_time() < self._cooldown.get(name, 0.0):
                return None
            session = self._sessions.get(name)
            if session is not None and session.alive:
                return session
            if session is not None:
                log.warning("MCP server %r is no longer running: starting it again", name)
            session = McpSession(self.configs[name], version=self.version)
            try:
                await self._nursery.start(session.run)
            except OSError as e:
                log.warning("MCP server %r: cannot start %r: %s", name, self.configs[name].command, e.strerror or e)
                self._cooldown[name] = trio.current_time() + COOLDOWN_SECONDS
                return None
            self._sessions[name] = session
            return session

    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> Json:
        session = await self._session(server)
        if session is None:
            return {"error": f"MCP server unavailable: {server}"}
        return await session.call_tool(tool, arguments, trio.current_time() + self.configs[server].timeout_ms / 1000)


class McpTool(Tool):
    """One tool of an MCP server: its arguments are the call's params, as given."""

    kind = "mcp"

    def __init__(self, found: McpToolDef, call: Callable[[str, str, dict[str, Any]], Any]) -> None:
        self.found = found
        self.name = self.display_name = f"{found.server}_{found.name}"
        self._call = call

    def definition(self) -> Json:
        schema = self.found.input_schema if isinstance(self.found.input_schema, dict) else {"type": "object", "properties": {}}
        return {"type": "function", "function": {"name": self.name, "description": self.found.description, "parameters": schema}}

    def bind(self, params: Json, ctx: Context) -> Bound:
        async def result() -> Json:
            out: Json = await self._call(self.found.server, self.found.name, params)
            return out

        return Bound(result)
