"""llama-server's native completion requests (`/completion`, `/infill`): their fields and the
forms a `prompt` takes. No I/O here.

A prompt is text; token ids; a list mixing both (one prompt); `{"prompt_string": ..., "multimodal_data":
[base64, ...]}` (text with a media marker per item); or a list of any of these (several prompts,
one result each), as llama-server's tokenize_input_prompts reads them.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from ..errors import BadRequest
from .params import GenerationFields

PromptPart = str | int


@dataclass
class NativePrompt:
    """One prompt: text and token ids in order (BOS goes before it when it starts with text and
    the model adds one), and the media its text marks, for the projector."""

    parts: list[PromptPart]
    media: list[bytes] | None = None  # with multimodal_data: the text has one media marker per item
    param: str = "prompt"

    @property
    def text(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))


class NativeFields(GenerationFields):
    """The fields llama-server's native routes add to the shared generation fields."""

    return_tokens: bool = False  # the generated token ids in `tokens`
    response_fields: list[str] | None = None  # only these fields ("a/b": b inside a, moved to the top)


class NativeCompletionRequest(NativeFields):
    prompt: str | list[Any] | dict[str, Any] = ""  # see native_prompts()


class InfillRequest(NativeFields):
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[Any] = Field(default_factory=list)
    prompt: str = ""


def _is_token(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _mixed(x: Any, param: str) -> list[PromptPart]:
    """Text, token ids, or a list mixing both: one prompt's parts."""
    if isinstance(x, str):
        return [x]
    if isinstance(x, list) and x and all(isinstance(p, str) or _is_token(p) for p in x):
        return list(x)
    raise BadRequest(f"'{param}' must be text, token ids, a list mixing both, or an object with 'prompt_string'",
                     param=param)


def _one(x: Any, param: str) -> NativePrompt:
    if not isinstance(x, dict):
        return NativePrompt(_mixed(x, param), param=param)
    if "prompt_string" not in x:
        raise BadRequest(f"'{param}': an object prompt has 'prompt_string' (and 'multimodal_data')", param=param)
    parts = _mixed(x["prompt_string"], f"{param}.prompt_string")
    data = x.get("multimodal_data")
    if data is None:
        return NativePrompt(parts, param=param)
    where = f"{param}.multimodal_data"
    if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
        raise BadRequest(f"'{where}' must be a list of base64 strings", param=where)
    if not all(isinstance(p, str) for p in parts):
        raise BadRequest(f"'{param}.prompt_string' must be text when multimodal_data is given", param=f"{param}.prompt_string")
    media = []
    for i, d in enumerate(data):
        try:
            media.append(base64.b64decode(d, validate=True))
        except (binascii.Error, ValueError):
            raise BadRequest(f"'{where}.{i}' is not valid base64", param=f"{where}.{i}") from None
    return NativePrompt(parts, media, param)


def native_prompts(prompt: Any) -> list[NativePrompt]:
    """The request's prompts, as llama-server reads `prompt`: a list holding any token id is one
    prompt (ids and text mixed); any other list is several prompts."""
    if isinstance(prompt, list) and not any(_is_token(p) for p in prompt):
        if not prompt:
            raise BadRequest("'prompt' must not be empty", param="prompt")
        return [_one(p, f"prompt.{i}") for i, p in enumerate(prompt)]
    return [_one(prompt, "prompt")]
