"""The continuous-batching engine: one llama context, N slots, one loop.

Each step builds one batch holding the next token of every generating slot plus prompt chunks of
prefilling slots (up to n_batch), decodes it and samples every slot inside one worker-thread call,
then hands the text deltas to the waiting requests through unbounded channels, so a slow reader
never stalls the loop. Only the loop touches the context.

Cancellation handling: a request that goes away closes its channel or sets `cancelled`; the loop
frees its slot before the next step. Cancelling run() frees nothing native: the process is ending.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import trio

from ..config import Settings
from ..errors import BadRequest, ChimeraError, ContextLengthExceeded, NotEnabled, Overloaded, Unsupported
from ..metrics import Metrics
from .chat import ChatTemplate
from .model import Model
from .sampling import build_chain
from .sequence import Delta, Finished, Sequence

log = logging.getLogger("chimera.engine")


class Slot:
    def __init__(self, slot_id: int) -> None:
        self.id = slot_id
        self.cache: list[int] = []  # tokens whose K/V sit in this slot's sequence
        self.seq: Sequence | None = None


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Engine:
    def __init__(self, settings: Settings, model: Model, ctx: Any, metrics: Metrics, n_ctx_slot: int) -> None:
        self.settings = settings
        self.model = model
        self.ll = model.ll
        self.ctx = ctx
        self.mem = self.ll.llama_get_memory(ctx)
        self.metrics = metrics
        self.embeddings = settings.embeddings
        self.n_slots = settings.parallel
        self.n_ctx_slot = n_ctx_slot
        self.n_batch = int(self.ll.llama_n_batch(ctx))
        self.slots = [Slot(i) for i in range(self.n_slots)]
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.embed_jobs: collections.deque[tuple[list[list[int]], trio.Event, dict[str, Any]]] = collections.deque()
        self._wake = trio.Event()
        self._limiter = trio.CapacityLimiter(1)
        self.batch = self.ll.llama_batch_init(max(self.n_batch, self.n_slots), 0, 1)
        self.template = ChatTemplate.select(
            model.chat_template(), settings.chat_template, settings.chat_template_file, model.bos_token(), model.eos_token()
        )
        self._eog: list[int] | None = None
        self._abort: ChimeraError | None = None
        self._gen_window: collections.deque[tuple[float, int]] = collections.deque()
        metrics.total_slots.set(self.n_slots)

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    async def load(cls, settings: Settings, path: Path, metrics: Metrics) -> "Engine":
        return await trio.to_thread.run_sync(cls._load_sync, settings, path, metrics, abandon_on_cancel=True)

    @classmethod
    def _load_sync(cls, settings: Settings, path: Path, metrics: Metrics) -> "Engine":
        model = Model.load(path, settings.n_gpu_layers)
        ll = model.ll
        total = settings.ctx_size or model.n_ctx_train * settings.parallel
        n_ctx_slot = max(16, total // settings.parallel)
        if settings.embeddings:
            n_ctx_slot = min(n_ctx_slot, model.n_ctx_train) if model.n_ctx_train else n_ctx_slot
        p = ll.llama_context_default_params()
        p.n_ctx = n_ctx_slot * settings.parallel
        p.n_seq_max = settings.parallel
        p.n_batch = settings.batch_size
        p.n_ubatch = settings.batch_size if settings.embeddings else min(settings.ubatch_size, settings.batch_size)
        threads = settings.threads or max(1, (os.cpu_count() or 2))
        p.n_threads = threads
        p.n_threads_batch = settings.threads_batch or threads
        p.flash_attn_type = {"on": 1, "off": 0, "auto": -1}[settings.flash_attn]
        p.kv_unified = bool(settings.embeddings)
        p.no_perf = True
        if settings.embeddings:
            p.embeddings = True
            p.pooling_type = -1  # the model's own
        ctx = ll.llama_init_from_model(model.ptr, p)
        if not ctx:
            raise RuntimeError("llama.cpp could not create a context (out of memory for this -c / -np?)")
        if settings.embeddings and ll.llama_pooling_type(ctx) == 0:  # NONE: pool the last token
            ll.llama_free(ctx)
            p.pooling_type = 3
            ctx = ll.llama_init_from_model(model.ptr, p)
        return cls(settings, model, ctx, metrics, int(ll.llama_n_ctx_seq(ctx)) if not settings.embeddings else n_ctx_slot)

    def eog_tokens(self) -> list[int]:
        if self._eog is None:
            self._eog = [t for t in range(self.model.n_vocab) if self.model.is_eog(t)]
        return self._eog

    # -- admission --------------------------------------------------------------------------
    def check_fits(self, n_prompt: int, max_tokens: int, param: str) -> None:
        if n_prompt == 0:
            raise BadRequest("the prompt is empty", param=param)
        need = n_prompt + max(0, max_tokens)
        if n_prompt >= self.n_ctx_slot or need > self.n_ctx_slot:
            raise ContextLengthExceeded(
                f"this request needs {n_prompt} prompt tokens + {max(0, max_tokens)} to generate = {need}, "
                f"but a slot holds {self.n_ctx_slot} tokens (raise -c or lower -np)",
                param=param,
            )

    def submit(self, seqs: list[Sequence]) -> None:
        """Queue sequences (one request's choices, admitted together). Raises before queueing."""
        if self.embeddings:
            raise Unsupported("text generation is not available: the server runs in embeddings mode (--embeddings)")
        if self._abort is not None:
            raise self._abort
        if len(self.waiting) + len(seqs) > self.settings.max_queue + self.free_slots():
            raise Overloaded()
        for s in seqs:
            s.chain = build_chain(self.ll, self.model, s.params, self.eog_tokens() if s.params.ignore_eos else [], self.n_ctx_slot)
        self.waiting.extend(seqs)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def free_slots(self) -> int:
        return sum(1 for s in self.slots if s.seq is None)

    def _admit(self) -> None:
        while self.waiting and (free := [s for s in self.slots if s.seq is None]):
            seq = self.waiting.popleft()
            best = max(free, key=lambda s: (_common_prefix(s.cache, seq.prompt), -len(s.cache)))
            keep = _common_prefix(best.cache, seq.prompt) if seq.cache_prompt else 0
            keep = min(keep, len(seq.prompt) - 1)  # always evaluate one token for its logits
            if keep < len(best.cache):
                self.ll.llama_memory_seq_rm(self.mem, best.id, keep, -1)
                del best.cache[keep:]
            best.seq = seq
            seq.slot = best
            seq.n_cached = keep
            seq.n_prompt_done = keep
            seq.t_admit = time.perf_counter()
            self.metrics.cached_tokens.inc(keep)

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        t_loop = 0.0
        while True:
            if t_loop:
                self.metrics.loop_seconds.inc(time.perf_counter() - t_loop)
                t_loop = 0.0
            self._reap()
            self._admit()
            active = [s for s in self.slots if s.seq is not None]
            if self.embed_jobs:
                await self._run_embed_job()
                continue
            if not active:
                self._wake = trio.Event()
                self.update_gauges()
                await self._wake.wait()
                continue
            t0 = t_loop = time.perf_counter()
            try:
                results = await trio.to_thread.run_sync(self._step, active, limiter=self._limiter)
            except ChimeraError as e:
                for slot in active:
                    self._finish(slot, "error", e)
                continue
            self.metrics.step_seconds.observe(time.perf_counter() - t0)
            self._dispatch(results)

    def abort_all(self, error: ChimeraError) -> None:
        """End every queued and running generation with `error` (before the next step)."""
        self._abort = error
        self._wake.set()

    def _reap(self) -> None:
        if self._abort is not None:
            for s in self.waiting:
                s.cancelled = True
            for slot in self.slots:
                if slot.seq is not None:
                    self._finish(slot, "error", self._abort)
        if any(s.cancelled for s in self.waiting):
            for s in [s for s in self.waiting if s.cancelled]:
                self._release_chain(s)
                s.send.close()
            self.waiting = collections.deque(s for s in self.waiting if not s.cancelled)
        for slot in self.slots:
            if slot.seq is not None and slot.seq.cancelled:
                self._finish(slot, "cancelled")

    def _step(self, active: list[Slot]) -> list[tuple[Slot, Delta | None, str | None]]:
        """Worker thread: one decode for every active slot, then sample the ones with logits."""
        ll, b = self.ll, self.batch
        n = 0
        wants_logits: list[Slot] = []
        for slot in active:  # one token per generating slot first
            seq = slot.seq
            assert seq is not None
            if not seq.prefilling:
                self._batch_add(n, seq.last_token, len(slot.cache), slot.id, True)
                slot.cache.append(seq.last_token)
                seq.batch_index = n
                wants_logits.append(slot)
                n += 1
        for slot in active:  # then prompt chunks, up to n_batch
            seq = slot.seq
            assert seq is not None
            if not seq.prefilling or n >= self.n_batch:
                continue
            take = min(self.n_batch - n, len(seq.prompt) - seq.n_prompt_done)
            start = seq.n_prompt_done
            for k in range(take):
                tok = seq.prompt[start + k]
                last = start + k == len(seq.prompt) - 1
                self._batch_add(n, tok, len(slot.cache), slot.id, last)
                slot.cache.append(tok)
                if last:
                    seq.batch_index = n
                    wants_logits.append(slot)
                n += 1
            seq.n_prompt_done += take
            self.metrics.prompt_tokens.inc(take)
        b.n_tokens = n
        t0 = time.perf_counter()
        rc = ll.llama_decode(self.ctx, b)
        self.metrics.decode_seconds.inc(time.perf_counter() - t0)
        if rc != 0:
            for slot in active:  # the KV state of these slots is unknown now: drop it
                ll.llama_memory_seq_rm(self.mem, slot.id, -1, -1)
                slot.cache.clear()
            raise ChimeraError(f"llama_decode failed with status {rc}")
        now = time.perf_counter()
        out: list[tuple[Slot, Delta | None, str | None]] = []
        for slot in wants_logits:
            seq = slot.seq
            assert seq is not None
            if not seq.t_prompt_done:
                seq.t_prompt_done = now
            out.append(self._sample(slot, seq, now))
        return out

    def _batch_add(self, i: int, tok: int, pos: int, seq_id: int, logits: bool) -> None:
        b = self.batch
        b.token[i] = tok
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = logits

    def _sample(self, slot: Slot, seq: Sequence, now: float) -> tuple[Slot, Delta | None, str | None]:
        ll, model = self.ll, self.model
        logprobs = None
        if seq.n_probs > 0:
            raw = np.ctypeslib.as_array(ll.llama_get_logits_ith(self.ctx, seq.batch_index), shape=(model.n_vocab,))
            lp = raw - (raw.max() + math.log(np.exp(raw - raw.max()).sum()))
        tok = int(ll.llama_sampler_sample(seq.chain, self.ctx, seq.batch_index))
        if not seq.generated:
            seq.t_first = now
        seq.generated.append(tok)
        seq.last_token = tok
        finish: str | None = None
        if model.is_eog(tok) and not seq.params.ignore_eos:
            finish = "stop"
            text, hit = seq.flush(), False
        else:
            text, hit = seq.push_piece(model.piece(tok))
            if hit:
                finish = "stop"
            elif seq.max_tokens >= 0 and len(seq.generated) >= seq.max_tokens:
                finish = "length"
            elif len(slot.cache) + 1 >= self.n_ctx_slot:
                finish = "length"
            if finish == "length":
                text += seq.flush()
        if seq.n_probs > 0:
            top = np.argpartition(-lp, seq.n_probs)[: seq.n_probs]
            top = top[np.argsort(-lp[top])]
            logprobs = [{
                "id": tok, "logprob": float(lp[tok]), "bytes": list(model.piece(tok)),
                "top": [(int(t), float(lp[t])) for t in top],
            }]
        return slot, Delta(seq.index, text, [tok], logprobs), finish

    def _dispatch(self, results: list[tuple[Slot, Delta | None, str | None]]) -> None:
        now = time.perf_counter()
        for slot, delta, finish in results:
            seq = slot.seq
            if seq is None:
                continue
            if len(seq.generated) == 1:
                self.metrics.ttft.observe(now - seq.t_admit)
            self.metrics.generated_tokens.inc()
            self._gen_window.append((now, 1))
            if delta is not None and (delta.text or delta.logprobs):
                try:
                    seq.send.send_nowait(delta)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    seq.cancelled = True
            if finish is not None:
                self._finish(slot, finish)

    def _finish(self, slot: Slot, reason: str, error: Exception | None = None) -> None:
        seq = slot.seq
        if seq is None:
            return
        seq.finish_reason = reason
        seq.t_end = time.perf_counter()
        slot.seq = None
        self._release_chain(seq)
        self.metrics.requests_done.labels(reason).inc()
        try:
            seq.send.send_nowait(Finished(seq.index, reason, seq.usage(), seq.timings(), error))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        seq.send.close()

    def _release_chain(self, seq: Sequence) -> None:
        if seq.chain is not None:
            self.ll.llama_sampler_free(seq.chain)
            seq.chain = None

    # -- embeddings -------------------------------------------------------------------------
    async def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        if not self.embeddings:
            raise NotEnabled("embeddings are off", flag="--embeddings")
        done = trio.Event()
        box: dict[str, Any] = {}
        self.embed_jobs.append((inputs, done, box))
        self._wake.set()
        await done.wait()
        if "error" in box:
            raise box["error"]
        return box["result"]  # type: ignore[no-any-return]

    async def _run_embed_job(self) -> None:
        inputs, done, box = self.embed_jobs.popleft()
        try:
            box["result"] = await trio.to_thread.run_sync(self._embed_sync, inputs, limiter=self._limiter)
        except Exception as e:  # noqa: BLE001 - handed to the waiting request
            box["error"] = e
        done.set()

    def _embed_sync(self, inputs: list[list[int]]) -> list[list[float]]:
        ll, out = self.ll, []
        i = 0
        while i < len(inputs):
            n, group = 0, []
            while i < len(inputs) and len(group) < self.n_slots and n + len(inputs[i]) <= self.n_batch:
                for pos, tok in enumerate(inputs[i]):
                    self._batch_add(n, tok, pos, len(group), True)
                    n += 1
                group.append(inputs[i])
                i += 1
            self.batch.n_tokens = n
            if self.mem:
                ll.llama_memory_clear(self.mem, True)
            rc = ll.llama_decode(self.ctx, self.batch)
            if rc != 0:
                raise ChimeraError(f"llama_decode failed with status {rc}")
            for s in range(len(group)):
                ptr = ll.llama_get_embeddings_seq(self.ctx, s)
                vec = np.ctypeslib.as_array(ptr, shape=(self.model.n_embd,)).astype(np.float64)
                norm = float(np.linalg.norm(vec))
                out.append((vec / norm if norm > 0 else vec).tolist())
            self.metrics.prompt_tokens.inc(n)
        return out

    # -- introspection ----------------------------------------------------------------------
    def update_gauges(self) -> None:
        busy = sum(1 for s in self.slots if s.seq is not None)
        self.metrics.busy_slots.set(busy)
        self.metrics.queue_length.set(len(self.waiting))
        used = sum(len(s.cache) for s in self.slots)
        self.metrics.kv_used.set(used)
        self.metrics.kv_ratio.set(used / (self.n_ctx_slot * self.n_slots))
        now = time.perf_counter()
        while self._gen_window and self._gen_window[0][0] < now - 1.0:
            self._gen_window.popleft()
        self.metrics.tokens_per_second.set(sum(n for _, n in self._gen_window))

    def slots_info(self) -> list[dict[str, Any]]:
        out = []
        for s in self.slots:
            seq = s.seq
            out.append({
                "id": s.id,
                "n_ctx": self.n_ctx_slot,
                "is_processing": seq is not None,
                "n_cached_tokens": len(s.cache),
                "task": None if seq is None else {
                    "id": seq.id,
                    "n_prompt_tokens": len(seq.prompt),
                    "n_prompt_tokens_cached": seq.n_cached,
                    "n_prompt_tokens_processed": seq.n_prompt_done,
                    "n_decoded": len(seq.generated),
                    "n_predict": seq.max_tokens,
                    "params": seq.params.public(),
                },
            })
        return out

    def model_card(self, created: int, model_id: str) -> dict[str, Any]:
        caps = ["embeddings"] if self.embeddings else ["completion", "chat"]
        return {
            "id": model_id,
            "object": "model",
            "created": created,
            "owned_by": "chimera",
            "capabilities": caps,
            "meta": {
                "n_vocab": self.model.n_vocab,
                "n_ctx_train": self.model.n_ctx_train,
                "n_embd": self.model.n_embd,
                "n_params": self.model.n_params(),
                "size": self.model.size(),
                "description": self.model.description(),
            },
        }

    def props(self, model_id: str) -> dict[str, Any]:
        from .sampling import SamplingParams

        return {
            "model_alias": model_id,
            "model_path": str(self.model.path),
            "n_ctx": self.n_ctx_slot * self.n_slots,
            "n_ctx_slot": self.n_ctx_slot,
            "total_slots": self.n_slots,
            "embeddings": self.embeddings,
            "chat_template": self.template.source,
            "chat_template_name": self.template.name,
            "bos_token": self.template.bos_token,
            "eos_token": self.template.eos_token,
            "modalities": {"vision": False, "audio": False},
            "default_generation_settings": {
                "n_ctx": self.n_ctx_slot,
                "params": SamplingParams().public() | {"n_predict": -1, "cache_prompt": True},
            },
            "build_info": (self.ll.llama_version() or b"").decode(),
        }
