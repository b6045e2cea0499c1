"""Speculative decoding: cheap guesses of the next tokens that the model checks in one decode.

Two drafters, by llama-server's `--spec-type` names:
- `draft-simple`: a small draft model (`-md`) with the same vocabulary decodes greedily ahead of
  each slot, in its own llama.cpp context whose sequences mirror the slots; all slots draft in the
  same decodes. Drafting stops where the draft's top probability falls under `p_min`.
- `ngram-simple`: no model; the last `size_n` tokens of the sequence are looked up in what came
  before (prompt and output), and the `size_m` tokens that followed them there are the draft
  (llama-server's rule: at least `size_n` of them). Good for edits of a given text or code.

The engine thread owns a drafter. The stepper verifies a draft by sampling the model at every
drafted position and keeping the drafts up to the first that differs from the sample, so every
token is a sample of the model itself: greedy output is the same as without speculation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import ConfigError
from .placement import common_prefix

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("chimera.speculative")

VOCAB_SLACK = 128  # as llama-server: a draft vocabulary may differ in size by this much (added tokens)


@dataclass(frozen=True)
class DraftLimits:
    """How far a sequence speculates (llama-server's --spec-draft-n-max/-n-min/-p-min, and a
    request's speculative.n_max / n_min / p_min)."""
    n_max: int = 3
    n_min: int = 0
    p_min: float = 0.0


@dataclass
class DraftRequest:
    slot_id: int
    history: list[int]  # the slot's cached tokens and the last sampled one (not yet decoded)
    whole: list[int]  # the sequence's prompt and output, for the n-gram lookup
    n_max: int
    p_min: float
    index: Any = None  # the sequence's n-gram index (ngram-simple)


class Drafter(Protocol):
    kind: str

    def draft(self, reqs: list[DraftRequest]) -> list[list[int]]: ...

    def forget(self, slot_id: int) -> None: ...

    def close(self) -> None: ...


# -- n-grams ---------------------------------------------------------------------------------------
@dataclass
class NgramIndex:
    """Where each n-gram of a token list last started, grown as the list grows."""
    n: int
    last: dict[tuple[int, ...], int] = field(default_factory=dict)
    done: int = 0  # starts indexed so far

    def lookup(self, tokens: list[int]) -> int | None:
        """The latest earlier start of the list's final n-gram (indexing every start before it)."""
        n, end = self.n, len(tokens) - self.n  # the final n-gram starts at `end`
        if end <= 0:
            return None
        for j in range(self.done, end):
            self.last[tuple(tokens[j : j + n])] = j
        self.done = max(self.done, end)
        return self.last.get(tuple(tokens[end:]))


class NgramDrafter:
    kind = "ngram-simple"

    def __init__(self, size_n: int = 12, size_m: int = 48) -> None:
        self.size_n, self.size_m = size_n, size_m

    def new_index(self) -> NgramIndex:
        return NgramIndex(self.size_n)

    def draft(self, reqs: list[DraftRequest]) -> list[list[int]]:
        out: list[list[int]] = []
        for r in reqs:
            toks = r.whole
            j = r.index.lookup(toks) if r.index is not None else None
            if j is None:
                out.append([])
                continue
            start = j + self.size_n
            take = min(self.size_m, r.n_max, len(toks) - start)
            out.append(toks[start : start + take] if take >= min(self.size_n, r.n_max) else [])
        return out

    def forget(self, slot_id: int) -> None:
        pass

    def close(self) -> None:
        pass


# -- a draft model -----------------------------------------------------------------------------------
class ModelDrafter:
    kind = "draft-simple"

    def __init__(self, model: Any, ctx: Any, n_slots: int, n_batch: int, n_ctx: int) -> None:
        self.model = model
        self.ll = model.ll
        self.ctx = ctx
        self.mem = self.ll.llama_get_memory(ctx)
        self.n_batch = n_batch
        self.n_ctx = n_ctx
        self.cache: list[list[int]] = [[] for _ in range(n_slots)]  # tokens in each draft sequence
        self.batch = self.ll.llama_batch_init(max(n_batch, n_slots), 0, 1)
        self.n_vocab = int(model.n_vocab)

    @classmethod
    def load(cls, settings: Settings, target: Any, n_slots: int, n_ctx: int, unified: bool) -> ModelDrafter:
        from .loading import context_params
        from .model import Model, Placement

        assert settings.model_draft is not None
        place = Placement(settings.n_gpu_layers_draft if settings.n_gpu_layers_draft is not None else settings.n_gpu_layers,
                          settings.load_mode, not settings.no_mmap, settings.mlock, None, "none" if settings.device_draft else "layer",
                          0, (), settings.device_draft or settings.device)
        model = Model.load(settings.model_draft, place)
        try:
            check_vocab(target, model)
            ll = model.ll
            # the slots' tokens, and room for each slot's draft beyond them
            p = context_params(ll, settings, n_ctx=settings.ctx_size_draft or n_ctx + n_slots * (settings.draft_max + 2),
                               n_seq=n_slots, unified=unified, threads=settings.threads_draft or settings.threads,
                               threads_batch=settings.threads_batch_draft, type_k=settings.cache_type_k_draft,
                               type_v=settings.cache_type_v_draft)
            ctx = ll.llama_init_from_model(model.ptr, p)
            if not ctx:
                raise ConfigError(f"--model-draft: llama.cpp could not create a context: {model.native.last_error or 'out of memory?'}")
        except BaseException:
            model.free()
            raise
        log.info("draft model %s: %d slots", Path(settings.model_draft).name, n_slots)
        return cls(model, ctx, n_slots, int(ll.llama_n_batch(ctx)), int(ll.llama_n_ctx(ctx)))

    def close(self) -> None:
        if self.batch is not None:
            self.ll.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            self.ll.llama_free(self.ctx)
            self.ctx = None
        self.model.free()

    def forget(self, slot_id: int) -> None:
        if self.cache[slot_id]:
            self.ll.llama_memory_seq_rm(self.mem, slot_id, -1, -1)
            self.cache[slot_id] = []

    def _decode(self, items: list[tuple[int, int, int, bool]]) -> bool:
        b = self.batch
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
        b.n_tokens = len(items)
        return int(self.ll.llama_decode(self.ctx, b)) == 0

    def _pick(self, i: int) -> tuple[int, float]:
        """The draft's greedy token at batch row i, and its probability."""
        logits = np.ctypeslib.as_array(self.ll.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,))
        tok = int(logits.argmax())
        top = float(logits[tok])
        return tok, 1.0 / float(np.exp(logits - top).sum())

    def draft(self, reqs: list[DraftRequest]) -> list[list[int]]:
        out: dict[int, list[int]] = {r.slot_id: [] for r in reqs}
        # catch up: every draft sequence to the slot's tokens, the last one with logits
        pending: list[tuple[int, int, int, bool]] = []
        live: dict[int, DraftRequest] = {}
        for r in reqs:
            cache = self.cache[r.slot_id]
            keep = min(common_prefix(cache, r.history), len(r.history) - 1)
            if keep < len(cache):
                self.ll.llama_memory_seq_rm(self.mem, r.slot_id, keep, -1)
                del cache[keep:]
            for pos in range(keep, len(r.history)):
                pending.append((r.history[pos], pos, r.slot_id, pos == len(r.history) - 1))
            cache.extend(r.history[keep:])
            live[r.slot_id] = r
        picked: dict[int, tuple[int, float]] = {}  # each slot's next draft token and its probability
        while pending:
            chunk, pending = pending[: self.n_batch], pending[self.n_batch :]
            if not self._decode(chunk):
                for r in reqs:
                    self.forget(r.slot_id)
                return [[] for _ in reqs]
            for i, (_, _, sid, logits) in enumerate(chunk):
                if logits:  # read before the next decode replaces the logits
                    picked[sid] = self._pick(i)
        # then one token a round for every slot still drafting
        while live:
            step: list[tuple[int, int, int, bool]] = []
            for sid, r in list(live.items()):
                tok, prob = picked[sid]
                if prob < r.p_min:
                    del live[sid]
                    continue
                out[sid].append(tok)
                if len(out[sid]) >= r.n_max:
                    del live[sid]
                    continue
                step.append((tok, len(self.cache[sid]), sid, True))
            if not step:
                break
            if not self._decode(step):
                for r in reqs:
                    self.forget(r.slot_id)
                break
            for i, (tok, _, sid, _) in enumerate(step):
                self.cache[sid].append(tok)
                picked[sid] = self._pick(i)
        return [out[r.slot_id] for r in reqs]


