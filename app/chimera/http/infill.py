"""llama-server's native completion shape: POST /completion (a prompt as text, tokens, or both
mixed) and POST /infill (fill-in-the-middle for code models, with the model's own FIM tokens).

The infill prompt is built as llama-server builds it: [BOS] then each `input_extra` chunk (behind the
file-separator token with its file name, when the model has one), then
FIM_PRE prefix FIM_SUF suffix FIM_MID prompt. The reply is llama-server's completion shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import Field
from quart import Blueprint, Response

from ..errors import BadRequest, ChimeraError, Unsupported
from ..llm.engine import Engine
from ..llm.generation import Generation
from ..llm.sequence import Delta, Finished
from ..protocol.params import GenerationFields
from .advice import for_client
from .common import json_object, json_response, parse_model, services, sse_event, sse_response
from .leases import Streamed, lease

blueprint = Blueprint("infill", __name__)


class InfillRequest(GenerationFields):
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[Any] = Field(default_factory=list)
    prompt: str = ""


def fim_prompt(engine: Engine, req: InfillRequest) -> list[int]:
    m, ll = engine.model, engine.ll
    pre, suf, mid = (int(f(m.vocab)) for f in (ll.llama_vocab_fim_pre, ll.llama_vocab_fim_suf, ll.llama_vocab_fim_mid))
    if min(pre, suf, mid) < 0:
        raise Unsupported("this model has no fill-in-the-middle tokens (FIM prefix / suffix / middle), so /infill cannot work")
    sep = int(ll.llama_vocab_fim_sep(m.vocab))
    toks: list[int] = []
    if m.add_bos:
        toks.append(int(ll.llama_vocab_bos(m.vocab)))
    for i, chunk in enumerate(req.input_extra):
        if not isinstance(chunk, dict) or not isinstance(chunk.get("text"), str) \
                or not isinstance(chunk.get("filename", ""), str):
            raise BadRequest(f"input_extra[{i}] must be {{\"filename\": string, \"text\": string}}", param=f"input_extra.{i}")
        if sep >= 0:
            toks += [sep] + m.tokenize(chunk.get("filename", "") + "\n", add_special=False, parse_special=False)
        toks += m.tokenize(chunk["text"], add_special=False, parse_special=False)
    toks += [pre] + m.tokenize(req.input_prefix, add_special=False, parse_special=False)
    toks += [suf] + m.tokenize(req.input_suffix, add_special=False, parse_special=False)
    toks += [mid] + m.tokenize(req.prompt, add_special=False, parse_special=False)
    return toks


def _stop_type(f: Finished | None) -> str:
    if f is None or f.reason == "stop":
        return "word" if f is not None and f.stop_word else "eos"
    return "limit"


async def _stream(gen: Generation) -> AsyncIterator[bytes]:
    try:
        async for ev in gen.events():
            if isinstance(ev, Delta):
                if ev.text:
                    yield sse_event({"content": ev.text, "stop": False})
            else:
                yield sse_event({"content": "", "stop": True, "stop_type": _stop_type(ev),
                                 "tokens_predicted": ev.usage["completion_tokens"],
                                 "tokens_evaluated": ev.usage["prompt_tokens"], "timings": ev.timings})
    except ChimeraError as e:
        yield sse_event(for_client(e).to_openai())
    finally:
        gen.cancel()


class NativeCompletionRequest(GenerationFields):
    prompt: str | list[str | int] = ""


def native_prompt(engine: Engine, prompt: str | list[str | int]) -> list[int]:
    """llama-server's prompt forms: text, token ids, or a list mixing both (BOS first when the
    model adds one)."""
    m = engine.model
    parts: list[str | int] = [prompt] if isinstance(prompt, str) else list(prompt)
    toks: list[int] = [int(engine.ll.llama_vocab_bos(m.vocab))] if m.add_bos else []
    for i, part in enumerate(parts):
        if isinstance(part, str):
            toks += m.tokenize(part, add_special=False, parse_special=True)
        elif isinstance(part, int) and not isinstance(part, bool) and 0 <= part < engine.n_vocab:
            toks.append(part)
        else:
            raise BadRequest(f"prompt[{i}] must be text or a token id of this model", param=f"prompt.{i}")
    if len(toks) <= (1 if m.add_bos else 0):
        raise BadRequest("the prompt is empty", param="prompt")
    return toks


@blueprint.post("/completion")
@blueprint.post("/completions")  # as llama-server: without /v1 it is the native shape
async def completion() -> Response:
    s = services()
    req = parse_model(NativeCompletionRequest, await json_object())
    return await _native(s, req, lambda engine: native_prompt(engine, req.prompt), "prompt")


@blueprint.post("/infill")
async def infill() -> Response:
    s = services()
    req = parse_model(InfillRequest, await json_object())
    return await _native(s, req, lambda engine: fim_prompt(engine, req), "input_prefix")


async def _native(s: Any, req: GenerationFields, build: Callable[[Engine], list[int]], param: str) -> Response:
    held = await lease(s, req.model)
    try:
        engine = held.engine
        tokens = build(engine)
        gen = engine.generate([tokens], req.spec(engine.n_vocab, defaults=engine.defaults, tokenize=engine.text_tokens), param)
        if req.stream:
            return sse_response(Streamed(_stream(gen), held.release))
        choices = await gen.collect()
        prompt_text = engine.model.detokenize(tokens, special=True)
    except BaseException:
        held.release()
        raise
    held.release()
    c = choices[0]
    f = c.finished
    return json_response({
        "content": "".join(c.text), "model": held.model_id, "stop": True, "stop_type": _stop_type(f),
        "stopping_word": f.stop_word if f else None,
        "prompt": prompt_text,
        "tokens_predicted": f.usage["completion_tokens"] if f else 0, "tokens_evaluated": len(tokens),
        "tokens_cached": f.usage["prompt_tokens_details"]["cached_tokens"] if f else 0,
        "timings": f.timings if f else {},
    })
