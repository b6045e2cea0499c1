"""Ollama's API on the same port, over the serving core: /api/chat and /api/generate (NDJSON
streaming by default), /api/embed and /api/embeddings, /api/tags, /api/show, /api/ps,
/api/version, and `HEAD /`. Model management (`pull`, `push`, `create`, `copy`, `delete`)
answers what chimera does instead. Errors are Ollama's `{"error": "..."}` (http/common.py)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import trio
from quart import Blueprint, Response

from .. import __version__
from ..errors import BadRequest, ChimeraError, NotEnabled, Unsupported
from ..llm import introspect
from ..llm.context import plan_for
from ..llm.engine import Engine
from ..protocol import ollama as ol
from ..registry.registry import Hosted
from ..services import Services
from ..serving.engine import ChatEngine
from ..serving.events import Calls, ChoiceResult, Content, Done, Reasoning, TokenLogprob, ToolCall
from ..serving.run import ChatRun
from ..serving.turn import ChatTurn
from .advice import for_client
from .common import json_object, json_response, parse_model, services
from .infill import InfillRequest, fim_prompt
from .leases import Streamed, using
from .turns import start_turn

blueprint = Blueprint("ollama", __name__)
# the Ollama release whose API this matches; clients check it against their minimum
OLLAMA_VERSION = "0.13.0"
NDJSON = "application/x-ndjson"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _name(s: Services, model: str | None) -> str:
    h = s.require_models().find(model)
    return f"{h.id}:latest" if h is not None else (model or "")


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _ndjson(lines: AsyncIterator[bytes], headers: dict[str, str]) -> Response:
    resp = Response(lines, content_type=NDJSON)
    resp.timeout = None
    for k, v in headers.items():
        resp.headers[k] = v
    return resp


def _calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    out = []
    for c in calls:
        try:
            args = json.loads(c.arguments)
        except ValueError:
            args = {}
        out.append({"id": c.id, "function": {"name": c.name, "arguments": args}})
    return out


def _logprobs(engine: ChatEngine, entries: list[TokenLogprob], top_n: int) -> list[dict[str, Any]]:
    def text(tok: int) -> str:
        return engine.token_bytes(tok).decode("utf-8", "replace")

    return [{"token": text(e.token), "logprob": e.logprob,
             "top_logprobs": [{"token": text(t), "logprob": lp} for t, lp in e.top[:top_n]]} for e in entries]


def _stats(run: ChatRun, done: Done | None, started: float) -> dict[str, Any]:
    u = run.usage()
    t = done.timings if done else {}
    return {"done_reason": "length" if done is not None and done.reason == "length" else "stop",
            "total_duration": int((time.perf_counter() - started) * 1e9), "load_duration": int(run.load_seconds * 1e9),
            "prompt_eval_count": u.prompt, "prompt_eval_duration": int(t.get("prompt_ms", 0.0) * 1e6),
            "eval_count": u.completion, "eval_duration": int(t.get("predicted_ms", 0.0) * 1e6)}


def _base(turn: ChatTurn, req: ol._Request) -> ChatTurn:
    turn.template_vars.update(ol.thinking(req.think))
    turn.response_format = ol.response_format(req.format)
    turn.ctx_limit = ol.context_size(req)
    turn.logprobs, turn.top_logprobs = req.logprobs, req.top_logprobs or 0
    return turn


async def _events(run: ChatRun, head: dict[str, Any], engine: ChatEngine, req: ol._Request, started: float,
                  key: str, tail: Any = None) -> AsyncIterator[bytes]:
    """NDJSON lines: one object per piece of output (`key` is "message" for chat, "response"
    for generate), then the final one with done: true and the statistics."""
    def piece(**fields: Any) -> dict[str, Any]:
        if key == "message":
            return head | {"message": {"role": "assistant", "content": "", **fields}, "done": False}
        out: dict[str, Any] = head | {"response": fields.pop("content", ""), "done": False}
        return out | fields

    top_n = req.top_logprobs or 0
    try:
        async for ev in run.events():
            if isinstance(ev, Reasoning):
                yield _line(piece(thinking=ev.text))
            elif isinstance(ev, Content):
                line = piece(content=ev.text)
                if req.logprobs and ev.logprobs:
                    line["logprobs"] = _logprobs(engine, ev.logprobs, top_n)
                yield _line(line)
            elif isinstance(ev, Calls):
                yield _line(piece(tool_calls=_calls(ev.calls)))
            elif isinstance(ev, Done):
                end = head | ({"message": {"role": "assistant", "content": ""}} if key == "message" else {"response": ""})
                end |= {"done": True} | _stats(run, ev, started)
                if tail is not None:
                    end["context"] = tail(run)
                yield _line(end)
    except ChimeraError as e:
        yield _line({"error": for_client(e).message})


def _whole(c: ChoiceResult, engine: ChatEngine, req: ol._Request) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if req.logprobs:
        out["logprobs"] = _logprobs(engine, c.logprobs, req.top_logprobs or 0)
    return out


async def _load_only(s: Services, req: ol._Request) -> str:
    """Ollama's way to load (or, with keep_alive 0, unload) a model: a request with nothing to say."""
    registry = s.require_models()
    h = registry.resolve(req.model)
    keep = ol.keep_alive_seconds(req.keep_alive)
    if keep == 0:
        await registry.unload(h.id)
        return "unload"
    held = await registry.acquire(h.id, keep)
    held.release()
    return "load"


