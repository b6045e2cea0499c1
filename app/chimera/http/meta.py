"""Meta routes: health, models, props, metrics, info, shutdown."""

from __future__ import annotations

import time

import trio
from quart import Blueprint, Response, request

from ..errors import NotEnabled
from ..info import Live, collect_info, modalities
from ..llm import introspect
from ..llm.generation import GenerationDefaults
from ..protocol.params import GenerationFields
from ..services import Services
from .common import json_object, json_response, parse_model, services
from .leases import using

blueprint = Blueprint("meta", __name__)


@blueprint.get("/health")
@blueprint.get("/v1/health")
async def health() -> Response:
    s = services()
    if s.lifecycle.load_error:
        return json_response({"status": "error", "error": s.lifecycle.load_error}, status=503)
    if s.device_lost:  # the models on other devices, and everything else, still serve
        return json_response({"status": "error", "error": s.device_lost}, status=503)
    if (not s.lifecycle.ready or (s.settings.whisper_model is not None and s.audio is None)
            or (s.settings.sd_enabled() and s.images is None)):
        return json_response({"status": "loading"}, status=503, headers={"Retry-After": "1"})
    return json_response({"status": "ok"})


def _live(s: Services) -> Live:
    registry = s.require_models()
    main = registry.hosted.get(registry.default) if registry.default else None
    model = {"id": main.id, "path": str(main.spec.path)} if main is not None else None
    return Live(uptime_s=round(time.time() - s.lifecycle.started_at, 3), ready=s.lifecycle.ready, model=model,
                audio=s.audio, rag=s.rag, images=s.images, device_lost=s.device_lost)


@blueprint.get("/props")
async def props() -> Response:
    """The model's properties (`?model=` where several are served); like llama-server's router,
    asking does not load a model: an unloaded one reports `is_sleeping`."""
    s = services()
    s.check_loaded()
    registry = s.require_models()
    name = request.args.get("model")
    if not name and registry.default is None and len(registry.hosted) > 1:
        return json_response(await _router_props(s))
    h = registry.resolve(name)
    extra = {"chimera": modalities(s.settings, _live(s)), "status": registry.status(h)}
    if h.engine is None:
        return json_response({"model_alias": h.id, "model_path": str(h.spec.path), "is_sleeping": True} | extra)
    return json_response(introspect.props(h.engine, h.id) | {"is_sleeping": False} | extra)


async def _router_props(s: Services) -> dict[str, object]:
    """/props without `model` on a server of several models and no default: the server
    itself, in llama-server's router shape (its UI reads `role` to offer a model picker)."""
    from ..llm import native

    return {
        "role": "router",
        "max_instances": s.settings.models_max,
        "models_autoload": not s.settings.no_models_autoload,
        "model_alias": "chimera",
        "model_path": "none",
        "default_generation_settings": {"params": {}, "n_ctx": 0},
        "build_info": await trio.to_thread.run_sync(native.build_info),
        "models": sorted(s.require_models().hosted),
        "chimera": modalities(s.settings, _live(s)),
    }


@blueprint.post("/props")
async def set_props() -> Response:
    """llama-server's POST /props (needs --props): change a model's default generation settings,
    the values a request's unset fields take. The body holds generation fields (`temperature`,
    `top_k`, `n_predict`, `grammar`, ...), flat or as `default_generation_settings.params`."""
    s = services()
    if not s.settings.props:
        raise NotEnabled("changing the default generation settings is off", feature="props")
    body = await json_object()
    if isinstance(body.get("default_generation_settings"), dict):
        body = body["default_generation_settings"].get("params", {})
    fields = parse_model(GenerationFields, {k: v for k, v in body.items() if k not in ("n_ctx", "cache_prompt")})
    async with using(s, request.args.get("model")) as engine:
        engine.defaults = GenerationDefaults(fields.sampling(engine.n_vocab, engine.defaults.sampling),
                                             fields.limit(engine.defaults.max_tokens))
        return json_response({"success": True, "default_generation_settings": {"params": engine.defaults.public()}})


@blueprint.get("/metrics")
async def metrics() -> Response:
    s = services()
    if s.models is not None:
        for engine in s.models.engines():
            engine.update_gauges()
    if s.settings.rpc and s.device_lost is None:  # asking a dead RPC server would wait for ever
        await trio.to_thread.run_sync(_rpc_memory, s)
    r = Response(s.metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")
    r.headers["Process-Start-Time-Unix"] = str(int(s.metrics.started))  # as llama-server sends it
    return r


def _rpc_memory(s: Services) -> None:
    """Worker thread: each RPC device's memory (a round trip to its server) into the gauges."""
    from ..llm.native import device_list, load

    for d in device_list(load()):
        if d["rpc"]:
            for kind in ("total", "free"):
                s.metrics.device_memory.labels(d["name"], d["description"], kind).set(d[f"memory_{kind}"])


@blueprint.get("/v1/chimera/info")
async def info() -> Response:
    s = services()
    live = _live(s)
    return json_response(await trio.to_thread.run_sync(lambda: collect_info(s.settings, s.engine_versions, live)))


@blueprint.post("/v1/chimera/shutdown")
async def shutdown() -> Response:
    services().lifecycle.request_shutdown()
    return json_response({"status": "shutting down"}, status=202)