def check_vocab(target: Any, draft: Any) -> None:
    """The draft model must speak the target's vocabulary (llama-server's check, simplified):
    sizes within VOCAB_SLACK and the same text for the tokens both have, sampled."""
    if abs(int(target.n_vocab) - int(draft.n_vocab)) > VOCAB_SLACK:
        raise ConfigError(f"--model-draft: its vocabulary has {draft.n_vocab} tokens, the model's {target.n_vocab}: "
                          "a draft model must share the model's tokenizer")
    n = min(int(target.n_vocab), int(draft.n_vocab))
    for t in sorted({*range(min(n, 300)), *range(max(0, n - 300), n), *range(0, n, max(1, n // 500))}):
        if target.piece(t, True) != draft.piece(t, True):
            raise ConfigError(f"--model-draft: token {t} is {draft.piece(t, True)!r} in the draft model and "
                              f"{target.piece(t, True)!r} in the model: a draft model must share the model's tokenizer")


def make_drafter(settings: Settings, target: Any, n_slots: int, n_ctx: int, unified: bool) -> Drafter | None:
    kinds = settings.spec_kinds()
    if "draft-simple" in kinds:
        return ModelDrafter.load(settings, target, n_slots, n_ctx, unified)
    if "ngram-simple" in kinds:
        return NgramDrafter(settings.spec_ngram_simple_size_n, settings.spec_ngram_simple_size_m)
    return None
