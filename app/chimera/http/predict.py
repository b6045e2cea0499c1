"""Vertex AI's prediction contract (AIP_MODE=PREDICTION): `POST /predict` (AIP_PREDICT_ROUTE)
with `{"instances": [...]}`, each instance a request to one of the server's POST routes named
by `@requestFormat` (`chatCompletions` for /v1/chat/completions, `embeddings`, `rerank`, ..., or
the path itself), answered together as `{"predictions": [...]}` in the instances' order, as
llama-server does. Instances run concurrently through the app's own routes (auth, limits and
errors included); a failed one is its error object, the others still answer. No streaming.
"""

from __future__ import annotations

import json
from typing import Any

import trio
from quart import Quart, Response, current_app, request

from ..errors import BadRequest
from .common import json_response

MAX_INSTANCES = 128
PASSED_HEADERS = ("authorization", "x-api-key", "anthropic-version", "x-chimera-chat-id")


def format_name(path: str) -> str:
    """A route's `@requestFormat` alias: /v1/chat/completions -> chatCompletions."""
    s = path.removeprefix("/v1") if path.startswith("/v1/") else path
    out, cap = [], False
    for c in s.lstrip("/"):
        if c == "<":
            break
        if c in "/-_":
            cap = True
        else:
            out.append(c.upper() if cap else c)
            cap = False
    return "".join(out)


def _routes(app: Quart, own: str) -> dict[str, str]:
    """alias -> path for every POST route without path parameters (the first wins a clash)."""
    out: dict[str, str] = {}
    for rule in app.url_map.iter_rules():
        if "POST" in (rule.methods or ()) and "<" not in rule.rule and rule.rule != own:
            out.setdefault(format_name(rule.rule), rule.rule)
            out.setdefault(rule.rule, rule.rule)
    return out


def _error(message: str, kind: str = "invalid_request_error", code: int = 400) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


async def predict() -> Response:
    try:
        data = json.loads(await request.get_data(as_text=True) or "null")
    except ValueError as e:
        raise BadRequest(f"the body is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    instances = data.get("instances")
    if not isinstance(instances, list):
        raise BadRequest("request body must include an array field named instances", param="instances")
    if len(instances) > MAX_INSTANCES:
        raise BadRequest(f"instances array exceeds maximum size of {MAX_INSTANCES}", param="instances")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    routes = _routes(app, request.path)
    headers = {k: v for k, v in request.headers.items() if k.lower() in PASSED_HEADERS}
    predictions: list[Any] = [None] * len(instances)

    async def one(i: int, instance: Any) -> None:
        if not isinstance(instance, dict):
            predictions[i] = _error("each instance must be a JSON object")
            return
        fmt = instance.get("@requestFormat")
        if not isinstance(fmt, str):
            predictions[i] = _error("each instance must include a string @requestFormat")
            return
        path = routes.get(fmt)
        if path is None:
            predictions[i] = _error(f"no handler registered for @requestFormat: {fmt}")
            return
        payload = {k: v for k, v in instance.items() if k != "@requestFormat"}
        if "stream" in payload:
            payload["stream"] = False  # the predict route answers whole responses only
        client = app.test_client()
        res = await client.post(path, json=payload, headers=headers)
        body = await res.get_data(as_text=True)
        try:
            predictions[i] = json.loads(body) if body else None
        except ValueError:
            predictions[i] = body

    async with trio.open_nursery() as nursery:
        for i, instance in enumerate(instances):
            nursery.start_soon(one, i, instance)
    return json_response({"predictions": predictions})
