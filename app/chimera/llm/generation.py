"""One request's generation on the engine: its sequences (prompts × n) sharing one event
channel, what it asks for (`GenerationSpec`, in the engine's terms), and its usage.

Knows nothing of HTTP or of any API's shapes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from ..errors import BadRequest, ChimeraError
from .sampling import SamplingParams
from .sequence import Delta, Finished, Sequence, TokenLogprobs

if TYPE_CHECKING:
    from ..config import Settings
    from .engine import Engine


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


@dataclass
class GenerationSpec:
    """What a request asks of the engine."""

    sampling: SamplingParams
    max_tokens: int  # -1: until the slot's context is full
    stops: list[str] = field(default_factory=list)
    n: int = 1  # choices per prompt
    n_probs: int = 0  # log-probabilities of this many alternatives per token
    post_sampling_probs: bool = False  # n_probs over what the sampler chain left, not the raw logits
    cache_prompt: bool = True
    id_slot: int = -1  # run in this slot, waiting for it if busy (-1: the best free one)
    progress: bool = False  # report the prompt's progress as it is read
    timings_per_token: bool = False  # each piece of output carries the timings so far
    lora: list[tuple[int, float]] = field(default_factory=list)  # (adapter id, scale) for this request
    draft: dict[str, Any] = field(default_factory=dict)  # speculative decoding: n_max, n_min, p_min over the server's

    def settings(self, eog: list[int], stream: bool = False) -> dict[str, Any]:
        """The request's settings in llama-server's names (its `generation_settings`): sampling,
        limits, stops and constraint; `ignore_eos` shows as a -inf (null) bias on every EOG token."""
        p = self.sampling
        bias = dict(p.logit_bias) | ({t: -math.inf for t in eog} if p.ignore_eos else {})
        return {
            "seed": p.seed if p.seed is not None and p.seed >= 0 else DEFAULT_SEED,
            "temperature": p.temperature, "dynatemp_range": 0.0, "dynatemp_exponent": 1.0,
            "top_k": p.top_k, "top_p": p.top_p, "min_p": p.min_p, "top_n_sigma": p.top_n_sigma,
            "xtc_probability": p.xtc_probability, "xtc_threshold": p.xtc_threshold, "typical_p": p.typical_p,
            "repeat_last_n": p.repeat_last_n, "repeat_penalty": p.repeat_penalty,
            "presence_penalty": p.presence_penalty, "frequency_penalty": p.frequency_penalty,
            "dry_multiplier": p.dry_multiplier, "dry_base": p.dry_base, "dry_allowed_length": p.dry_allowed_length,
            "dry_penalty_last_n": p.dry_penalty_last_n, "dry_sequence_breakers": list(p.dry_sequence_breakers),
            "mirostat": 0, "mirostat_tau": 5.0, "mirostat_eta": 0.1,
            "stop": list(self.stops), "max_tokens": self.max_tokens, "n_predict": self.max_tokens,
            "ignore_eos": p.ignore_eos, "stream": stream,
            "logit_bias": [{"bias": b if math.isfinite(b) else None, "token": t} for t, b in bias.items()],
            "n_probs": self.n_probs, "min_keep": 0, "grammar": p.grammar or "",
            "samplers": list(SAMPLERS), "timings_per_token": self.timings_per_token,
            "post_sampling_probs": self.post_sampling_probs, "cache_prompt": self.cache_prompt,
            "lora": [{"id": i, "scale": sc} for i, sc in self.lora],
        }


DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED: a random seed per request
SAMPLERS = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature")  # the chain's order


@dataclass
class GenerationDefaults:
    """The server-wide defaults a request's unset fields take (llama-server's --temp, --top-k, ...,
    -n, --grammar); POST /props (with --props) may change them while the server runs."""

    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int = -1

    def public(self) -> dict[str, Any]:
        return self.sampling.public() | {"n_predict": self.max_tokens, "cache_prompt": True}


def generation_defaults(settings: Settings) -> GenerationDefaults:
    """The defaults of llama-server's sampling flags, -n and the default constraint."""
    import json

    from ..errors import ConfigError
    from .sampling import DEFAULT_DRY_BREAKERS, SERVER_DEFAULTS
    from .schema import schema_to_grammar

    p = SamplingParams()
    for flag, name in SERVER_DEFAULTS.items():
        value = getattr(settings, flag)
        if value is not None:
            setattr(p, name, value)
    if settings.dry_sequence_breaker:
        p.dry_sequence_breakers = () if settings.dry_sequence_breaker == ("none",) else settings.dry_sequence_breaker
    else:
        p.dry_sequence_breakers = DEFAULT_DRY_BREAKERS
    p.ignore_eos = settings.ignore_eos
    try:
        if settings.grammar is not None:
            p.grammar = settings.grammar
        elif settings.grammar_file is not None:
            p.grammar = settings.grammar_file.read_text()
        elif settings.json_schema is not None:
            p.grammar = schema_to_grammar(json.loads(settings.json_schema), "--json-schema")
        elif settings.json_schema_file is not None:
            p.grammar = schema_to_grammar(json.loads(settings.json_schema_file.read_text()), "--json-schema-file")
    except (BadRequest, ValueError, OSError) as e:
        raise ConfigError(f"{getattr(e, 'param', None) or 'default constraint'}: {getattr(e, 'message', e)}") from None
    return GenerationDefaults(p, settings.n_predict)


