"""The continuous-batching engine: one llama context, N slots, one loop on one thread.

The loop runs on a dedicated engine thread started from the trio nursery (`Engine.run`), and is
the only code that touches the llama context. Each step builds one batch holding the next token
of every generating slot plus prompt chunks of prefilling slots (up to n_batch), decodes it and
samples every slot (`Stepper.step`), then hands the step's events to the trio thread in one
`run_sync_soon` call, which puts them into the requests' unbounded channels. The loop does not
wait for the trio side, so HTTP work overlaps the next decode and a slow reader never stalls it.

Requests reach the loop through a deque (`submit`) and a threading.Event; cancellation is a flag
on the sequence, read by the loop before each step.

Cancellation handling: cancelling `run()` stops the loop after its current step; the native
context is not freed (the process is ending).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ..config import Settings
from ..errors import BadRequest, ChimeraError, ContextLengthExceeded, ContextTooSmall, NotEnabled, Overloaded, UnknownAdapter, Unsupported
from ..metrics import ModelMetrics
from .chat import MEDIA_MARKER, ChatTemplate
from .context import ContextPlan, memory_for_cache, plan_for
from .doorbell import Doorbell
from .generation import Generation, GenerationSpec, generation_defaults
from .loading import context_params, rope
from .model import Model, Placement
from .native import give_heap_back
from .placement import choose_slot
from .sampling import build_chain
from .sequence import Delta, Finished, Sequence
from .speculative import Drafter, DraftLimits, DraftRequest, make_drafter
from .stepper import Slot, Stepper

log = logging.getLogger("chimera.engine")

Event = tuple[Sequence, Delta | Finished]


@dataclass
class LoraAdapter:
    """A loaded LoRA adapter; `scale` is the default requests run with."""

    id: int
    path: str
    ptr: Any  # llama_adapter_lora_p
    scale: float

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "scale": self.scale}


class Engine:
    def __init__(self, settings: Settings, model: Model, ctx: Any, metrics: ModelMetrics, plan: ContextPlan) -> None:
        self.settings = settings
        self.model = model
        self.ll = model.ll
        self.ctx = ctx
        self.metrics = metrics
        self.embeddings = settings.embeddings
        self.ranking = False  # a context with rank pooling: scores instead of vectors
        self.per_token = False  # --pooling none: a vector for every token of an input
        self.vision = self.audio = False  # what the --mmproj projector reads
        self.defaults = generation_defaults(settings)  # --temp, -n, --grammar ...; POST /props changes them
        self._to_free: collections.deque[Any] = collections.deque()  # media prompts of ended requests
        self.loras: list[LoraAdapter] = []
        self._lora_active: tuple[float, ...] | None = None  # the scales applied to the context now
        self.plan = plan
        self.n_slots = plan.n_slots
        self.n_ctx_slot = plan.n_ctx_slot  # the most tokens one sequence may hold
        self.n_batch = int(self.ll.llama_n_batch(ctx))
        self.slots = [Slot(i) for i in range(self.n_slots)]
        self.stepper = Stepper(model, ctx, self.n_batch, self.n_slots, plan.n_ctx_slot, metrics)
        self.stepper.sync_after_decode = bool(settings.rpc)
        self.context_shift = settings.context_shift and not settings.embeddings and self.stepper.can_shift()
        # --cache-reuse: chunks of a slot's cache moved into place by KV shifting (not with M-RoPE)
        self.cache_reuse = settings.cache_reuse if (not settings.embeddings and self.stepper.can_shift()) else 0
        self.stepper.context_shift = self.context_shift
        self._hold_admission = False  # a sequence was put back for lack of cells: admit none until one ends
        self.drafter: Drafter | None = None  # speculative decoding (--spec-type, -md)
        self.draft_defaults = DraftLimits(settings.draft_max, settings.draft_min, settings.draft_p_min)
        self.template = ChatTemplate.select(
            model.chat_template(), settings.chat_template, settings.chat_template_file, model.bos_token(), model.eos_token()
        )
        # shared with the trio thread: deque appends/pops and flag writes are atomic
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.jobs: collections.deque[tuple[Callable[[], Any], Callable[[Any, BaseException | None], None]]] = collections.deque()
        self._work = threading.Event()
        self._idle = threading.Event()  # cleared while the engine thread runs
        self._idle.set()
        self._stop = False
        self.lost = False  # a device under it is gone (an RPC server died): its thread is stuck for good
        self._abort: ChimeraError | None = None
        self._outbox: list[Event] = []
        self._bell = Doorbell()
        # (time, tokens) per step, for tokens/s over the last second; bounded, since nothing may scrape
        self._gen_window: collections.deque[tuple[float, int]] = collections.deque(maxlen=8192)
        metrics.total_slots.set(self.n_slots)

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    async def load(cls, settings: Settings, path: Path, metrics: ModelMetrics, pooling: int = -1) -> Engine:
        return await trio.to_thread.run_sync(cls.load_sync, settings, path, metrics, pooling, abandon_on_cancel=True)

    @classmethod
    def load_sync(cls, settings: Settings, path: Path, metrics: ModelMetrics, pooling: int = -1,
                  progress: Callable[[float], None] | None = None) -> Engine:
        """pooling: llama.cpp's pooling type for an embedding context (-1: the model's own,
        4: rank, for a cross-encoder reranker)."""
        model = Model.load(path, Placement.of(settings), progress)
        ll = model.ll
        if settings.embeddings:
            # every input whole in one sequence: an equal share each, at most the training context
            total = settings.ctx_size or model.n_ctx_train * settings.n_slots()
            n_ctx_slot = max(16, total // settings.n_slots())
            if model.n_ctx_train:
                n_ctx_slot = min(n_ctx_slot, model.n_ctx_train)
            plan = ContextPlan(n_ctx_slot * settings.n_slots(), settings.n_slots(), True, n_ctx_slot)
        else:
            plan = plan_for(settings, model.meta, memory_for_cache(model.size()), model.n_ctx_train)
            if plan.note:
                log.warning("model %s: %s", path.name, plan.note)
        p = context_params(ll, settings, n_ctx=plan.n_ctx, n_seq=plan.n_slots, unified=plan.unified, threads=settings.threads,
                           threads_batch=settings.threads_batch, type_k=settings.cache_type_k, type_v=settings.cache_type_v,
                           whole_batch=settings.embeddings)
        rope(p, settings)
        if settings.embeddings:
            p.embeddings = True
            p.pooling_type = pooling
        ctx = ll.llama_init_from_model(model.ptr, p)
        if not ctx:
            reason = model.native.last_error.removeprefix("llama_init_from_model: ") or "out of memory for this -c / -np?"
            model.free()
            raise RuntimeError(f"llama.cpp could not create a context: {reason}")
        if settings.embeddings and ll.llama_pooling_type(ctx) == 0 and settings.pooling != "none":  # NONE: pool the last token
            ll.llama_free(ctx)
            p.pooling_type = 3
            ctx = ll.llama_init_from_model(model.ptr, p)
        if not settings.embeddings:  # llama.cpp pads the cache: take its own figures
            n_ctx = int(ll.llama_n_ctx(ctx))
            per_seq = int(ll.llama_n_ctx_seq(ctx))
            plan = ContextPlan(n_ctx, plan.n_slots, plan.unified, min(plan.n_ctx_slot, per_seq) if plan.unified else per_seq,
                               plan.note)
        engine = cls(settings, model, ctx, metrics, plan)
        if not settings.embeddings and settings.spec_kinds():
            try:
                engine.drafter = make_drafter(settings, model, plan.n_slots, plan.n_ctx, plan.unified)
            except BaseException:
                engine.close()
                raise
        engine.ranking = settings.embeddings and int(ll.llama_pooling_type(ctx)) == 4
        engine.per_token = settings.embeddings and int(ll.llama_pooling_type(ctx)) == 0  # --pooling none
        if settings.mmproj is not None and not settings.embeddings:
            import llama_cpp.mtmd_cpp as mt

            from .media import load_projector

            engine.stepper.mtmd = load_projector(mt, str(settings.mmproj), model.ptr, p.n_threads)
            engine.vision = bool(mt.mtmd_support_vision(engine.stepper.mtmd))
            engine.audio = bool(mt.mtmd_support_audio(engine.stepper.mtmd))
        if not settings.embeddings:
            for i, (lpath, scale) in enumerate(settings.lora_adapters()):
                ptr = ll.llama_adapter_lora_init(model.ptr, os.fsencode(lpath))
                if not ptr:
                    raise RuntimeError(f"--lora: {lpath} is not a LoRA adapter for this model")
                engine.loras.append(LoraAdapter(i, str(lpath), ptr, scale))
        return engine

    def close(self) -> None:
        """Free everything native the engine holds: samplers of unfinished sequences, media
        prompts, the projector, LoRA adapters, the batch, the context and the model. Only once
        its thread has stopped (after run() returned)."""
        import llama_cpp.mtmd_cpp as mt

        if not self._idle.wait(60):  # never free what a running step still uses: leak it instead
            log.error("model %s: the engine thread did not stop; its memory is not freed", self.model.path.name)
            return

        for s in list(self.waiting) + [slot.seq for slot in self.slots if slot.seq is not None]:
            self._release_chain(s)
        while self._to_free:
            mp, _ = self._to_free.popleft()
            mp.free(mt)
        if self.stepper.mtmd is not None:
            mt.mtmd_free(self.stepper.mtmd)
            self.stepper.mtmd = None
        self.stepper.close()
        if self.drafter is not None:
            self.drafter.close()
            self.drafter = None
        if self.ctx:
            self.ll.llama_free(self.ctx)
            self.ctx = None
        for a in self.loras:  # freed with the model
            a.ptr = None
        self.model.free()
        self._bell.close()
        give_heap_back()

    def eog_tokens(self) -> list[int]:
        return sorted(self.stepper.eog)

    # -- what the serving core uses (its ChatEngine protocol) -------------------------------
    @property
    def projector(self) -> bool:
        """A multimodal projector is loaded (`vision` / `audio` say what it reads)."""
        return self.stepper.mtmd is not None

    @property
    def template_source(self) -> str:
        return self.template.source

    @property
    def n_vocab(self) -> int:
        return int(self.model.n_vocab)

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool, extra: dict[str, Any]) -> str:
        return self.template.render(messages, add_generation_prompt=add_generation_prompt, **extra)

    def tokenize_prompt(self, text: str, bos: bool = True) -> list[int]:
        """A rendered prompt's tokens (BOS added unless the template wrote it, or `bos` is off)."""
        starts_with_bos = bool(self.template.bos_token) and text.startswith(self.template.bos_token)
        return self.model.tokenize(text, add_special=bos and not starts_with_bos, parse_special=True)

    def text_tokens(self, text: str) -> list[int]:
        """A text's tokens alone: no special tokens added or parsed (logit_bias by text)."""
        return self.model.tokenize(text, add_special=False, parse_special=False)

    def token_bytes(self, token: int) -> bytes:
        return bytes(self.model.piece(token))

    def prompt_text(self, tokens: list[int]) -> str:
        """A prompt's tokens as text, special tokens shown and each media chunk as its marker."""
        out: list[bytes] = []
        for i, t in enumerate(tokens):
            if t >= 0:
                out.append(self.model.piece(t, True))
            elif i == 0 or tokens[i - 1] != t:
                out.append(MEDIA_MARKER.encode())
        return b"".join(out).decode("utf-8", "replace")

    def generate(self, prompts: list[list[int]], spec: GenerationSpec, param: str, render_special: bool = False) -> Generation:
        """Queue the request's sequences; their events arrive on the returned Generation."""
        return Generation(self, prompts, spec, param, render_special=render_special)

    async def generate_with_media(self, text: str, media: list[bytes], spec: GenerationSpec,
                                  render_special: bool = False) -> Generation:
        """A rendered prompt with media markers: the projector splits it first."""
        add_special = not (self.template.bos_token and text.startswith(self.template.bos_token))
        mp = await self.media_prompt(text, media, add_special)
        try:
            return Generation(self, [mp.tokens], spec, "messages", render_special=render_special, media=mp)
        except BaseException:
            self.free_later(mp, [])
            raise

    # -- the trio side ----------------------------------------------------------------------
    def check_fits(self, n_prompt: int, param: str) -> None:
        """A prompt must leave room for a token in its slot; max_tokens is only an upper bound, as in
        llama-server: a generation that reaches the context's end stops there (`length`)."""
        if n_prompt == 0:
            raise BadRequest("the prompt is empty", param=param)
        if n_prompt >= self.n_ctx_slot:
            raise ContextTooSmall(n_prompt, self.n_ctx_slot, param=param, split=not self.plan.unified)

    def submit(self, seqs: list[Sequence]) -> None:
        """Queue one request's sequences (admitted in order). Raises before queueing anything."""
        if self.embeddings:
            raise Unsupported("text generation is not available: the server runs in embeddings mode")
        if self._abort is not None:
            raise self._abort
        if len(self.waiting) + len(seqs) > self.settings.max_queue + self.free_slots():
            raise Overloaded()
        built = []
        try:
            for s in seqs:
                eog = self.eog_tokens() if s.params.ignore_eos else []
                s.chain = build_chain(self.ll, self.model, s.params, eog, self.n_ctx_slot)
                built.append(s)
        except BaseException:
            for s in built:
                self._release_chain(s)
            raise
        self.waiting.extend(seqs)
        self._work.set()

    def wake(self) -> None:
        self._work.set()

    def free_slots(self) -> int:
        return sum(1 for s in self.slots if s.seq is None)

    def abort_all(self, error: ChimeraError) -> None:
        """End every queued and running generation with `error`: at once on this (trio) side, so
        clients get it even while a slow step is under way; the engine thread then drops them
        before its next step (its own events for them find their channels closed)."""
        self._abort = error
        self._work.set()
        running = [slot.seq for slot in self.slots if slot.seq is not None]
        for seq in running + list(self.waiting):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                seq.send.send_nowait(Finished(seq.index, "error", seq.usage(), seq.timings(), error))
            seq.send.close()

    async def embed(self, inputs: list[list[int]]) -> list[Any]:
        """A normalized vector per input; with --pooling none, each input's token vectors (raw)."""
        if not self.embeddings:
            raise NotEnabled("embeddings are off", feature="embeddings")
        if self.ranking:
            raise Unsupported("this model is a reranker: it scores pairs on /v1/rerank and makes no embeddings")
        return await self.run_job(lambda: self.stepper.embed(inputs, self.n_slots, per_token=self.per_token))

    async def embed_inputs(self, items: Seq[str | list[int] | list[int | str]], truncate: bool = False) -> tuple[list[Any], int]:
        """Vectors of inputs, and the tokens they took. An input is a text, token ids, or ids and
        texts mixed (llama-server's form: a text adds the model's special tokens only when it comes
        first). An input longer than the model takes is cut to fit with `truncate`, else refused."""
        if not items:
            raise BadRequest("'input' must not be empty", param="input")
        limit = min(self.n_ctx_slot, self.n_batch)
        token_lists = []
        for i, it in enumerate(items):
            toks: list[int] = []
            for k, piece in enumerate([it] if isinstance(it, str) else it):
                if isinstance(piece, str):
                    toks += self.model.tokenize(piece, add_special=k == 0, parse_special=False)
                else:
                    toks.append(piece)
            if not toks:
                raise BadRequest(f"input[{i}] is empty", param="input")
            self.model.check_tokens(toks, "input")
            if len(toks) > limit:
                if not truncate:
                    raise ContextLengthExceeded(f"input[{i}] is too large: {len(toks)} tokens, and the model takes at most {limit}",
                                                param="input")
                toks = toks[:limit]
            token_lists.append(toks)
        return await self.embed(token_lists), sum(len(t) for t in token_lists)

    async def media_prompt(self, text: str, media: list[bytes], add_special: bool) -> Any:
        """Split a rendered prompt with media markers into text and media chunks (engine thread)."""
        import llama_cpp.mtmd_cpp as mt

        from .media import tokenize

        return await self.run_job(lambda: tokenize(mt, self.stepper.mtmd, text, media, add_special))

    def free_later(self, media_prompt: Any, seqs: list[Sequence]) -> None:
        """Trio thread: a request with media ended; its chunks are freed on the engine thread
        once none of its sequences is queued or in a slot."""
        self._to_free.append((media_prompt, seqs))
        self._work.set()

    async def score(self, inputs: list[list[int]]) -> list[float]:
        """Cross-encoder scores of (query, document) token sequences, batched like embeddings."""
        out = await self.run_job(lambda: self.stepper.embed(inputs, self.n_slots, raw_first=True))
        return [v[0] for v in out]

    async def run_job(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the engine thread between steps and return its result."""
        done = trio.Event()
        box: dict[str, Any] = {}

        def finish(result: Any, error: BaseException | None) -> None:
            box["result"], box["error"] = result, error
            done.set()

        self.jobs.append((fn, finish))
        self._work.set()
        await done.wait()
        if box["error"] is not None:
            raise box["error"]
        return box["result"]

    async def run(self) -> None:
        if self.lost:
            return
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._bell.serve)
                await trio.to_thread.run_sync(self._thread_main, abandon_on_cancel=True)
                nursery.cancel_scope.cancel()
        finally:
            self._stop = True
            self._work.set()
            # the thread ends after its current step: wait for that, or the process could exit
            # (and unload the native libraries) under a running decode, which dies with SIGSEGV
            # (a lost engine's step never ends: the process then ends with os._exit)
            if not self.lost:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._idle.wait, 120)

    def _deliver(self, events: list[Event]) -> None:
        """Trio thread: put a step's events into the requests' channels."""
        for seq, ev in events:
            try:
                seq.send.send_nowait(ev)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                seq.cancelled = True
            if isinstance(ev, Finished):
                seq.send.close()

    def _flush(self) -> None:
        if self._outbox:
            events, self._outbox = self._outbox, []
            self._bell.call_soon(self._deliver, events)

    # -- the engine thread ------------------------------------------------------------------
    def _thread_main(self) -> None:
        self._idle.clear()
        try:
            self._loop()
        finally:
            self._idle.set()

    def _loop(self) -> None:
        # a short GIL switch interval: the engine thread gets the GIL back quickly after a decode
        # even while the trio thread is busy with HTTP work
        sys.setswitchinterval(0.0005)
        while not self._stop:
            self._work.clear()
            t0 = time.perf_counter()
            self._reap()
            self._admit()
            if self.jobs:
                self._run_job()
                continue
            active = [s for s in self.slots if s.seq is not None]
            room = None
            if active and (self.plan.shared or self.context_shift):
                active, room = self._fit(active)
            if not active:
                self._flush()
                if not self._work.is_set() and not self.waiting:
                    self._work.wait()
                continue
            drafts = self._draft(active, room) if self.drafter is not None else None
            if drafts and room is not None:
                room -= sum(len(d) for d in drafts.values())
            try:
                results = self.stepper.step(active, room, drafts)
            except ChimeraError as e:
                log.error("%s", e)
                for slot in active:
                    self._finish(slot, "error", e)
                self._flush()
                continue
            for slot in active:  # progress before the first token it led to
                if slot.seq is not None and slot.seq.progress and slot.seq.n_prompt_done != slot.seq.progress_at:
                    self._report_progress(slot.seq)
            self._collect(results)
            self._flush()
            dt = time.perf_counter() - t0
            self.metrics.step_seconds.observe(dt)
            self.metrics.loop_seconds.inc(dt)

    def _run_job(self) -> None:
        fn, finish = self.jobs.popleft()
        try:
            result, error = fn(), None
        except Exception as e:  # noqa: BLE001 - handed to the waiting request
            result, error = None, e
        self._bell.call_soon(finish, result, error)

    def _reap(self) -> None:
        if self._abort is not None:
            for s in self.waiting:
                s.cancelled = True
            for slot in self.slots:
                if slot.seq is not None:
                    self._finish(slot, "error", self._abort)
        if any(s.cancelled for s in self.waiting):
            keep: collections.deque[Sequence] = collections.deque()
            while self.waiting:
                s = self.waiting.popleft()
                if s.cancelled:
                    self._release_chain(s)
                    reason = "error" if self._abort is not None else "cancelled"
                    self._outbox.append((s, Finished(s.index, reason, s.usage(), s.timings(), self._abort)))
                else:
                    keep.append(s)
            self.waiting.extendleft(reversed(keep))
        for slot in self.slots:
            if slot.seq is not None and slot.seq.cancelled:
                self._finish(slot, "cancelled")
        if self._to_free:
            import llama_cpp.mtmd_cpp as mt

            busy = {id(s.seq) for s in self.slots if s.seq is not None} | {id(s) for s in self.waiting}
            for _ in range(len(self._to_free)):
                mp, seqs = self._to_free.popleft()
                if any(id(s) in busy for s in seqs):
                    self._to_free.append((mp, seqs))
                else:
                    mp.free(mt)

    def lora_key(self, overrides: list[tuple[int, float]]) -> tuple[float, ...]:
        """The adapter scales a request runs with: the defaults, overridden per request by
        (adapter id, scale)."""
        scales = [a.scale for a in self.loras]
        for i, (adapter, scale) in enumerate(overrides):
            if not 0 <= adapter < len(scales):
                raise UnknownAdapter(adapter, len(scales), i)
            scales[adapter] = float(scale)
        return tuple(scales)

    def _apply_lora(self, key: tuple[float, ...]) -> None:
        """Engine thread, with no slot processing: put these adapter scales on the context."""
        import ctypes

        if key == self._lora_active or not self.loras:
            self._lora_active = key
            return
        used = [(a.ptr, sc) for a, sc in zip(self.loras, key) if sc != 0.0]
        arr = (self.ll.llama_adapter_lora_p_ctypes * max(1, len(used)))(*[p for p, _ in used])
        scales = (ctypes.c_float * max(1, len(used)))(*[sc for _, sc in used])
        self.ll.llama_set_adapters_lora(self.ctx, arr if used else None, len(used), scales if used else None)
        self._lora_active = key

    # -- speculative decoding -----------------------------------------------------------------
    def _draft(self, active: list[Slot], room: int | None) -> dict[int, list[int]]:
        """Engine thread: drafts for the generating slots that speculate, within the batch, the
        slot's context, the request's max_tokens and (shared cache) the free cells."""
        assert self.drafter is not None
        reqs: list[DraftRequest] = []
        gen = [s for s in active if s.seq is not None and not s.seq.prefilling]
        budget = self.n_batch - len(gen)
        if room is not None:
            budget = min(budget, room)
        for slot in gen:
            seq = slot.seq
            assert seq is not None
            lim = seq.draft
            if lim is None or lim.n_max <= 0:
                continue
            n = lim.n_max if self.drafter.kind == "draft-simple" else max(lim.n_max, self.settings.spec_ngram_simple_size_m)
            if seq.max_tokens >= 0:
                n = min(n, seq.max_tokens - len(seq.generated) - 1)
            n = min(n, self.n_ctx_slot - len(slot.cache) - 2)
            if n < max(1, lim.n_min):
                continue
            if self.drafter.kind == "ngram-simple" and seq.ngram is None:
                seq.ngram = self.drafter.new_index()  # type: ignore[attr-defined]
            reqs.append(DraftRequest(slot.id, slot.cache + [seq.last_token], seq.prompt + seq.generated, n, lim.p_min, seq.ngram))
        if not reqs:
            return {}
        out: dict[int, list[int]] = {}
        for r, d in zip(reqs, self.drafter.draft(reqs)):
            seq = self.slots[r.slot_id].seq
            assert seq is not None and seq.draft is not None
            d = d[: max(0, budget)]
            if d and len(d) >= seq.draft.n_min:
                out[r.slot_id] = d
                budget -= len(d)
        return out

    # -- room in the KV cache -----------------------------------------------------------------
    def _fit(self, active: list[Slot]) -> tuple[list[Slot], int | None]:
        """Engine thread, before a step: make the cells it needs. Shifts a generation at the end
        of its context (--context-shift). With slots sharing one cache, frees the cached prompts
        of idle slots (least recently used first), then puts back the youngest prompt still being
        read, then ends the longest generation (finish_reason length); returns the slots that
        step and how many prompt tokens it may read (None: no limit but the batch)."""
        if self.context_shift:
            for slot in active:
                seq = slot.seq
                assert seq is not None
                if not seq.prefilling and len(slot.cache) + 1 >= self.n_ctx_slot:
                    self.stepper.shift(slot, seq, self.settings.n_keep)
        if not self.plan.shared:
            return active, None
        gen = [s for s in active if s.seq is not None and not s.seq.prefilling]
        pre = sorted((s for s in active if s.seq is not None and s.seq.prefilling), key=lambda s: s.seq.t_admit if s.seq else 0)
        pending = sum(len(s.seq.prompt) - s.seq.n_prompt_done for s in pre if s.seq is not None)
        want = len(gen) + min(pending, max(0, self.n_batch - len(gen)))
        free = self.plan.n_ctx - sum(len(s.cache) for s in self.slots)
        for idle in sorted((s for s in self.slots if s.seq is None and s.cache), key=lambda s: s.t_used):
            if free >= want:
                break
            free += len(idle.cache)
            self.stepper.seq_rm(self.stepper.mem, idle.id, -1, -1)
            idle.cache.clear()
            if self.drafter is not None:
                self.drafter.forget(idle.id)
        while free < len(gen) + (1 if pre else 0) and len(pre) > (0 if gen else 1):
            young = pre.pop()  # the last admitted gives way: it reads its prompt again later
            free += self._put_back(young)
        while free < len(gen) and gen:
            longest = max(gen, key=lambda s: len(s.cache))
            gen.remove(longest)
            free += len(longest.cache)
            self._finish(longest, "length")
            self.stepper.seq_rm(self.stepper.mem, longest.id, -1, -1)
            longest.cache.clear()
            if self.drafter is not None:
                self.drafter.forget(longest.id)
            self.metrics.context_full.inc()
        return gen + pre, max(0, free - len(gen))

    def _put_back(self, slot: Slot) -> int:
        """Return a sequence still reading its prompt to the head of the queue, freeing its cells."""
        seq = slot.seq
        assert seq is not None
        n = len(slot.cache)
        self.stepper.seq_rm(self.stepper.mem, slot.id, -1, -1)
        slot.cache.clear()
        if self.drafter is not None:
            self.drafter.forget(slot.id)
        slot.seq = None
        seq.slot = None
        seq.n_prompt_done = seq.n_cached = 0
        self.waiting.appendleft(seq)
        self._hold_admission = True
        self.metrics.context_full.inc()
        return n

    def _admit(self) -> None:
        if self._hold_admission:
            if any(s.seq is not None for s in self.slots):
                return
            self._hold_admission = False
        while self.waiting and (free := [s for s in self.slots if s.seq is None]):
            seq = self.waiting[0]
            if seq.lora_key != self._lora_active:
                # adapters apply to the whole context: a request with another adapter set waits
                # until the running ones finish (FIFO), then the context switches to its set
                if len(free) < self.n_slots:
                    return
                self._apply_lora(seq.lora_key)
            if seq.id_slot >= 0:  # the request named its slot (llama-server's id_slot): it waits for that one
                if self.slots[seq.id_slot].seq is not None:
                    return
                free = [self.slots[seq.id_slot]]
            self.waiting.popleft()
            # KV made under other adapters is stale; without cache_prompt nothing is reused
            usable = [s for s in free if s.lora_key == seq.lora_key] if seq.cache_prompt else []
            busy = [s.id for s in self.slots if s.seq is not None]
            best, keep = choose_slot(free, busy, seq.prompt, usable)
            keep = min(keep, len(seq.prompt) - 1)  # always evaluate one token for its logits
            for m in seq.media.values():  # never resume inside a media chunk
                if m.start < keep < m.start + m.n_tokens:
                    keep = m.start
            if self.cache_reuse and seq.cache_prompt and not seq.media and best in usable and keep < len(best.cache):
                reused = self.stepper.reuse_chunks(best, seq.prompt, keep, self.cache_reuse)
                self.metrics.reused_tokens.inc(reused - keep)
                keep = reused
            if keep < len(best.cache):
                self.stepper.seq_rm(self.stepper.mem, best.id, keep, -1)
                del best.cache[keep:]
            best.seq = seq
            best.lora_key = seq.lora_key
            seq.slot = best
            seq.n_cached = keep
            seq.n_prompt_done = keep
            seq.t_admit = time.perf_counter()
            self.metrics.cached_tokens.inc(keep)
            if seq.progress:  # the first report: nothing read yet but what the cache held
                self._report_progress(seq)

    def _report_progress(self, seq: Sequence) -> None:
        """llama-server's prompt_progress: the prompt's tokens, those from the cache, those in the
        KV cache now (cached + read), and the time since the prompt started."""
        seq.progress_at = seq.n_prompt_done
        progress = {"total": len(seq.prompt), "cache": seq.n_cached, "processed": seq.n_prompt_done,
                    "time_ms": round((time.perf_counter() - seq.t_admit) * 1000, 3)}
        self._outbox.append((seq, Delta(seq.index, "", [], progress=progress,
                                        timings=seq.timings() if seq.timings_per_token else None)))

    def _collect(self, results: list[tuple[Slot, Delta, str | None]]) -> None:
        now = time.perf_counter()
        for slot, delta, finish in results:
            seq = slot.seq
            if seq is None:
                continue
            if len(seq.generated) == 1:
                self.metrics.ttft.observe(now - seq.t_admit)
            if delta.text or delta.logprobs:
                if seq.timings_per_token:
                    delta.timings = seq.timings()
                self._outbox.append((seq, delta))
            if finish is not None:
                self._finish(slot, finish)
        n = sum(len(delta.tokens) for _, delta, _ in results)
        self.metrics.generated_tokens.inc(n)
        self._gen_window.append((now, n))

    def _finish(self, slot: Slot, reason: str, error: Exception | None = None) -> None:
        seq = slot.seq
        if seq is None:
            return
        seq.finish_reason = reason
        seq.t_end = time.perf_counter()
        slot.seq = None
        slot.t_used = seq.t_end
        self._hold_admission = False
        self._release_chain(seq)
        self.metrics.finished(reason).inc()
        self._outbox.append((seq, Finished(seq.index, reason, seq.usage(), seq.timings(), error, seq.stop_word,
                                           seq.truncated, list(seq.generated), slot.id)))

    def _release_chain(self, seq: Sequence) -> None:
        if seq.chain is not None:
            self.ll.llama_sampler_free(seq.chain)
            seq.chain = None

    # -- introspection (read from the trio thread; values may be one step old) -------------
    def update_gauges(self) -> None:
        self.metrics.busy_slots.set(self.n_slots - self.free_slots())
        self.metrics.queue_length.set(len(self.waiting))
        used = sum(len(s.cache) for s in self.slots)
        self.metrics.kv_used.set(used)
        self.metrics.kv_ratio.set(used / self.plan.n_ctx)
        now = time.perf_counter()
        window = [(t, n) for t, n in list(self._gen_window) if t >= now - 1.0]
        self.metrics.tokens_per_second.set(sum(n for _, n in window))
        while self._gen_window and self._gen_window[0][0] < now - 10.0:
            self._gen_window.popleft()
