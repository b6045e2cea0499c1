"""The generation fields every text-generating route shares (llama-server's set: OpenAI's
sampling fields and llama.cpp's extensions), and how they become the engine's GenerationSpec.
No I/O here.

Sampling fields are the fields of `SamplingParams` itself: a field added there is taken from
requests by its name, with no second list to keep in step.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import BadRequest
from ..llm.generation import GenerationDefaults, GenerationSpec
from ..llm.sampling import DEFAULT_DRY_BREAKERS, SamplingParams

# fields of SamplingParams that requests do not set directly, or set in another shape
_NOT_FROM_REQUEST = frozenset({"logit_bias", "dry_sequence_breakers", "ignore_eos"})
SAMPLING_FIELDS = tuple(f.name for f in dataclasses.fields(SamplingParams) if f.name not in _NOT_FROM_REQUEST)


class LoraScale(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: int = Field(ge=0)
    scale: float = 1.0

    @field_validator("scale", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class GenerationFields(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=16)
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)
    n_predict: int | None = Field(None, ge=-1)
    stop: str | list[str] | None = None
    temperature: float | None = Field(None, ge=0.0, le=10.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    typical_p: float | None = Field(None, ge=0.0, le=1.0)
    top_n_sigma: float | None = None
    repeat_penalty: float | None = Field(None, ge=0.0)
    repeat_last_n: int | None = Field(None, ge=-1)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    dry_multiplier: float | None = Field(None, ge=0.0)
    dry_base: float | None = Field(None, ge=1.0)
    dry_allowed_length: int | None = Field(None, ge=0)
    dry_penalty_last_n: int | None = Field(None, ge=-1)
    dry_sequence_breakers: list[str] | None = None
    xtc_probability: float | None = Field(None, ge=0.0, le=1.0)
    xtc_threshold: float | None = Field(None, ge=0.0, le=1.0)
    seed: int | None = None
    # OpenAI's {"token id": bias}; llama-server's [[token id or text, bias or false], ...] and text keys too
    logit_bias: dict[str, float | bool] | list[list[Any]] | None = None
    ignore_eos: bool = False
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None
    n_probs: int | None = Field(None, ge=0, le=100)
    post_sampling_probs: bool = False  # n_probs after the sampler chain, as probabilities
    cache_prompt: bool = True
    id_slot: int = Field(-1, ge=-1)  # run in this slot (llama-server's; -1: any)
    verbose: bool | None = None  # llama-server's `__verbose` debug object (default: on with -v)
    return_progress: bool = False  # streamed: prompt_progress reports while the prompt is read
    timings_per_token: bool = False  # streamed: the timings so far on every piece of output
    lora: list[LoraScale] | None = None  # adapter scales for this request
    # speculative decoding, as llama-server takes it (with -md or --spec-type)
    speculative_n_max: int | None = Field(None, ge=0, le=256, alias="speculative.n_max")
    speculative_n_min: int | None = Field(None, ge=0, le=256, alias="speculative.n_min")
    speculative_p_min: float | None = Field(None, ge=0.0, le=1.0, alias="speculative.p_min")

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 16:
            raise ValueError("at most 16 stop strings")
        return v

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def limit(self, default: int = -1) -> int:
        """Tokens to generate at most; -1 means until the end of the slot's context."""
        for v in (self.max_completion_tokens, self.max_tokens, self.n_predict):
            if v is not None:
                return v
        return default

    @staticmethod
    def _bias_tokens(key: Any, n_vocab: int, tokenize: Callable[[str], list[int]] | None) -> list[int]:
        """The tokens a logit_bias key stands for: an id, or (llama-server) every token of a text."""
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise BadRequest(f"logit_bias keys are token ids or text, got {key!r}", param="logit_bias")
        if isinstance(key, str):
            try:
                key = int(key)
            except ValueError:
                if tokenize is None:
                    raise BadRequest(f"logit_bias keys must be token ids, got {key!r}", param="logit_bias") from None
                return tokenize(key)
        if not 0 <= key < n_vocab:
            raise BadRequest(f"logit_bias token {key} is outside the vocabulary", param="logit_bias")
        return [key]

    def sampling(self, n_vocab: int, defaults: SamplingParams | None = None,
                 tokenize: Callable[[str], list[int]] | None = None) -> SamplingParams:
        """The request's sampling: its own fields over the server's defaults (llama-server's
        --temp, --top-k, ..., --grammar); a constraint of the request's own replaces the default one."""
        p = copy.copy(defaults) if defaults is not None else SamplingParams()
        p.logit_bias = {}
        for name in SAMPLING_FIELDS:
            v = getattr(self, name)
            if v is not None:
                setattr(p, name, v)
        if self.dry_sequence_breakers is not None or defaults is None:
            p.dry_sequence_breakers = tuple(self.dry_sequence_breakers or DEFAULT_DRY_BREAKERS)
        p.ignore_eos = self.ignore_eos or (defaults is not None and defaults.ignore_eos and "ignore_eos" not in self.model_fields_set)
        if self.logit_bias:
            pairs = list(self.logit_bias.items()) if isinstance(self.logit_bias, dict) else self.logit_bias
            for i, pair in enumerate(pairs):
                if len(pair) != 2 or not isinstance(pair[1], (int, float)):
                    raise BadRequest(f"logit_bias[{i}] must be a token (or text) and a bias (a number or false)", param="logit_bias")
                key, bias = pair
                bias = float("-inf") if bias is False else float(bias)
                for tok in self._bias_tokens(key, n_vocab, tokenize):
                    p.logit_bias[tok] = max(-100.0, min(100.0, bias)) if abs(bias) != float("inf") else bias
        return p

    def spec(self, n_vocab: int, n_probs: int = 0, defaults: GenerationDefaults | None = None,
             tokenize: Callable[[str], list[int]] | None = None) -> GenerationSpec:
        d = defaults or GenerationDefaults()
        return GenerationSpec(
            sampling=self.sampling(n_vocab, d.sampling, tokenize), max_tokens=self.limit(d.max_tokens), stops=self.stop_list(), n=self.n,
            n_probs=n_probs, post_sampling_probs=self.post_sampling_probs, cache_prompt=self.cache_prompt,
            id_slot=self.id_slot, progress=self.return_progress and self.stream, timings_per_token=self.timings_per_token,
            lora=[(x.id, x.scale) for x in self.lora or []],
            draft={k: v for k, v in (("n_max", self.speculative_n_max), ("n_min", self.speculative_n_min),
                                     ("p_min", self.speculative_p_min)) if v is not None})