@dataclass
class Choice:
    index: int
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprobs] = field(default_factory=list)
    finished: Finished | None = None


class Generation:
    """The sequences of one request (prompts × n) sharing one event channel."""

    def __init__(self, engine: Engine, prompts: list[list[int]], spec: GenerationSpec, param: str,
                 render_special: bool = False, media: Any = None) -> None:
        self.engine = engine
        self.prompts = prompts
        self.n = spec.n
        limit = spec.max_tokens
        self.media = media  # a MediaPrompt: its placeholders are not vocabulary ids
        self.media_tokens = sum(m.n_tokens for m in media.media.values()) if media is not None else 0
        for p in prompts:
            if media is None:
                engine.model.check_tokens(p, param)
            engine.check_fits(len(p), param)
        if spec.id_slot >= engine.n_slots:
            raise BadRequest(f"id_slot {spec.id_slot} does not exist: this server has slots 0..{engine.n_slots - 1}",
                             param="id_slot")
        lora_key = engine.lora_key(spec.lora)
        draft = None
        if engine.drafter is not None:
            draft = dataclasses.replace(engine.draft_defaults, **spec.draft)
        send, self.receive = trio.open_memory_channel[Delta | Finished](math.inf)
        self.seqs: list[Sequence] = []
        with send:
            for i, p in enumerate(prompts):
                for j in range(spec.n):
                    self.seqs.append(Sequence(
                        prompt=p, params=copy.copy(spec.sampling), max_tokens=limit,
                        stops=list(spec.stops), n_probs=spec.n_probs, post_sampling=spec.post_sampling_probs,
                        cache_prompt=spec.cache_prompt, id_slot=spec.id_slot, progress=spec.progress,
                        timings_per_token=spec.timings_per_token,
                        index=i * spec.n + j, send=send.clone(), render_special=render_special, lora_key=lora_key,
                        media=media.media if media is not None else {}, draft=draft,
                    ))
            engine.submit(self.seqs)
        self.id = ""
        self.created = int(time.time())

    def cancel(self) -> None:
        for s in self.seqs:
            s.cancelled = True
        self.receive.close()
        if self.media is not None:
            self.engine.free_later(self.media, self.seqs)
            self.media = None
        self.engine.wake()

    async def events(self) -> AsyncIterator[Delta | Finished]:
        async for ev in self.receive:
            if isinstance(ev, Finished) and ev.reason == "error":
                raise ev.error if isinstance(ev.error, ChimeraError) else ChimeraError(f"generation failed: {ev.error}")
            yield ev

    async def collect(self) -> list[Choice]:
        """Every choice, whole; the generation is released when this returns or raises."""
        choices = {s.index: Choice(s.index) for s in self.seqs}
        try:
            async for ev in self.events():
                c = choices[ev.index]
                if isinstance(ev, Delta):
                    c.text.append(ev.text)
                    if ev.logprobs:
                        c.logprobs.extend(ev.logprobs)
                else:
                    c.finished = ev
        finally:
            self.cancel()
        return [choices[i] for i in sorted(choices)]

    def usage(self, finished: list[Finished]) -> dict[str, Any]:
        prompt = sum(len(p) for p in self.prompts)
        completion = sum(f.usage["completion_tokens"] for f in finished)
        by_index = {f.index: f for f in finished}
        cached = sum(
            by_index[i * self.n].usage["prompt_tokens_details"]["cached_tokens"]
            for i in range(len(self.prompts)) if i * self.n in by_index
        )
        details: dict[str, Any] = {"cached_tokens": min(cached, prompt)}
        if self.media_tokens:
            details["image_tokens"] = self.media_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": details,
        }