@blueprint.post("/api/chat")
async def chat() -> Response:
    s = services()
    req = parse_model(ol.OllamaChat, await json_object())
    head = {"model": req.model or _name(s, None), "created_at": _now()}
    if not req.messages:
        reason = await _load_only(s, req)
        return json_response(head | {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": reason})
    started = time.perf_counter()
    turn = _base(ChatTurn(messages=ol.chat_messages(req.messages), params=ol.generation_fields(req), tools=req.tools), req)
    run, headers = await start_turn(s, turn, req.model, ol.keep_alive_seconds(req.keep_alive))
    engine = run.engine
    if req.stream:
        return _ndjson(Streamed(_events(run, head, engine, req, started, "message"), run.close), headers)
    try:
        c = (await run.collect())[0]
        extra = _whole(c, engine, req)
    finally:
        run.close()
    message: dict[str, Any] = {"role": "assistant", "content": c.content}
    if c.reasoning:
        message["thinking"] = c.reasoning
    if c.calls:
        message["tool_calls"] = _calls(c.calls)
    return json_response(head | {"message": message, "done": True} | _stats(run, c.done, started) | extra, headers=headers)


def _context(run: ChatRun) -> list[int]:
    """The conversation's tokens so far (prompt and reply), for the next /api/generate."""
    return list(run.gen.prompts[0]) + list(run.gen.seqs[0].generated)


@blueprint.post("/api/generate")
async def generate() -> Response:
    s = services()
    req = parse_model(ol.OllamaGenerate, await json_object())
    head = {"model": req.model or _name(s, None), "created_at": _now()}
    if not req.prompt and not req.images and not req.suffix:
        return json_response(head | {"response": "", "done": True, "done_reason": await _load_only(s, req)})
    if req.template:
        raise BadRequest("'template' (a Go template) is not supported: chimera renders the model's own Jinja chat "
                         "template; send raw: true with a prompt you formatted", param="template")
    started = time.perf_counter()
    if req.suffix is not None:
        async with using(s, req.model) as engine:
            return await _fill_in(engine, req, head, started)
    params = ol.generation_fields(req)
    if req.raw:
        turn = ChatTurn(messages=[], params=params, raw_prompt=req.prompt or "")
    else:
        content: Any = req.prompt or ""
        if req.images:
            content = [ol.image_part(x, f"images.{j}") for j, x in enumerate(req.images)] + [{"type": "text", "text": content}]
        messages = ([{"role": "system", "content": req.system}] if req.system else []) + [{"role": "user", "content": content}]
        turn = ChatTurn(messages=messages, params=params)
    turn.prefix_tokens = list(req.context or [])  # checked against the vocabulary with the prompt
    run, headers = await start_turn(s, _base(turn, req), req.model, ol.keep_alive_seconds(req.keep_alive))
    engine = run.engine
    if req.stream:
        return _ndjson(Streamed(_events(run, head, engine, req, started, "response", _context), run.close), headers)
    try:
        c = (await run.collect())[0]
        extra = _whole(c, engine, req)
    finally:
        run.close()
    body = head | {"response": c.content, "done": True} | _stats(run, c.done, started) | {"context": _context(run)}
    if c.reasoning:
        body["thinking"] = c.reasoning
    return json_response(body | extra, headers=headers)


async def _fill_in(engine: Engine, req: ol.OllamaGenerate, head: dict[str, Any], started: float) -> Response:
    """`suffix`: fill in the middle with the model's FIM tokens (as /infill)."""
    fields = ol.generation_fields(req).model_dump(exclude_none=True)
    infill = InfillRequest.model_validate(fields | {"input_prefix": req.prompt or "", "input_suffix": req.suffix or ""})
    tokens = fim_prompt(engine, infill)
    gen = engine.generate([tokens], infill.spec(engine.n_vocab, defaults=engine.defaults), "prompt")
    choices = await gen.collect()
    c = choices[0]
    f = c.finished
    return json_response(head | {
        "response": "".join(c.text), "done": True, "done_reason": "length" if f and f.reason == "length" else "stop",
        "total_duration": int((time.perf_counter() - started) * 1e9), "load_duration": 0,
        "prompt_eval_count": len(tokens), "prompt_eval_duration": int((f.timings["prompt_ms"] if f else 0) * 1e6),
        "eval_count": f.usage["completion_tokens"] if f else 0,
        "eval_duration": int((f.timings["predicted_ms"] if f else 0) * 1e6),
    })


async def _embed(s: Services, model: str, items: list[str | list[int]], truncate: bool) -> tuple[list[list[float]], int]:
    """The request's model when it makes embeddings; else the vector stores' embedder."""
    registry = s.require_models()
    h = registry.find(model)
    if h is not None and h.spec.kind == "embeddings":
        async with using(s, h.id) as engine:
            return await engine.embed_inputs(items, truncate=truncate)
    if s.rag is not None:
        return await s.rag.embedder.embed_inputs(items, truncate=truncate)
    s.check_loaded()
    raise NotEnabled("embeddings are off: the model is a chat model", feature="ollama-embeddings")


@blueprint.post("/api/embed")
async def embed() -> Response:
    s = services()
    req = parse_model(ol.OllamaEmbed, await json_object())
    started = time.perf_counter()
    items: list[str | list[int]] = [req.input] if isinstance(req.input, str) else list(req.input)
    vectors, n = await _embed(s, req.model, items, req.truncate)
    if req.dimensions is not None:
        vectors = [v[: req.dimensions] for v in vectors]
    return json_response({"model": req.model or _name(s, None), "embeddings": vectors,
                          "total_duration": int((time.perf_counter() - started) * 1e9), "load_duration": 0,
                          "prompt_eval_count": n})


@blueprint.post("/api/embeddings")
async def embeddings() -> Response:
    s = services()
    req = parse_model(ol.OllamaEmbeddings, await json_object())
    vectors, _ = await _embed(s, req.model, [req.prompt], True)
    return json_response({"embedding": vectors[0]})


def _details(h: Hosted) -> dict[str, Any]:
    meta = h.spec.meta
    arch = str(meta.get("general.architecture", ""))
    n = h.engine.model.n_params() if h.engine is not None else int(meta.get("general.parameter_count", 0) or 0)
    size = str(meta.get("general.size_label", "")) or (f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n else "")
    ftype = meta.get("general.file_type")
    quant = introspect.FILE_TYPES.get(int(ftype), f"type {ftype}") if isinstance(ftype, int) else "unknown"
    return {"parent_model": "", "format": "gguf", "family": arch, "families": [arch] if arch else None,
            "parameter_size": size, "quantization_level": quant}


def _modified(h: Hosted) -> str:
    return datetime.fromtimestamp(h.spec.path.stat().st_mtime, UTC).isoformat().replace("+00:00", "Z")


def model_entry(h: Hosted) -> dict[str, Any]:
    digest = hashlib.sha256(f"{h.spec.path}:{h.spec.size}".encode()).hexdigest()
    return {"name": f"{h.id}:latest", "model": f"{h.id}:latest", "modified_at": _modified(h), "size": h.spec.size,
            "digest": digest, "details": _details(h)}


@blueprint.get("/api/tags")
async def tags() -> Response:
    s = services()
    s.check_loaded()
    return json_response({"models": [model_entry(h) for h in s.require_models().hosted.values()]})


@blueprint.get("/api/ps")
async def ps() -> Response:
    registry = services().require_models()
    out = []
    for h in registry.loaded():
        entry = model_entry(h)
        del entry["modified_at"]
        keep = registry.keep_alive_of(h)
        expires = "2318-01-01T00:00:00Z" if keep is None or keep < 0 else datetime.fromtimestamp(
            time.time() + max(0.0, keep - h.idle_for(trio.current_time())), UTC).isoformat().replace("+00:00", "Z")
        out.append(entry | {"expires_at": expires, "size_vram": 0,
                            "context_length": h.engine.n_ctx_slot if h.engine is not None else 0})
    return json_response({"models": out})


def capabilities(h: Hosted) -> list[str]:
    if h.spec.kind != "chat":
        return ["embedding"] if h.spec.kind == "embeddings" else ["rerank"]
    caps = ["completion"]
    src = h.engine.template_source if h.engine is not None else str(h.spec.meta.get("tokenizer.chat_template", ""))
    if "tools" in src:
        caps.append("tools")
    if "<think>" in src or "enable_thinking" in src or "<|channel|>" in src:
        caps.append("thinking")
    if "vision" in h.spec.capabilities or (h.engine is not None and h.engine.vision):
        caps.append("vision")
    if h.engine is not None and introspect.has_fim(h.engine):
        caps.append("insert")
    return caps


@blueprint.post("/api/show")
async def show() -> Response:
    s = services()
    req = parse_model(ol.OllamaShow, await json_object())
    s.check_loaded()
    h = s.require_models().resolve(req.model or req.name)
    info = {k: v for k, v in h.spec.meta.items() if not k.startswith("tokenizer.")}
    n_ctx = h.engine.n_ctx_slot if h.engine is not None else plan_for(h.spec.settings, h.spec.meta.get, None).n_ctx_slot
    template = h.engine.template_source if h.engine is not None else str(h.spec.meta.get("tokenizer.chat_template", ""))
    modelfile = f"# served by chimera {__version__}\nFROM {h.spec.path}\n" + (f"PARAMETER num_ctx {n_ctx}\n" if n_ctx else "")
    return json_response({
        "modelfile": modelfile, "parameters": f"num_ctx {n_ctx}" if n_ctx else "", "template": template,
        "details": _details(h), "model_info": info, "capabilities": capabilities(h), "modified_at": _modified(h),
    })


@blueprint.get("/api/version")
async def version() -> Response:
    return json_response({"version": OLLAMA_VERSION, "chimera": __version__})


MANAGEMENT = {
    "pull": "chimera does not download models: start it with -m PATH to a GGUF file",
    "push": "chimera does not publish models",
    "create": "chimera does not build models from Modelfiles: start it with -m PATH (and --lora, --chat-template-file)",
    "copy": "chimera does not copy models: the served model's name is set with --alias",
    "delete": "chimera does not delete model files: stop the server or start it with another -m PATH",
}


@blueprint.route("/api/<action>", methods=["POST", "DELETE"])
async def management(action: str) -> Response:
    if action in MANAGEMENT:
        raise Unsupported(MANAGEMENT[action])
    raise _not_found(action)


def _not_found(action: str) -> ChimeraError:
    from ..errors import NotFound

    return NotFound(f"no Ollama route /api/{action}")
