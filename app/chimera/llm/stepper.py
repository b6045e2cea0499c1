"""One engine step on the llama context: build the batch, decode, sample every slot.

Runs on the engine thread only. Returns what happened to each sequence; the engine turns that
into events for the requests.
"""

from __future__ import annotations

import ctypes
import math
import time
from typing import Any

import numpy as np

from ..errors import ChimeraError
from ..metrics import ModelMetrics
from .model import Model
from .sequence import Delta, Sequence, TokenLogprobs

CANDIDATE = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])  # llama_token_data


class Slot:
    def __init__(self, slot_id: int) -> None:
        self.id = slot_id
        self.cache: list[int] = []  # tokens whose K/V sit in this slot's sequence
        self.seq: Sequence | None = None
        self.lora_key: tuple[float, ...] = ()  # adapter scales its cached KV was computed with
        self.t_used = 0.0  # when its last sequence ended (idle caches are freed oldest first)


class Stepper:
    def __init__(self, model: Model, ctx: Any, n_batch: int, n_slots: int, n_ctx_slot: int, metrics: ModelMetrics) -> None:
        self.model = model
        self.ll = model.ll
        self.ctx = ctx
        self.mem = self.ll.llama_get_memory(ctx)
        self.n_batch = n_batch
        self.n_ctx_slot = n_ctx_slot
        self.metrics = metrics
        self.context_shift = False  # a generation at the end of its context is shifted, not ended
        # wait for the backends right after each decode, with the GIL released (--rpc): reading
        # the logits would otherwise wait for them holding the GIL, and an RPC server that dies
        # meanwhile reports it from a thread that needs the GIL (DeviceGuard): a deadlock
        self.sync_after_decode = False
        self.mtmd: Any = None  # the projector context, with --mmproj
        hold = model.native.hold
        self._sample = hold.llama_sampler_sample
        self._logits_ith = hold.llama_get_logits_ith
        self.seq_rm = hold.llama_memory_seq_rm
        self.eog = model.eog_tokens()
        self._cands: Any = None  # llama_token_data for every token, for post-sampling probabilities
        self.batch = self.ll.llama_batch_init(max(n_batch, n_slots), 0, 1)
        self._b = self.batch  # fields resolved once: the hot loop writes through these
        self._tok, self._pos, self._nseq = self.batch.token, self.batch.pos, self.batch.n_seq_id
        self._seq, self._logits = self.batch.seq_id, self.batch.logits

    def close(self) -> None:
        """Free the batch (the engine frees the context and the model)."""
        if self.batch is not None:
            self.ll.llama_batch_free(self.batch)
            self.batch = None

    def add(self, i: int, tok: int, pos: int, seq_id: int, logits: bool) -> None:
        self._tok[i] = tok
        self._pos[i] = pos
        self._nseq[i] = 1
        self._seq[i][0] = seq_id
        self._logits[i] = logits

    def decode(self, n: int) -> int:
        self.batch.n_tokens = n
        t0 = time.perf_counter()
        rc = int(self.ll.llama_decode(self.ctx, self.batch))
        if self.sync_after_decode and rc == 0:
            self.ll.llama_synchronize(self.ctx)
        self.metrics.decode_seconds.inc(time.perf_counter() - t0)
        return rc

    def can_shift(self) -> bool:
        return bool(self.mem) and bool(self.ll.llama_memory_can_shift(self.mem))

    def shift(self, slot: Slot, seq: Sequence, n_keep: int) -> None:
        """llama-server's context shift: keep the first n_keep tokens (-1: the whole prompt), drop
        half of the rest, and move what follows back over the gap."""
        n_past = len(slot.cache)
        keep = len(seq.prompt) if n_keep < 0 else n_keep + (1 if self.model.add_bos else 0)
        keep = max(0, min(keep, n_past - 2))
        discard = (n_past - keep) // 2
        self.seq_rm(self.mem, slot.id, keep, keep + discard)
        self.ll.llama_memory_seq_add(self.mem, slot.id, keep + discard, n_past, -discard)
        del slot.cache[keep : keep + discard]
        seq.truncated = True
        self.metrics.context_shifts.inc()

    def reuse_chunks(self, slot: Slot, prompt: list[int], n_past: int, min_chunk: int) -> int:
        """llama-server's --cache-reuse: after the common prefix, move later runs of the slot's
        cache that match the prompt (each at least min_chunk tokens) back into place with a KV
        shift, so they are not evaluated again. Returns the tokens now in place; the cache beyond
        them is what the caller drops."""
        cache = slot.cache
        head_c = head_p = n_past
        last = len(prompt) - 1  # the prompt's last token is always evaluated, for its logits
        while head_c < len(cache) and head_p < last:
            n = 0
            while head_c + n < len(cache) and head_p + n < last and cache[head_c + n] == prompt[head_p + n]:
                n += 1
            if n >= min_chunk:
                shift = head_p - head_c
                self.seq_rm(self.mem, slot.id, head_p, head_c)
                self.ll.llama_memory_seq_add(self.mem, slot.id, head_c, head_c + n, shift)
                cache[head_p : head_p + n] = cache[head_c : head_c + n]
                head_c += n
                head_p += n
                n_past = head_p
            else:
                head_c += 1
        if n_past < len(cache):  # what lies between the moved runs and the end is stale
            self.seq_rm(self.mem, slot.id, n_past, -1)
            del cache[n_past:]
        return n_past

    def step(self, active: list[Slot], room: int | None = None,
             drafts: dict[int, list[int]] | None = None) -> list[tuple[Slot, Delta, str | None]]:
        """One decode for every active slot, then sample the ones whose logits were computed.
        `room`: most prompt tokens the step may read (cells free in a shared cache); `drafts`:
        speculated tokens by slot id, decoded after the slot's last token and checked."""
        n = 0
        sampled: list[Slot] = []
        for slot in active:  # the next token of every generating slot first, with its draft
            seq = slot.seq
            assert seq is not None
            if not seq.prefilling:
                pos = len(slot.cache)
                self.add(n, seq.last_token, pos, slot.id, True)
                seq.batch_index = n
                n += 1
                seq.draft_tokens = drafts.get(slot.id, []) if drafts else []
                for k, tok in enumerate(seq.draft_tokens):
                    self.add(n, tok, pos + 1 + k, slot.id, True)
                    n += 1
                slot.cache.append(seq.last_token)
                slot.cache.extend(seq.draft_tokens)
                sampled.append(slot)
        limit = self.n_batch if room is None else min(self.n_batch, n + room)
        fed: list[Sequence] = []
        for slot in active:  # then prompt chunks, up to n_batch
            seq = slot.seq
            assert seq is not None
            if not seq.prefilling or n >= limit:
                continue
            fed.append(seq)
            start = seq.n_prompt_done
            while start in seq.media:  # a media chunk: evaluated by mtmd into this slot's sequence
                self._eval_media(slot, seq.media[start])
                start = seq.n_prompt_done
            take = min(limit - n, len(seq.prompt) - start)
            nxt = min((k for k in seq.media if k > start), default=None)
            if nxt is not None:
                take = min(take, nxt - start)
            chunk = seq.prompt[start : start + take]
            pos = len(slot.cache)
            for k, tok in enumerate(chunk):
                self.add(n + k, tok, pos + k, slot.id, False)
            slot.cache.extend(chunk)
            n += take
            seq.n_prompt_done += take
            self.metrics.prompt_tokens.inc(take)
            if not seq.prefilling:  # the prompt's last token: its logits give the first token
                self._logits[n - 1] = True
                seq.batch_index = n - 1
                sampled.append(slot)
        if n == 0:
            return []
        rc = self.decode(n)
        if rc != 0:
            for slot in active:  # the KV state of these slots is unknown now: drop it
                self.seq_rm(self.mem, slot.id, -1, -1)
                slot.cache.clear()
            raise ChimeraError(f"llama_decode failed with status {rc}")
        now = time.perf_counter()
        for seq in fed:
            seq.t_prompt_last = now
        out = []
        for slot in sampled:
            seq = slot.seq
            assert seq is not None
            if not seq.t_prompt_done:
                seq.t_prompt_done = now
            out.append(self.sample(slot, seq, now))
        return out

    def _eval_media(self, slot: Slot, m: Any) -> None:
        import llama_cpp.mtmd_cpp as mt

        seq = slot.seq
        assert seq is not None and self.mtmd is not None
        new_past = ctypes.c_int32(0)
        t0 = time.perf_counter()
        rc = mt.mtmd_helper_eval_chunk_single(self.mtmd, self.ctx, m.chunk, len(slot.cache), slot.id, self.n_batch,
                                              False, ctypes.byref(new_past))
        self.metrics.decode_seconds.inc(time.perf_counter() - t0)
        if rc != 0:
            raise ChimeraError(f"the projector failed on a media chunk (status {rc})")
        slot.cache.extend(seq.prompt[m.start : m.start + m.n_tokens])
        seq.n_prompt_done = m.start + m.n_tokens
        self.metrics.prompt_tokens.inc(m.n_tokens)

    def sample(self, slot: Slot, seq: Sequence, now: float) -> tuple[Slot, Delta, str | None]:
        """The slot's next token; with a draft, one token per drafted position for as long as
        the model's own samples agree with the draft (then the KV of the rest is dropped)."""
        drafts, seq.draft_tokens = seq.draft_tokens, []
        at = len(slot.cache) - len(drafts)  # cells once the last token is in; each accepted draft adds one
        texts: list[str] = []
        tokens: list[int] = []
        logprobs: list[TokenLogprobs] = []
        finish: str | None = None
        accepted = 0
        for i in range(len(drafts) + 1):
            tok, text, lp, finish = self._next(slot, seq, seq.batch_index + i, now, at + i)
            texts.append(text)
            tokens.append(tok)
            if lp is not None:
                logprobs.append(lp)
            if finish is not None or i == len(drafts) or tok != drafts[i]:
                break
            accepted += 1
        if drafts:
            keep = at + accepted
            if keep < len(slot.cache):
                self.seq_rm(self.mem, slot.id, keep, -1)
                del slot.cache[keep:]
            seq.n_drafted += len(drafts)
            seq.n_accepted += accepted
            self.metrics.draft_tokens.inc(len(drafts))
            self.metrics.draft_accepted.inc(accepted)
        return slot, Delta(seq.index, "".join(texts), tokens, logprobs or None), finish

    def _next(self, slot: Slot, seq: Sequence, idx: int, now: float, n_cache: int) -> tuple[int, str, TokenLogprobs | None, str | None]:
        """Sample batch row idx for the sequence (n_cache: its cells with this row's token)."""
        model = self.model
        lp = None
        entry: TokenLogprobs | None = None
        if seq.n_probs > 0 and seq.post_sampling:
            tok, entry = self._sample_kept(seq, idx)
        else:
            if seq.n_probs > 0:
                raw = np.ctypeslib.as_array(self._logits_ith(self.ctx, idx), shape=(model.n_vocab,))
                top_raw = raw.max()
                lp = raw - (top_raw + math.log(float(np.exp(raw - top_raw).sum())))
            tok = int(self._sample(seq.chain, self.ctx, idx))
        if not seq.generated:
            seq.t_first = now
        seq.generated.append(tok)
        seq.last_token = tok
        finish: str | None = None
        if tok in self.eog and not seq.params.ignore_eos:
            finish = "stop"
            text = seq.flush()
        else:
            text, hit = seq.push_piece(model.piece(tok, seq.render_special))
            if hit:
                finish = "stop"
            elif n_cache + 1 >= self.n_ctx_slot and not self.context_shift:  # the context is full
                finish, seq.truncated = "length", True
                text += seq.flush()
            elif seq.max_tokens >= 0 and len(seq.generated) >= seq.max_tokens:
                finish = "length"
                text += seq.flush()
        if lp is not None:
            k = min(seq.n_probs, model.n_vocab - 1)
            top = np.argpartition(-lp, k)[:k]
            top = top[np.argsort(-lp[top])]
            entry = {"id": tok, "logprob": float(lp[tok]), "bytes": list(model.piece(tok)),
                     "top": [(int(t), float(lp[t])) for t in top]}
        return tok, text, entry, finish

    def _sample_kept(self, seq: Sequence, idx: int) -> tuple[int, TokenLogprobs]:
        """Sample batch row idx as llama_sampler_sample does (the chain applied to every token's
        logit, then the choice accepted), and report the probabilities over the candidates the
        chain kept (llama-server's post_sampling_probs), as log-probabilities: the best n_probs
        with a probability above 0; greedy keeps only the chosen token (probability 1)."""
        ll, n = self.ll, self.model.n_vocab
        if self._cands is None:
            self._cands = np.zeros(n, dtype=CANDIDATE)
        cands = self._cands  # the chain sorts and cuts it in place: every field is written again
        cands["id"] = np.arange(n, dtype=np.int32)
        cands["logit"] = np.ctypeslib.as_array(self._logits_ith(self.ctx, idx), shape=(n,))
        cands["p"] = 0.0
        arr = ll.llama_token_data_array(cands.ctypes.data_as(ctypes.POINTER(ll.llama_token_data)), n, -1, False)
        ll.llama_sampler_apply(seq.chain, ctypes.byref(arr))
        size, chosen = int(arr.size), int(arr.selected)
        if not 0 <= chosen < size:
            raise ChimeraError("the sampler chain selected no token")
        addr = ctypes.cast(arr.data, ctypes.c_void_p).value or 0  # a sampler may have moved the data
        kept = np.frombuffer(memoryview((ctypes.c_char * (size * CANDIDATE.itemsize)).from_address(addr)), dtype=CANDIDATE).copy()
        tok = int(kept["id"][chosen])
        ll.llama_sampler_accept(seq.chain, tok)
        if seq.params.temperature <= 0.0:
            return tok, {"id": tok, "logprob": 0.0, "bytes": list(self.model.piece(tok)), "top": [(tok, 0.0)]}
        logits = kept["logit"].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            e = np.exp(logits - logits.max())
            logp = np.log(e / e.sum())
        order = np.argsort(-logp, kind="stable")[: seq.n_probs]
        top = [(int(kept["id"][i]), float(logp[i])) for i in order if np.isfinite(logp[i])]
        return tok, {"id": tok, "logprob": float(logp[chosen]), "bytes": list(self.model.piece(tok)), "top": top}

    def embed(self, inputs: list[list[int]], n_seq_max: int, raw_first: bool = False, per_token: bool = False) -> list[Any]:
        """Embed token lists, as many per decode as the batch and sequence ids allow. With
        raw_first (rank pooling) each result is the one score, unnormalized: a rank-pooled output
        holds only the classifier's outputs, not n_embd floats."""
        ll, out = self.ll, []
        i = 0
        while i < len(inputs):
            n, group = 0, 0
            while i < len(inputs) and group < n_seq_max and n + len(inputs[i]) <= self.n_batch:
                for pos, tok in enumerate(inputs[i]):
                    self.add(n + pos, tok, pos, group, True)
                n += len(inputs[i])
                group += 1
                i += 1
            if self.mem:
                ll.llama_memory_clear(self.mem, True)
            if self.decode(n) != 0:
                raise ChimeraError("llama_decode failed while embedding")
            if per_token:  # every token's own vector, not normalized
                row = 0
                for s in range(group):
                    n_tok = len(inputs[i - group + s])
                    out.append([np.ctypeslib.as_array(ll.llama_get_embeddings_ith(self.ctx, row + k),
                                                      shape=(self.model.n_embd,)).astype(float).tolist() for k in range(n_tok)])
                    row += n_tok
                self.metrics.prompt_tokens.inc(n)
                continue
            for s in range(group):
                ptr = ll.llama_get_embeddings_seq(self.ctx, s)
                if raw_first:
                    out.append([float(ptr[0])])
                    continue
                vec = np.ctypeslib.as_array(ptr, shape=(self.model.n_embd,)).astype(np.float64)
                norm = float(np.linalg.norm(vec))
                out.append((vec / norm if norm > 0 else vec).tolist())
            self.metrics.prompt_tokens.inc(n)
        return out
