"""Helpers every router uses: the services handle, JSON bodies, error responses, SSE."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from quart import Response, current_app, request

from ..errors import BadRequest, ChimeraError, UnsupportedMediaType
from ..services import Services
from .advice import for_client

M = TypeVar("M", bound=BaseModel)


def services() -> Services:
    return current_app.extensions["chimera"]


def is_anthropic_path(path: str) -> bool:
    return path.startswith("/v1/messages")


def is_ollama_path(path: str) -> bool:
    return path.startswith("/api/")


def error_response(e: ChimeraError) -> Response:
    e = for_client(e)
    if is_ollama_path(request.path):
        body: dict[str, Any] = {"error": e.message}  # Ollama's shape
    else:
        body = e.to_anthropic() if is_anthropic_path(request.path) else e.to_openai()
    resp = Response(json.dumps(body), status=e.status, content_type="application/json")
    for k, v in e.headers().items():
        resp.headers[k] = v
    return resp


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    resp = Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def parse_json(raw: bytes | str) -> Any:
    """A JSON document, or a 400 saying what is wrong with it (nesting too deep included)."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"malformed JSON in request body: {e}") from None
    except RecursionError:
        raise BadRequest("the JSON in the request body is nested too deeply") from None


async def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    ctype = request.headers.get("Content-Type", "")
    if ctype and "json" not in ctype.lower() and "text/plain" not in ctype.lower():
        raise UnsupportedMediaType(f"expected an application/json body, got Content-Type {ctype!r}")
    raw = await request.get_data(cache=False)
    if not raw.strip():
        raise BadRequest("request body is empty; expected a JSON object")
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(data).__name__}")
    return data


_TYPE_TAG = re.compile(r"^(str|int|float|bool|none|.*\[.*\]|[a-z]+-[a-z-]+.*)$")


def _is_type_tag(part: object) -> bool:
    """pydantic puts the union member it tried into an error's location ('str', 'list[str]')."""
    return isinstance(part, str) and bool(_TYPE_TAG.match(part))


def parse_model(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(p) for p in err["loc"] if not _is_type_tag(p)) or None
        msg = err["msg"]
        if err["type"] == "missing":
            msg = f"'{param}' is required"
        elif err["type"] == "extra_forbidden":
            msg = f"unknown field '{param}'"
        else:
            msg = f"invalid '{param}': {msg}"
        raise BadRequest(msg, param=param) from None


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: `data` as compact JSON, with an `event:` name when given."""
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def sse_response(gen: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> Response:
    resp = Response(gen, content_type="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    resp.timeout = None
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp
