"""One MCP server: a child process speaking JSON-RPC 2.0 over stdio, one JSON message a line.

    session = McpSession(config)
    await nursery.start(session.run)           # spawns it (OSError if it cannot), reads its output
    await session.initialize(deadline)         # the handshake, once
    tools = await session.list_tools(deadline)
    reply = await session.request("tools/call", {...}, deadline)
    session.close()

Replies are matched to requests by id, so calls may overlap; a notification, a reply to a request
that gave up, and a line that is not JSON are skipped. A request the server sends (`ping`, ...) is
answered. The session is dead once the child exits or closes its output: waiting requests end with
"transport closed". The child runs in its own process group, ended as a whole when the session
closes (so a server started through npx or a shell takes what it started with it), and its
stderr is drained, the last of it kept for the log.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from .flags import McpServerConfig
from .process import reap

log = logging.getLogger("chimera.tools")

PROTOCOL_VERSION = "2024-11-05"
MAX_LINE = 8 * 1024 * 1024  # a longer line is dropped (a child that never ends one cannot grow memory)
STDERR_TAIL = 4096
EXIT_GRACE_SECONDS = 0.5  # output still read after the child exited, before waiting calls fail
TERM_GRACE_SECONDS = 0.5  # between SIGTERM and SIGKILL at close


class RpcFailed(Exception):
    """A request that got no usable reply: the message is what the /tools caller sees."""


@dataclass
class McpToolDef:
    server: str
    name: str  # the server's own name for it
    description: str
    input_schema: Any


class McpSession:
    def __init__(self, config: McpServerConfig, client: str = "chimera", version: str = "0") -> None:
        self.config = config
        self.client, self.version = client, version
        self.alive = False
        self.exited = False  # the child ended on its own (not closed by us)
        self.initialized = False
        self.stderr_tail = ""
        self._next_id = 1
        self._pending: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._write_lock = trio.Lock()
        self._init_lock = trio.Lock()
        self._scope = trio.CancelScope()
        self._proc: trio.Process | None = None

    @property
    def name(self) -> str:
        return self.config.name

    # --- the child ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Spawn the child and serve it until it dies or close(); OSError if it cannot start."""
        env = None
        if self.config.env:
            env = dict(os.environ) | dict(self.config.env)
        proc = await trio.lowlevel.open_process(
            [self.config.command, *self.config.args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=self.config.cwd, env=env, start_new_session=True)
        self._proc = proc
        self.alive = True
        task_status.started()
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read_stdout, nursery.cancel_scope)
                    nursery.start_soon(self._read_stderr)
                    nursery.start_soon(self._watch_exit, nursery.cancel_scope)
        finally:
            self.alive = False
            for channel in self._pending.values():
                channel.close()  # waiting requests: transport closed
            self._pending.clear()
            with trio.CancelScope(shield=True):
                if proc.stdin is not None:
                    await proc.stdin.aclose()  # MCP's stdio shutdown: stdin closed, then SIGTERM, then SIGKILL
            await reap(proc, grace=TERM_GRACE_SECONDS)
            if self.exited:
                tail = self.stderr_tail.strip()
                log.warning("MCP server %r exited with status %s%s", self.name, proc.returncode, f"; last stderr: {tail}" if tail else "")

    def close(self) -> None:
        self.alive = False
        self._scope.cancel()

    async def _lines(self, stream: trio.abc.ReceiveStream) -> AsyncIterator[bytes]:
        buf = b""
        skipping = False
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            buf += data
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                if skipping:
                    skipping = False
                    continue
                line = line.strip()
                if line:
                    yield line
            if len(buf) > MAX_LINE:
                log.warning("MCP server %r: dropped a line of over %d bytes", self.name, MAX_LINE)
                buf, skipping = b"", True

    async def _read_stdout(self, done: trio.CancelScope) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for line in self._lines(self._proc.stdout):
            try:
                msg = json.loads(line)
            except ValueError:
                log.debug("MCP server %r: skipped a line that is not JSON", self.name)
                continue
            if not isinstance(msg, dict):
                continue
            if "method" in msg:
                if "id" in msg:  # a request from the server
                    await self._answer(msg)
                continue  # a notification
            rid = msg.get("id")
            channel = self._pending.pop(rid, None) if isinstance(rid, int) else None
            if channel is not None:
                channel.send_nowait(msg)
                channel.close()
        done.cancel()  # EOF: the child closed its output

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        async for line in self._lines(self._proc.stderr):
            text = line.decode(errors="replace")
            log.debug("MCP server %r stderr: %s", self.name, text)
            self.stderr_tail = (self.stderr_tail + text + "\n")[-STDERR_TAIL:]

    async def _watch_exit(self, done: trio.CancelScope) -> None:
        assert self._proc is not None
        await self._proc.wait()
        self.alive = False
        self.exited = True
        await trio.sleep(EXIT_GRACE_SECONDS)  # replies it wrote before exiting still arrive
        done.cancel()  # something it started may hold its output open: EOF may never come

    async def _answer(self, msg: dict[str, Any]) -> None:
        if msg.get("method") == "ping":
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": msg["id"], "result": {}}
        else:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": f"method not found: {msg.get('method')}"}}
        try:
            await self._send(reply)
        except RpcFailed:
            pass

    # --- JSON-RPC ---------------------------------------------------------------------------

    async def _send(self, msg: dict[str, Any]) -> None:
        if not self.alive or self._proc is None or self._proc.stdin is None:
            raise RpcFailed("transport closed")
        try:
            async with self._write_lock:
                await self._proc.stdin.send_all(json.dumps(msg, ensure_ascii=False).encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise RpcFailed("transport closed") from None

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        await self._send(msg)

    async def request(self, method: str, params: dict[str, Any] | None, deadline: float) -> dict[str, Any]:
        """The reply to one request (`result` or `error` in it); RpcFailed when none comes by
        `deadline` (trio time) or the child dies."""
        rid = self._next_id
        self._next_id += 1
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._pending[rid] = send
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        try:
            with trio.move_on_at(deadline):
                await self._send(msg)
                try:
                    return await receive.receive()
                except trio.EndOfChannel:
                    raise RpcFailed("transport closed") from None
            raise RpcFailed("request timed out")
        finally:
            self._pending.pop(rid, None)

    async def initialize(self, deadline: float) -> None:
        """The handshake, once per child: `initialize`, then `notifications/initialized`."""
        async with self._init_lock:
            if self.initialized:
                return
            reply = await self.request("initialize", {
                "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                "clientInfo": {"name": self.client, "version": self.version}}, deadline)
            if "result" not in reply:
                raise RpcFailed(f"initialize failed: {error_message(reply)}")
            await self.notify("notifications/initialized")
            self.initialized = True

    async def list_tools(self, deadline: float) -> list[McpToolDef]:
        """Every tool the server offers (following `nextCursor` pages)."""
        await self.initialize(deadline)
        tools: list[McpToolDef] = []
        cursor = None
        while True:
            reply = await self.request("tools/list", {"cursor": cursor} if cursor else None, deadline)
            if not isinstance(reply.get("result"), dict):
                raise RpcFailed(f"tools/list failed: {error_message(reply)}")
            result = reply["result"]
            for t in result.get("tools") or []:
                if isinstance(t, dict) and isinstance(t.get("name"), str) and t["name"]:
                    desc = t.get("description")
                    tools.append(McpToolDef(self.name, t["name"], desc if isinstance(desc, str) else "", t.get("inputSchema")))
            cursor = result.get("nextCursor")
            if not cursor or not isinstance(cursor, str):
                return tools

    async def call_tool(self, tool: str, arguments: dict[str, Any], deadline: float) -> dict[str, Any]:
        """A tools/call as /tools answers it: `{"plain_text_response": text}` or `{"error": message}`."""
        try:
            await self.initialize(deadline)
            reply = await self.request("tools/call", {"name": tool, "arguments": arguments}, deadline)
        except RpcFailed as e:
            return {"error": str(e)}
        if "error" in reply:
            return {"error": error_message(reply)}
        result = reply.get("result")
        if not isinstance(result, dict):
            return {"error": "invalid response from MCP server"}
        return tool_result(result)


def error_message(reply: dict[str, Any]) -> str:
    err = reply.get("error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return err["message"]
    return err if isinstance(err, str) else "unknown error"


def tool_result(result: dict[str, Any]) -> dict[str, Any]:
    """A tools/call result → the /tools shape: the text parts of `content` joined by newlines; an
    `isError` result is an error with that text."""
    parts = result.get("content")
    texts = [p.get("text") or "" for p in parts if isinstance(p, dict) and p.get("type") == "text"] if isinstance(parts, list) else []
    text = "\n".join(t for t in texts if isinstance(t, str))
    if result.get("isError"):
        return {"error": text or "MCP tool returned an error"}
    return {"plain_text_response": text}
