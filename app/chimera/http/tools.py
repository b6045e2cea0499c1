"""llama-server's /tools: GET lists the tools (--tools, MCP servers), POST calls one.

    POST /tools {"tool": NAME, "params": {...}, "stream": false}
    headers: x-tool-cwd (working directory), x-tool-runtime (an isolate), x-resp-type (base64)

A tool that ran answers 200, with its result or `{"error": ...}`; a malformed request is a 400,
an unknown tool (or a stream from a tool that cannot) a 404, a bad runtime a 500. With stream,
the output comes as SSE `{"chunk": ...}` events, then `{"done": true}` (with `error` if it failed).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from pydantic import BaseModel, Field
from quart import Blueprint, Response, request

from ..errors import BadRequest, NotEnabled
from ..tools.base import Context
from ..tools.toolbox import ToolBox
from .common import json_object, json_response, services, sse_event, sse_response

blueprint = Blueprint("tools", __name__)
log = logging.getLogger("chimera.http")


class ToolCallRequest(BaseModel):
    """POST /tools's body (for the OpenAPI description; the route reads it itself)."""

    tool: str = Field(description="a tool's name, as GET /tools lists it")
    params: dict[str, Any] = Field(default_factory=dict, description="its arguments")
    stream: bool = Field(False, description="stream the output as SSE (exec_shell_command)")


async def _toolbox() -> ToolBox:
    box = services().tools
    if box is None:
        raise NotEnabled("tools are not enabled on this server", feature="tools")
    await box.ready.wait()  # the MCP servers' tools are known once their warm-up is over
    return box


@blueprint.get("/tools")
async def list_tools() -> Response:
    return json_response((await _toolbox()).describe())


@blueprint.post("/tools")
async def call_tool() -> Response:
    box = await _toolbox()
    body = await json_object()
    params = body.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise BadRequest("'params' must be an object", param="params")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream")
    ctx = Context(cwd=request.headers.get("x-tool-cwd", ""), runtime=request.headers.get("x-tool-runtime", ""),
                  resp_type=request.headers.get("x-resp-type", ""))
    if not stream:
        return json_response(await box.call(body.get("tool"), params, ctx))
    chunks = await box.stream(body.get("tool"), params, ctx)

    async def events() -> AsyncIterator[bytes]:
        try:
            async with aclosing(chunks) as output:
                async for text in output:
                    yield sse_event({"chunk": text})
        except Exception as e:  # the tool failed after the stream began: say so in the last event
            log.exception("tool %s failed", body.get("tool"))
            yield sse_event({"done": True, "error": str(e) or type(e).__name__})
            return
        yield sse_event({"done": True})

    return sse_response(events())
