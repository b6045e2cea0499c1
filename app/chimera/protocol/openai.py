"""OpenAI request schemas (with llama-server's extensions). No I/O here.

Unknown fields are accepted and ignored, as OpenAI clients send many (user, store, metadata);
known fields are type-checked strictly, so a wrong type is a 400 naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import BadRequest
from ..llm.sampling import DEFAULT_DRY_BREAKERS, SamplingParams


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
    logit_bias: dict[str, float] | None = None
    ignore_eos: bool = False
    grammar: str | None = None
    json_schema: dict[str, Any] | None = None
    n_probs: int | None = Field(None, ge=0, le=100)
    cache_prompt: bool = True
    lora: list[Any] | None = None  # [{"id", "scale"}]: adapter scales for this request

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

    def limit(self) -> int:
        """Tokens to generate at most; -1 means until the end of the slot's context."""
        for v in (self.max_completion_tokens, self.max_tokens, self.n_predict):
            if v is not None:
                return v
        return -1

    def sampling(self, n_vocab: int) -> SamplingParams:
        p = SamplingParams()
        for name in (
            "temperature", "top_p", "top_k", "min_p", "typical_p", "top_n_sigma", "repeat_penalty",
            "repeat_last_n", "presence_penalty", "frequency_penalty", "dry_multiplier", "dry_base",
            "dry_allowed_length", "dry_penalty_last_n", "xtc_probability", "xtc_threshold", "seed", "grammar",
        ):
            v = getattr(self, name)
            if v is not None:
                setattr(p, name, v)
        p.dry_sequence_breakers = tuple(self.dry_sequence_breakers or DEFAULT_DRY_BREAKERS)
        p.ignore_eos = self.ignore_eos
        if self.logit_bias:
            for key, bias in self.logit_bias.items():
                try:
                    tok = int(key)
                except ValueError:
                    raise BadRequest(f"logit_bias keys must be token ids, got {key!r}", param="logit_bias") from None
                if not 0 <= tok < n_vocab:
                    raise BadRequest(f"logit_bias token {tok} is outside the vocabulary", param="logit_bias")
                p.logit_bias[tok] = max(-100.0, min(100.0, bias)) if abs(bias) != float("inf") else bias
        return p


class ChatCompletionRequest(GenerationFields):
    messages: list[Any]
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    reasoning_format: Literal["auto", "deepseek", "none"] | None = None

    def n_probs_wanted(self) -> int:
        if self.logprobs:
            return max(1, self.top_logprobs or 0)
        return self.n_probs or 0


class CompletionRequest(GenerationFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)
    suffix: str | None = None

    def prompts(self) -> list[str | list[int]]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if not p:
            raise BadRequest("'prompt' must not be empty", param="prompt")
        if all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]

    def n_probs_wanted(self) -> int:
        if self.logprobs is not None:
            return max(1, self.logprobs)
        return self.n_probs or 0


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    content: str
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = False


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    tokens: list[int]


class ApplyTemplateRequest(ChatCompletionRequest):
    """A chat request rendered, not run: the same messages, tools and template settings."""

    add_generation_prompt: bool = True
