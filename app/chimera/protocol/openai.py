"""OpenAI request schemas (with llama-server's extensions). No I/O here.

Unknown fields are accepted and ignored, as OpenAI clients send many (user, store, metadata);
known fields are type-checked strictly, so a wrong type is a 400 naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import BadRequest
from .params import GenerationFields


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
    model: str | None = None
    content: str
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = False


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    model: str | None = None
    tokens: list[int]


class ApplyTemplateRequest(ChatCompletionRequest):
    """A chat request rendered, not run: the same messages, tools and template settings."""

    add_generation_prompt: bool = True
