"""The served models: listing with status, loading and unloading on request, and the load
progress as server-sent events (/models/sse), for UIs that show a bar."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict
from quart import Blueprint, Response

from ..llm import introspect
from ..registry.registry import Hosted, ModelRegistry
from ..services import Services
from .common import json_object, json_response, parse_model, services, sse_response
from .ollama import capabilities, model_entry

blueprint = Blueprint("models", __name__)


class ModelRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str


def entry(registry: ModelRegistry, h: Hosted, created: int) -> dict[str, Any]:
    """A served model in OpenAI's list shape, with llama-server's router status and what it can do."""
    spec = h.spec
    out: dict[str, Any] = {
        "id": h.id, "object": "model", "created": created, "owned_by": "chimera", "path": str(spec.path),
        "status": registry.status(h), "kind": spec.kind, "capabilities": list(spec.capabilities),
        "aliases": list(spec.aliases), "tags": list(spec.tags), "pinned": spec.pin, "in_flight": h.in_flight,
        "architecture": {"input_modalities": ["text", *(["image"] if "vision" in spec.capabilities else [])],
                         "output_modalities": ["embedding" if spec.kind != "chat" else "text"]},
    }
    if h.engine is not None:
        card = introspect.model_card(h.engine, h.id, created)
        out["meta"] = card["meta"]
        out["capabilities"] = sorted(set(out["capabilities"]) | set(card["capabilities"]))
    else:
        arch = str(spec.meta.get("general.architecture", ""))
        out["meta"] = {"n_ctx_train": spec.meta.get(f"{arch}.context_length"), "size": spec.size,
                       "description": spec.meta.get("general.name")}
    return out


def _side_models(s: Services) -> dict[str, str]:
    """The models loaded beside the served ones, by what they serve."""
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


@blueprint.get("/v1/models")
@blueprint.get("/models")
async def models() -> Response:
    s = services()
    s.check_loaded()  # like llama-server: 503 until the models loaded at start-up are up
    registry = s.require_models()
    created = int(s.lifecycle.started_at)
    data = [entry(registry, h, created) for h in registry.hosted.values()]
    for kind, path in _side_models(s).items():
        data.append({"id": path.rsplit("/", 1)[-1].removesuffix(".gguf").removesuffix(".bin"), "object": "model",
                     "created": created, "owned_by": "chimera", "status": {"value": "loaded"},
                     "chimera": {"kind": kind, "path": path}})
    # llama-server's own list beside OpenAI's: Ollama-style entries with capabilities
    listed = []
    for h in registry.hosted.values():
        caps = capabilities(h)
        if "vision" in caps or (h.engine is not None and h.engine.audio):
            caps.append("multimodal")
        listed.append(model_entry(h) | {"name": h.id, "model": h.id, "type": "model", "description": "", "tags": [""],
                                        "capabilities": caps, "parameters": ""})
    return json_response({"models": listed, "object": "list", "data": data})


@blueprint.post("/models/load")
async def load() -> Response:
    req = parse_model(ModelRequest, await json_object())
    h = await services().require_models().load(req.model)
    return json_response({"success": True, "model": h.id, "load_seconds": round(h.load_seconds, 3)})


@blueprint.post("/models/unload")
async def unload() -> Response:
    req = parse_model(ModelRequest, await json_object())
    registry = services().require_models()
    h = registry.resolve(req.model)
    await registry.unload(h.id)
    return json_response({"success": True, "model": h.id})


async def _events(registry: ModelRegistry) -> AsyncIterator[bytes]:
    with registry.listen() as events:
        for h in registry.hosted.values():  # where every model stands now, then what changes
            yield _event(registry.event(h))
        async for ev in events:
            yield _event(ev)


def _event(data: dict[str, Any]) -> bytes:
    return f"event: {data['event']}\ndata: {json.dumps(data)}\n\n".encode()


@blueprint.get("/models/sse")
async def model_events() -> Response:
    return sse_response(_events(services().require_models()))
