"""Meta routes: health, models, props, metrics, info, shutdown."""

from __future__ import annotations

import time

import trio
from quart import Blueprint, Response

from ..info import collect_info
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
    data = []
    if s.engine is not None:
        data.append(introspect.model_card(s.engine, s.model_id, int(s.lifecycle.started_at)))
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


def _modalities(s: Services) -> dict[str, object]:
    st = s.settings
    audio = None
    if st.whisper_model is not None:
        audio = {"model": str(st.whisper_model), "workers": st.whisper_workers, "threads": st.whisper_threads,
                 "ready": s.audio is not None, "multilingual": s.audio.multilingual if s.audio is not None else None,
                 "restarts": s.audio.restarts if s.audio is not None else 0}
    rag = None
    if s.rag is not None:
        rag = {"db": str(s.rag.path), "embedding_model": s.rag.model_name, "dimension": s.rag.dim,
               "chunk_tokens": s.rag.chunk_tokens, "chunk_overlap": s.rag.overlap}
    images = None
    if st.sd_enabled():
        images = {"model": str(st.sd_model or st.sd_diffusion_model), "workers": st.sd_workers, "threads": st.sd_threads,
                  "ready": s.images is not None, "restarts": s.images.restarts if s.images is not None else 0}
    return {"speech_to_text": audio, "vector_stores": rag, "images": images}


@blueprint.get("/props")
async def props() -> Response:
    s = services()
    return json_response(introspect.props(s.require_engine(), s.model_id) | {"chimera": _modalities(s)})


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
    data |= _modalities(s)
    return json_response(data)


@blueprint.post("/v1/chimera/shutdown")
async def shutdown() -> Response:
    services().lifecycle.request_shutdown()
    return json_response({"status": "shutting down"}, status=202)
