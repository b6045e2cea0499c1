"""ToolBox: the tools GET /tools lists and POST /tools calls, built once from the flags and run in
the server's nursery (the MCP servers' children and a --tools-runtime container live there).

    box = ToolBox(("all",), mcp_configs, runtime="", version=__version__)
    nursery.start_soon(box.run, lifecycle.shutdown_requested)
    await box.ready.wait()                  # the MCP warm-up is over
    box.describe(); await box.call(name, params, Context(cwd=...)); await box.stream(...)

When the server starts shutting down, calls in flight end at once (a tool that was running
returns `{"error": "cancelled"}`, a stream ends), so the HTTP server's drain is not held up by a
slow tool; the children are ended when the nursery is cancelled after it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

import trio

from ..errors import BadRequest, ChimeraError, ConfigError, NotFound
from .base import Context, Json, Tool
from .container import ContainerRuntime
from .edit import EditFile
from .files import ReadFile, WriteFile
from .flags import McpServerConfig, enabled_tools, parse_runtime
from .mcp_servers import McpServers, McpTool
from .search import FileGlobSearch, GrepSearch
from .shell import ExecShellCommand, GetInfo

log = logging.getLogger("chimera.tools")

BUILTIN: dict[str, type[Tool]] = {t.name: t for t in (ReadFile, FileGlobSearch, GrepSearch, ExecShellCommand, WriteFile, EditFile,
                                                     GetInfo)}


class ToolBox:
    def __init__(self, names: tuple[str, ...], mcp: list[McpServerConfig], runtime: str = "", version: str = "0") -> None:
        """`names`: --tools (validated); `runtime`: --tools-runtime (ValueError if it is not one)."""
        self.tools: list[Tool] = [BUILTIN[name]() for name in enabled_tools(names)]
        self.mcp = McpServers(mcp, version) if mcp else None
        parsed = parse_runtime(runtime)
        self.runtime = runtime if parsed.kind in ("container", "ssh") else ""  # a fixed target
        self.container = ContainerRuntime(parsed) if parsed.kind == "spawn" else None  # one this server owns
        self.ready = trio.Event()
        self.stopping = False
        self._calls: set[trio.CancelScope] = set()

    async def run(self, shutdown: trio.Event) -> None:
        async with trio.open_nursery() as nursery:
            if self.container is not None:
                try:
                    await nursery.start(self.container.run)
                except ChimeraError as e:
                    raise ConfigError(f"--tools-runtime: {e.message}") from None
            if self.mcp is not None:
                await nursery.start(self.mcp.run)
                self._add_mcp_tools()
            self.ready.set()
            await shutdown.wait()
            self.stop()

    def _add_mcp_tools(self) -> None:
        assert self.mcp is not None
        taken = {t.name for t in self.tools}
        added = 0
        for found in self.mcp.tools:
            tool = McpTool(found, self.mcp.call)
            if tool.name in taken:
                log.warning("MCP tool %r of server %r has the name of another tool: left out", tool.name, found.server)
                continue
            taken.add(tool.name)
            self.tools.append(tool)
            added += 1
        if added:
            log.info("%d MCP tools", added)

    def stop(self) -> None:
        """The server is shutting down: end the calls in flight, start nothing new."""
        self.stopping = True
        if self.mcp is not None:
            self.mcp.stop()
        for scope in self._calls:
            scope.cancel()

    def describe(self) -> list[Json]:
        return [t.describe() for t in self.tools]

    def find(self, name: Any, stream: bool = False) -> Tool:
        if not isinstance(name, str):
            raise BadRequest("'tool' is required: the name of a tool (GET /tools lists them)", param="tool")
        for tool in self.tools:
            if tool.name == name:
                if stream and not tool.streams:
                    raise NotFound(f'tool "{name}" does not support stream = true', param="stream")
                return tool
        raise NotFound(f'unknown tool "{name}"', param="tool")

    async def _context(self, tool: Tool, ctx: Context) -> Context:
        runtime = ctx.runtime
        if not runtime and tool.kind == "server":
            runtime = await self.container.spec() if self.container is not None else self.runtime
        return replace(ctx, runtime=runtime, stop=lambda: self.stopping)

    async def call(self, name: Any, params: Json, ctx: Context) -> Json:
        """Run a tool to its result; BadRequest / NotFound / ChimeraError before it runs."""
        tool = self.find(name)
        bound = tool.bind(params, await self._context(tool, ctx))
        with trio.CancelScope() as scope:
            self._calls.add(scope)
            if self.stopping:
                scope.cancel()
            try:
                return await bound.result()
            finally:
                self._calls.discard(scope)
        return {"error": "cancelled"}

    async def stream(self, name: Any, params: Json, ctx: Context) -> AsyncGenerator[str, None]:
        """A streaming tool's output chunks; the errors of call() are raised before it starts."""
        tool = self.find(name, stream=True)
        bound = tool.bind(params, await self._context(tool, ctx))
        assert bound.chunks is not None
        return bound.chunks()
