"""LLM routes: text completions, embeddings, tokenize/detokenize, templates, slots."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
from pydantic import ValidationError
from quart import Blueprint, Response, request

from ..errors import BadRequest, ChimeraError, NotEnabled, Unsupported
from ..llm import introspect, slotfiles
from ..llm.engine import Engine
from ..llm.generation import Generation, new_id
from ..llm.sequence import Delta, TokenLogprobs
from ..protocol.forms import LoraScales
from ..protocol.openai import (
    ApplyTemplateRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    TokenizeRequest,
)
from ..serving.turn import apply_json_schema
from .advice import for_client
from .chat import chat_turn
from .common import SSE_DONE, json_object, json_response, parse_json, parse_model, services, sse_event, sse_response
from .leases import Streamed, lease, using
from .turns import prepare_on

log = logging.getLogger("chimera.http.llm")
blueprint = Blueprint("llm", __name__)
FINGERPRINT = "chimera"


async def _stream(gen: Generation, first: dict[str, Any], chunk: Any, include_usage: bool) -> AsyncIterator[bytes]:
    """SSE events for a text completion; errors mid-stream become a final error event."""
    finished = []
    try:
        async for ev in gen.events():
            if isinstance(ev, Delta):
                if ev.text or ev.logprobs:
                    yield sse_event(first | {"choices": [chunk(ev.index, ev)]})
            else:
                finished.append(ev)
                body = first | {"choices": [chunk(ev.index, None, finish=ev.reason)]}
                if len(finished) == len(gen.seqs):
                    body["timings"] = ev.timings
                yield sse_event(body)
        if include_usage:
            yield sse_event(first | {"choices": [], "usage": gen.usage(finished)})
    except ChimeraError as e:
        yield sse_event(for_client(e).to_openai())
    finally:
        gen.cancel()
    yield SSE_DONE


def completion_logprobs(engine: Engine, entries: list[TokenLogprobs], top_n: int, offset: int) -> dict[str, Any]:
    """The legacy completions shape: tokens, token_logprobs, top_logprobs, text_offset."""
    def text(tok: int) -> str:
        return engine.token_bytes(tok).decode("utf-8", "replace")

    tokens, lps, tops, offsets = [], [], [], []
    for e in entries:
        piece = text(e["id"])
        tokens.append(piece)
        lps.append(e["logprob"])
        tops.append({text(t): lp for t, lp in e["top"][:top_n]})
        offsets.append(offset)
        offset += len(piece)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


@blueprint.post("/v1/completions")
async def completions() -> Response:
    s = services()
    req = parse_model(CompletionRequest, await json_object())
    held = await lease(s, req.model)
    try:
        return await _completions(held.model_id, held.engine, req, held.release)
    except BaseException:
        held.release()
        raise


async def _completions(model_id: str, engine: Engine, req: CompletionRequest, release: Callable[[], None]) -> Response:
    apply_json_schema(req)
    if req.suffix:
        raise Unsupported("'suffix' (fill-in-the-middle) is not supported on /v1/completions; use /infill")
    prompts: list[list[int]] = []
    texts: list[str] = []
    for p in req.prompts():
        if isinstance(p, str):
            prompts.append(engine.model.tokenize(p, add_special=True, parse_special=True))
            texts.append(p)
        elif isinstance(p, list):
            prompts.append(p)
            texts.append(engine.model.detokenize(p, param="prompt"))
        else:
            raise BadRequest("'prompt' must be a string, a list of strings, or token arrays", param="prompt")
    gen = engine.generate(prompts, req.spec(engine.n_vocab, req.n_probs_wanted(), engine.defaults, engine.text_tokens), "prompt")
    cid, created = new_id("cmpl"), gen.created
    top_n = req.logprobs or 0
    want_lp = req.logprobs is not None

    def prefix(index: int) -> str:
        return texts[index // req.n] if req.echo else ""

    if req.stream:
        base = {"id": cid, "object": "text_completion", "created": created, "model": model_id,
                "system_fingerprint": FINGERPRINT}
        sent: set[int] = set()

        def chunk(index: int, ev: Delta | None, finish: str | None = None) -> dict[str, Any]:
            text = ""
            if index not in sent:
                sent.add(index)
                text = prefix(index)
            lp = None
            if ev is not None:
                text += ev.text
                if want_lp and ev.logprobs:
                    lp = completion_logprobs(engine, ev.logprobs, top_n, 0)
            return {"index": index, "text": text, "logprobs": lp, "finish_reason": finish}

        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return sse_response(Streamed(_stream(gen, base, chunk, include_usage), release))

    choices = await gen.collect()
    finished = [c.finished for c in choices if c.finished]
    body = {
        "id": cid, "object": "text_completion", "created": created, "model": model_id,
        "system_fingerprint": FINGERPRINT,
        "choices": [{
            "index": c.index,
            "text": prefix(c.index) + "".join(c.text),
            "logprobs": completion_logprobs(engine, c.logprobs, top_n, len(prefix(c.index))) if want_lp else None,
            "finish_reason": c.finished.reason if c.finished else "stop",
        } for c in choices],
        "usage": gen.usage(finished),
        "timings": finished[-1].timings if finished else {},
    }
    release()
    return json_response(body)


@blueprint.post("/v1/embeddings")
@blueprint.post("/embeddings")
async def embeddings() -> Response:
    s = services()
    req = parse_model(EmbeddingRequest, await json_object())
    async with using(s, req.model) as engine:
        if not engine.embeddings:
            from ..errors import NotEnabled

            raise NotEnabled("embeddings are not enabled on this server", feature="embeddings")
        return await _embeddings(s.require_models().resolve(req.model).id, engine, req)


async def _embeddings(model_id: str, engine: Engine, req: EmbeddingRequest) -> Response:
    if engine.per_token:
        if request.path.startswith("/v1/"):
            raise BadRequest("this server pools no embeddings (--pooling none): POST /embeddings gives each token's vector",
                             param="input")
        vectors, n = await engine.embed_inputs(req.prompts())
        return json_response([{"index": i, "embedding": v} for i, v in enumerate(vectors)])
    vectors, n = await engine.embed_inputs(req.prompts())
    data = []
    for i, v in enumerate(vectors):
        if req.dimensions is not None:
            v = v[: req.dimensions]
        emb: Any = v
        if req.encoding_format == "base64":
            emb = base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return json_response({"object": "list", "data": data, "model": model_id,
                          "usage": {"prompt_tokens": n, "total_tokens": n}})


@blueprint.post("/tokenize")
async def tokenize() -> Response:
    req = parse_model(TokenizeRequest, await json_object())
    async with using(services(), req.model) as engine:
        model = engine.model
        toks = model.tokenize(req.content, add_special=req.add_special, parse_special=req.parse_special)
        if not req.with_pieces:
            return json_response({"tokens": toks})
        out = []
        for t in toks:
            b = model.piece(t, special=True)
            try:
                piece: Any = b.decode("utf-8")
            except UnicodeDecodeError:
                piece = list(b)
            out.append({"id": t, "piece": piece})
        return json_response({"tokens": out})


@blueprint.post("/detokenize")
async def detokenize() -> Response:
    req = parse_model(DetokenizeRequest, await json_object())
    async with using(services(), req.model) as engine:
        return json_response({"content": engine.model.detokenize(req.tokens, special=True)})


@blueprint.post("/apply-template")
async def apply_template() -> Response:
    """The prompt a chat request renders to: the same messages, tools, chat_template_kwargs and
    reasoning settings as /v1/chat/completions (without sampling, which it ignores)."""
    req = parse_model(ApplyTemplateRequest, await json_object())
    s = services()
    async with using(s, req.model) as engine:
        prepared = prepare_on(s, engine, chat_turn(req))
    return json_response({"prompt": prepared.text})


@blueprint.get("/slots")
async def slots() -> Response:
    """The slots of the model (`?model=` where several are served); an unloaded one has none."""
    s = services()
    if s.settings.no_slots:
        raise NotEnabled("listing the slots is off", feature="slots")
    s.check_loaded()
    engine = s.require_models().resolve(request.args.get("model")).engine
    return json_response(introspect.slots(engine) if engine is not None else [])


@blueprint.post("/slots/<int:slot_id>")
async def slot_action(slot_id: int) -> Response:
    s = services()
    action = request.args.get("action")
    if action not in ("save", "restore", "erase"):
        raise BadRequest("query parameter 'action' must be save, restore or erase", param="action")
    body = await json_object() if action != "erase" else {}
    async with using(s, request.args.get("model") or body.get("model")) as engine:
        if action == "erase":
            return json_response(await engine.run_job(lambda: slotfiles.erase(engine, slot_id)))
        path = slotfiles.slot_file(s.settings.slot_save_path, body.get("filename"), action)
        fn = slotfiles.save if action == "save" else slotfiles.restore
        return json_response(await engine.run_job(lambda: fn(engine, slot_id, path)))


@blueprint.get("/lora-adapters")
async def lora_adapters() -> Response:
    async with using(services(), request.args.get("model")) as engine:
        return json_response([a.public() for a in engine.loras])


@blueprint.post("/lora-adapters")
async def set_lora_adapters() -> Response:
    """Default scales for the following requests: [{"id", "scale"}]; ids not named keep theirs."""
    body = parse_json(await request.get_data(cache=False))
    if not isinstance(body, list):
        raise BadRequest("the body must be an array of {\"id\", \"scale\"}")
    try:
        given = LoraScales.model_validate(body).root
    except ValidationError as e:
        where = ".".join(str(p) for p in e.errors()[0]["loc"])
        raise BadRequest(f"invalid [{where}]: {e.errors()[0]['msg']}", param=where) from None
    async with using(services(), request.args.get("model")) as engine:
        scales = engine.lora_key([(x.id, x.scale) for x in given])
        for a, sc in zip(engine.loras, scales):
            a.scale = sc
        return json_response([a.public() for a in engine.loras])
