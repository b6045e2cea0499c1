"""llama-server's native completion shape: POST /completion (see protocol/native.py for the forms
a prompt takes) and POST /infill (fill-in-the-middle for code models, with the model's own FIM
tokens). Both answer llama-server's completion object (http/native.py): one per prompt and
choice (a list when there are several), or its stream of partial results.

The infill prompt is built as llama-server builds it: [BOS] then each `input_extra` chunk (behind the
file-separator token with its file name, when the model has one), then
FIM_PRE prefix FIM_SUF suffix FIM_MID prompt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from quart import Blueprint, Response

from ..errors import BadRequest, ChimeraError, Unsupported
from ..llm.engine import Engine
from ..llm.generation import Generation, GenerationSpec
from ..llm.sequence import Delta, Finished
from ..protocol.native import InfillRequest, NativeCompletionRequest, NativeFields, NativePrompt, native_prompts
from .advice import for_client
from .common import json_object, json_response, parse_model, services, sse_event, sse_response
from .leases import Streamed, lease
from .native import completion_object, pick_fields, token_probs

blueprint = Blueprint("infill", __name__)
__all__ = ["InfillRequest", "NativeCompletionRequest", "blueprint"]


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


def prompt_tokens(engine: Engine, p: NativePrompt) -> list[int]:
    """A prompt's ids as llama-server makes them: text with its special tokens parsed, BOS (and
    whatever else the model adds) only when the prompt starts with text; ids as given."""
    if all(isinstance(x, str) and not x for x in p.parts):
        raise BadRequest("the prompt is empty", param=p.param)
    toks: list[int] = []
    for i, part in enumerate(p.parts):
        if isinstance(part, str):
            toks += engine.model.tokenize(part, add_special=i == 0, parse_special=True)
        elif 0 <= part < engine.n_vocab:
            toks.append(part)
        else:  # llama.cpp aborts the process on an id outside the vocabulary
            raise BadRequest(f"token id {part} is outside the vocabulary (0..{engine.n_vocab - 1})", param=f"{p.param}.{i}")
    return toks


Start = Callable[[Engine, GenerationSpec], Awaitable[tuple[Generation, list[str]]]]


@blueprint.post("/completion")
@blueprint.post("/completions")  # as llama-server: without /v1 it is the native shape
async def completion() -> Response:
    s = services()
    req = parse_model(NativeCompletionRequest, await json_object())
    prompts = native_prompts(req.prompt)

    async def start(engine: Engine, spec: GenerationSpec) -> tuple[Generation, list[str]]:
        with_media = [p for p in prompts if p.media is not None]
        if with_media:
            p = with_media[0]
            if len(prompts) > 1:
                raise BadRequest("a prompt with multimodal_data must be the request's only prompt", param=p.param)
            if not engine.projector:
                raise BadRequest("this server has no multimodal projector loaded, so it cannot read multimodal_data "
                                 "(start it with --mmproj PATH)", param=f"{p.param}.multimodal_data")
            return await engine.generate_with_media(p.text, p.media or [], spec), [p.text]
        tokens = [prompt_tokens(engine, p) for p in prompts]
        shown = [engine.prompt_text(t) for t in tokens]
        return engine.generate(tokens, spec, "prompt"), shown

    return await _native(s, req, start)


@blueprint.post("/infill")
async def infill() -> Response:
    s = services()
    req = parse_model(InfillRequest, await json_object())

    async def start(engine: Engine, spec: GenerationSpec) -> tuple[Generation, list[str]]:
        tokens = fim_prompt(engine, req)
        shown = [engine.prompt_text(tokens)]
        return engine.generate([tokens], spec, "input_prefix"), shown

    return await _native(s, req, start)


class _Encoder:
    """One request's results in llama-server's shapes."""

    def __init__(self, engine: Engine, model_id: str, gen: Generation, shown: list[str], spec: GenerationSpec,
                 req: NativeFields, settings: dict[str, Any]) -> None:
        self.engine, self.model_id, self.gen, self.shown, self.spec, self.req = engine, model_id, gen, shown, spec, req
        self.settings = settings

    def final(self, index: int, content: str, f: Finished | None, probs: list[Any]) -> dict[str, Any]:
        k = index // self.spec.n
        body = completion_object(
            index=index, content=content, model=self.model_id, prompt=self.shown[k], n_prompt=len(self.gen.prompts[k]),
            reason=f.reason if f else None, stop_word=f.stop_word if f else None,
            n_predicted=f.usage["completion_tokens"] if f else 0, timings=f.timings if f else {}, settings=self.settings,
            tokens=f.tokens if f and self.req.return_tokens and not self.req.stream else None,
            truncated=f.truncated if f else False, slot=f.slot if f else -1)
        if self.spec.n_probs and not self.req.stream:
            body["completion_probabilities"] = token_probs(self.engine, probs, self.spec.post_sampling_probs)
        return pick_fields(body, self.req.response_fields) if self.req.response_fields else body

    async def stream(self) -> AsyncIterator[bytes]:
        predicted: dict[int, int] = {}
        try:
            async for ev in self.gen.events():
                if isinstance(ev, Delta):
                    predicted[ev.index] = predicted.get(ev.index, 0) + len(ev.tokens)
                    if not (ev.text or ev.logprobs or ev.progress):
                        continue
                    body: dict[str, Any] = {
                        "index": ev.index, "content": ev.text, "tokens": ev.tokens, "stop": False,
                        "tokens_predicted": predicted[ev.index],
                        "tokens_evaluated": len(self.gen.prompts[ev.index // self.spec.n])}
                    if ev.timings is not None:
                        body["timings"] = ev.timings
                    if ev.progress is not None:
                        body["prompt_progress"] = ev.progress
                    if self.spec.n_probs and ev.logprobs:
                        body["completion_probabilities"] = token_probs(self.engine, ev.logprobs, self.spec.post_sampling_probs)
                    yield sse_event(body)
                else:
                    yield sse_event(self.final(ev.index, "", ev, []))
        except ChimeraError as e:
            yield sse_event(for_client(e).to_openai())
        finally:
            self.gen.cancel()


async def _native(s: Any, req: NativeFields, start: Start) -> Response:
    held = await lease(s, req.model)
    streaming = False
    try:
        engine = held.engine
        spec = req.spec(engine.n_vocab, req.n_probs or 0, engine.defaults, engine.text_tokens)
        settings = spec.settings(engine.eog_tokens(), stream=req.stream)
        gen, shown = await start(engine, spec)  # nothing raises between the generation's start and its reader
        enc = _Encoder(engine, held.model_id, gen, shown, spec, req, settings)
        if req.stream:
            streaming = True  # the stream releases the model when it ends
            return sse_response(Streamed(enc.stream(), held.release))
        choices = await gen.collect()
        out = [enc.final(c.index, "".join(c.text), c.finished, c.logprobs) for c in choices]
    finally:
        if not streaming:
            held.release()  # the model may go once this returns: its tokens are read before
    return json_response(out[0] if len(out) == 1 else out)
