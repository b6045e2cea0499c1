"""Meta routes: health, models, props, metrics, info, shutdown."""

from __future__ import annotations

import time

import trio
from quart import Blueprint, Response

from ..info import collect_info
from ..llm import introspect
from .common import json_response, services

blueprint = Blueprint("meta", __name__)


@blueprint.get("/health")
@blueprint.get("/v1/health")
async def health() -> Response:
    s = services()
    if s.lifecycle.load_error:
        return json_response({"status": "error", "error": s.lifecycle.load_error}, status=503)
    if (not s.lifecycle.ready or (s.settings.whisper_model is not None and s.audio is None)
            or (s.settings.sd_enabled() and s.images is None)):
        return json_response({"status": "loading"}, status=503, headers={"Retry-After": "1"})
    return json_response({"status": "ok"})


@blueprint.get("/v1/models")
@blueprint.get("/models")
async def models() -> Response:
    s = services()
    data = []
    if s.engine is not None:
        data.append(introspect.model_card(s.engine, s.model_id, int(s.lifecycle.started_at)))
    return json_response({"object": "list", "data": data})


@blueprint.get("/props")
async def props() -> Response:
    s = services()
    return json_response(introspect.props(s.require_engine(), s.model_id))


@blueprint.get("/metrics")
async def metrics() -> Response:
    s = services()
    if s.engine is not None:
        s.engine.update_gauges()
    return Response(s.metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")


@blueprint.get("/v1/chimera/info")
async def info() -> Response:
    s = services()
    data = await trio.to_thread.run_sync(lambda: collect_info(s.settings, s.engine_versions))
    data["uptime_s"] = round(time.time() - s.lifecycle.started_at, 3)
    data["ready"] = s.lifecycle.ready
    if s.engine is not None:
        data["model"] = {"id": s.model_id, "path": s.model_path}
    return json_response(data)


@blueprint.post("/v1/chimera/shutdown")
async def shutdown() -> Response:
    services().lifecycle.request_shutdown()
    return json_response({"status": "shutting down"}, status=202)
