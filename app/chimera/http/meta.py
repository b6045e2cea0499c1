"""Meta routes: health, models, props, metrics, info, shutdown."""

from __future__ import annotations

import time

import trio
from quart import Blueprint, Response

from ..info import Live, collect_info, modalities
from ..llm import introspect
from ..services import Services
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
    # like llama-server: 503 until the chat model is loaded, so a listed model can be used
    data = [introspect.model_card(s.require_engine(), s.model_id, int(s.lifecycle.started_at))]
    for kind, path in _side_models(s).items():
        data.append({"id": path.rsplit("/", 1)[-1].removesuffix(".gguf").removesuffix(".bin"), "object": "model",
                     "created": int(s.lifecycle.started_at), "owned_by": "chimera", "chimera": {"kind": kind, "path": path}})
    return json_response({"object": "list", "data": data})


def _side_models(s: Services) -> dict[str, str]:
    """The models loaded beside the main one, by what they serve."""
    st = s.settings
    out = {}
    if st.whisper_model is not None:
        out["speech-to-text"] = str(st.whisper_model)
    if st.rag_model is not None:
        out["vector-store-embeddings"] = str(st.rag_model)
    if st.rerank_model is not None:
        out["rerank"] = str(st.rerank_model)
    if st.sd_enabled():
        out["image-generation"] = str(st.sd_model or st.sd_diffusion_model)
    return out


def _live(s: Services) -> Live:
    model = {"id": s.model_id, "path": s.model_path} if s.engine is not None else None
    return Live(uptime_s=round(time.time() - s.lifecycle.started_at, 3), ready=s.lifecycle.ready, model=model,
                audio=s.audio, rag=s.rag, images=s.images)


@blueprint.get("/props")
async def props() -> Response:
    s = services()
    return json_response(introspect.props(s.require_engine(), s.model_id) | {"chimera": modalities(s.settings, _live(s))})


@blueprint.get("/metrics")
async def metrics() -> Response:
    s = services()
    if s.engine is not None:
        s.engine.update_gauges()
    return Response(s.metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")


@blueprint.get("/v1/chimera/info")
async def info() -> Response:
    s = services()
    live = _live(s)
    return json_response(await trio.to_thread.run_sync(lambda: collect_info(s.settings, s.engine_versions, live)))


@blueprint.post("/v1/chimera/shutdown")
async def shutdown() -> Response:
    services().lifecycle.request_shutdown()
    return json_response({"status": "shutting down"}, status=202)
