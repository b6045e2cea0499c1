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
    add_generation_prompt: bool | None = None  # llama-server / vLLM: default on
    continue_final_message: bool | None = None  # continue the last (assistant) message; default: when it is one

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
    input: Any  # see prompts()
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)

    def prompts(self) -> list[str | list[int | str]]:
        """The inputs, as llama-server reads them: a string; token ids; a list mixing ids and
        strings (one input); `{"prompt_string": ...}` or `{"content": [text parts]}`; or a list of
        any of these (several inputs, a list of strings included)."""
        raw = self.input
        if isinstance(raw, list) and raw and all(isinstance(x, (int, str)) and not isinstance(x, bool) for x in raw) \
                and any(isinstance(x, int) for x in raw):
            return [list(raw)]
        if isinstance(raw, list):
            if not raw:
                raise BadRequest("'input' must not be empty", param="input")
            return [_one_prompt(x, f"input[{i}]") for i, x in enumerate(raw)]
        return [_one_prompt(raw, "input")]


def _one_prompt(x: Any, where: str) -> str | list[int | str]:
    if isinstance(x, str):
        return x
    if isinstance(x, list) and all(isinstance(t, (int, str)) and not isinstance(t, bool) for t in x):
        return list(x)
    if isinstance(x, dict):
        if isinstance(x.get("prompt_string"), str):
            return str(x["prompt_string"])
        parts = x.get("content")
        if isinstance(parts, list) and parts:
            texts = []
            for j, p in enumerate(parts):
                if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                    kind = p.get("type") if isinstance(p, dict) else type(p).__name__
                    raise BadRequest(f"{where}.content[{j}]: only text parts can be embedded (got {kind!r})", param="input")
                texts.append(p["text"])
            return "".join(texts)
        raise BadRequest(f"{where}: an object input has 'prompt_string' or 'content' as a list of text parts", param="input")
    raise BadRequest(f"{where}: expected a string, token ids, or an object with 'prompt_string' or 'content'", param="input")


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
