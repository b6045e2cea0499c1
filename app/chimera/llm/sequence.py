"""One generation (one choice of one request) as the engine sees it, and what it reports back."""

from __future__ import annotations

import codecs
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, TypedDict

from .sampling import SamplingParams
from .stops import StopMatcher


class TokenLogprobs(TypedDict):
    """One sampled token's log-probability and its most likely alternatives (engine thread)."""

    id: int
    logprob: float
    bytes: list[int]
    top: list[tuple[int, float]]


class PromptDetails(TypedDict):
    cached_tokens: int


class SequenceUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptDetails


@dataclass
class Delta:
    """Text (and per-token log-probabilities) produced for a sequence in one step."""

    index: int
    text: str
    tokens: list[int]
    logprobs: list[TokenLogprobs] | None = None
    progress: dict[str, Any] | None = None  # a prompt progress report (no text): total, cache, processed, time_ms
    timings: dict[str, Any] | None = None  # the timings so far (timings_per_token, progress)


@dataclass
class Finished:
    index: int
    reason: str  # stop | length | cancelled | error
    usage: SequenceUsage
    timings: dict[str, Any]
    error: Exception | None = None
    stop_word: str | None = None  # the stop string that ended generation, if one did
    truncated: bool = False  # the context ran out (the generation ended there, or was shifted)
    tokens: list[int] = field(default_factory=list)  # every generated token
    slot: int = -1  # the slot it ran in


_ids = itertools.count()


@dataclass(eq=False)
class Sequence:
    prompt: list[int]
    params: SamplingParams
    max_tokens: int  # -1: until the context is full
    stops: list[str] = field(default_factory=list)
    n_probs: int = 0
    post_sampling: bool = False  # n_probs after the sampler chain (llama-server's post_sampling_probs)
    progress: bool = False  # report the prompt's progress (llama-server's return_progress)
    timings_per_token: bool = False  # every delta carries the timings so far
    cache_prompt: bool = True
    render_special: bool = False  # special tokens as text (<tool_call>, <think>, <|channel|> ...)
    lora_key: tuple[float, ...] = ()  # LoRA adapter scales this sequence runs with
    id_slot: int = -1  # the slot it must run in (-1: the best free one)
    media: dict[int, Any] = field(default_factory=dict)  # prompt index → MediaChunk (mtmd)
    index: int = 0  # the choice number within its request
    send: Any = None  # a clone of the request's channel; the engine closes it when done
    id: int = field(default_factory=lambda: next(_ids))
    # set by the engine
    slot: Any = None
    chain: Any = None
    n_cached: int = 0  # prompt tokens found in the slot's KV cache
    n_prompt_done: int = 0  # prompt tokens in the KV cache (cached + evaluated)
    generated: list[int] = field(default_factory=list)
    last_token: int = -1
    batch_index: int = -1
    draft: Any = None  # DraftLimits: how far this sequence speculates (None: not at all)
    draft_tokens: list[int] = field(default_factory=list)  # the draft decoded in this step
    ngram: Any = None  # its n-gram index, for ngram-simple
    n_drafted: int = 0
    n_accepted: int = 0
    finish_reason: str | None = None
    truncated: bool = False  # the context ran out: shifted, or ended at its end
    cancelled: bool = False
    t_submit: float = field(default_factory=time.perf_counter)
    t_admit: float = 0.0
    t_prompt_last: float = 0.0  # the last decode that read part of the prompt
    t_prompt_done: float = 0.0
    progress_at: int = -1  # n_prompt_done at the last progress report
    t_first: float = 0.0
    t_end: float = 0.0

    def __post_init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = StopMatcher(self.stops)
        self.text_len = 0

    @property
    def prefilling(self) -> bool:
        return self.n_prompt_done < len(self.prompt)

    def push_piece(self, piece: bytes, final: bool = False) -> tuple[str, bool]:
        """Decode a token's bytes; returns (text safe to emit, a stop string was hit)."""
        text = self._utf8.decode(piece, final=final)
        out, hit = self._stop.feed(text)
        if final and not hit:
            out += self._stop.flush()
        self.text_len += len(out)
        return out, hit

    @property
    def stop_word(self) -> str | None:
        return self._stop.matched

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True) + self._stop.flush()

    def usage(self) -> SequenceUsage:
        n_prompt = len(self.prompt)
        return {
            "prompt_tokens": n_prompt,
            "completion_tokens": len(self.generated),
            "total_tokens": n_prompt + len(self.generated),
            "prompt_tokens_details": {"cached_tokens": self.n_cached},
        }

    def timings(self) -> dict[str, Any]:
        """llama-server's timings (microseconds, in ms): the prompt so far, and the generation from
        the end of the prompt to now or its last token. The first token comes with the prompt's
        last decode, so the generation rates count the n-1 decode steps after it."""
        prompt_ms = round(max(0.0, self.t_prompt_last - self.t_admit) * 1000, 3) if self.t_prompt_last else 0.0
        n_eval = max(0, self.n_prompt_done - self.n_cached)
        n_gen = len(self.generated)
        gen_ms = 0.0
        if n_gen:
            gen_ms = max(0.001, round(((self.t_end or time.perf_counter()) - (self.t_prompt_done or self.t_admit)) * 1000, 3))
        steps = max(0, n_gen - 1)
        return {
            "cache_n": self.n_cached,
            "prompt_n": n_eval,
            "prompt_ms": prompt_ms,
            "prompt_per_token_ms": prompt_ms / n_eval if n_eval else 0.0,
            "prompt_per_second": 1e3 / prompt_ms * n_eval if prompt_ms else 0.0,
            "predicted_n": n_gen,
            "predicted_ms": gen_ms,
            "predicted_per_token_ms": gen_ms / steps if steps else 0.0,
            "predicted_per_second": 1e3 / gen_ms * steps if gen_ms else 0.0,
        } | ({"draft_n": self.n_drafted, "draft_n_accepted": self.n_accepted} if self.n_drafted else {})
