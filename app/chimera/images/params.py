"""The image request, one model for JSON bodies, multipart forms and `chimera sd`.

Numbers read the same whether they come as JSON numbers or as multipart strings (`"steps": 4`
and `steps=4`): the fields are lax pydantic types, so `"4"` is 4 and `"x"` is a 400 naming the
field. Limits that depend on the server (`--sd-max-steps`, `--sd-max-pixels`, the LoRA aliases,
the opt-in features) are checked in `pool.ImagePool.job`, with the flag named.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ..errors import BadRequest

SAMPLE_METHODS = ("euler", "euler_a", "heun", "dpm2", "dpm++2s_a", "dpm++2m", "dpm++2mv2", "ipndm", "ipndm_v",
                  "lcm", "ddim_trailing", "tcd", "res_multistep", "res_2s", "er_sde")
SCHEDULERS = ("discrete", "karras", "exponential", "ays", "gits", "sgm_uniform", "simple", "smoothstep",
              "kl_optimal", "lcm", "bong_tangent")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
MULTIPLE = 16  # stable-diffusion.cpp rounds both sides up to this
MAX_SIDE = 16384
MAX_SEED = 2**62
_SIZE = re.compile(r"^\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*$")
_LORA_TAG = re.compile(r"<lora:([^:>]+):([^>]+)>")
_JSON_FIELDS = ("loras", "pm_id_images")  # arrays; in a multipart form they come as JSON text


class LoraRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    scale: float = Field(1.0, ge=-8.0, le=8.0)


class ImageRequest(BaseModel):
    """OpenAI's fields, then stable-diffusion's. Unknown fields (model, user, quality, style) are ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field("", max_length=32000)
    n: int = Field(1, ge=1, le=10)
    size: str | None = None
    response_format: Literal["b64_json", "url"] | None = None
    output_format: Literal["png", "jpeg", "webp"] = "png"
    output_compression: int | None = Field(None, ge=0, le=100)
    stream: bool = False
    negative_prompt: str = Field("", max_length=32000)
    steps: int = Field(20, ge=1)
    cfg_scale: float = Field(7.0, ge=0.0, le=100.0)
    seed: int = Field(-1, ge=-1, le=MAX_SEED)
    sample_method: str | None = None
    scheduler: str | None = None
    strength: float | None = Field(None, ge=0.0, le=1.0)
    loras: list[LoraRef] = Field(default_factory=list, max_length=16)
    control_image: str | None = None  # base64 (JSON bodies); a file part in multipart forms
    control_strength: float | None = Field(None, ge=0.0, le=10.0)
    pm_id_images: list[str] | None = Field(None, max_length=16)  # base64 images
    pm_id_image_set: str | None = None
    pm_style_strength: float | None = Field(None, ge=0.0, le=100.0)

    @field_validator("sample_method", "scheduler")
    @classmethod
    def _named(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v in (None, "", "default"):
            return None
        choices = SAMPLE_METHODS if info.field_name == "sample_method" else SCHEDULERS
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return v

    @field_validator("size")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v in (None, "", "auto"):
            return None
        if not _SIZE.match(v):
            raise ValueError("must be WIDTHxHEIGHT (for example 512x512) or 'auto'")
        return v


def form_to_fields(form: Any) -> dict[str, Any]:
    """A multipart form's text fields as request fields: empty values count as absent, and the
    array fields are JSON text (`loras=[{"name": "x"}]`) or repeated (`pm_id_images[]=...`)."""
    out: dict[str, Any] = {}
    for key in form.keys():
        values = [v for v in form.getlist(key)]
        name = key[:-2] if key.endswith("[]") else key
        if name in _JSON_FIELDS:
            items: list[Any] = []
            for v in values:
                text = v.strip()
                if text.startswith("[") or text.startswith("{"):
                    try:
                        parsed = json.loads(text)
                    except ValueError:
                        raise BadRequest(f"invalid '{name}': not valid JSON", param=name) from None
                    items += parsed if isinstance(parsed, list) else [parsed]
                elif text:
                    items.append(text)
            out[name] = items
        elif values and values[-1] != "":
            out[name] = values[-1]
    return out


def parse_size(size: str) -> tuple[int, int]:
    m = _SIZE.match(size)
    assert m is not None
    return int(m.group(1)), int(m.group(2))


def rounded(width: int, height: int) -> tuple[int, int]:
    up = lambda v: -(-v // MULTIPLE) * MULTIPLE  # noqa: E731
    return up(width), up(height)


def check_size(width: int, height: int, max_pixels: int, param: str = "size") -> tuple[int, int]:
    """(width, height) the engine will make, or a 400: both sides ≥ 1, the rounded area in bounds."""
    if width < 1 or height < 1:
        raise BadRequest(f"invalid '{param}': both sides must be at least 1 pixel", param=param)
    if width > MAX_SIDE or height > MAX_SIDE:
        raise BadRequest(f"invalid '{param}': a side may be at most {MAX_SIDE} pixels", param=param)
    w, h = rounded(width, height)
    if w * h > max_pixels:
        raise BadRequest(f"invalid '{param}': {w}x{h} is {w * h} pixels; this server makes at most {max_pixels} "
                         "(--sd-max-pixels)", param=param)
    return w, h


def split_lora_tags(prompt: str) -> tuple[str, list[LoraRef]]:
    """A1111-style `<lora:NAME:SCALE>` tags in the prompt, taken out as LoRA references by alias."""
    refs: list[LoraRef] = []

    def take(m: re.Match[str]) -> str:
        try:
            scale = float(m.group(2))
        except ValueError:
            raise BadRequest(f"invalid LoRA tag {m.group(0)!r} in 'prompt': the scale is not a number",
                             param="prompt") from None
        refs.append(LoraRef(name=m.group(1).strip(), scale=scale))
        return ""

    return _LORA_TAG.sub(take, prompt).strip(), refs
