"""The image workers: a `WorkerPool` of `chimera _sd-worker` processes, and request → job.

`ImagePool.job` turns a parsed request and its uploaded files into the worker's header and data
frame, checking everything that depends on how the server was started: steps and pixels against
`--sd-max-steps` / `--sd-max-pixels`, LoRA aliases against the closed set, and ControlNet /
PhotoMaker fields against their flags (a 400 naming the flag). Images are decoded in the worker,
so a corrupt upload can never take the server process down.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
from typing import Any

from ..errors import BadRequest
from ..info import self_command
from ..workers.supervisor import WorkerPool
from .params import MAX_SEED, ImageRequest, LoraRef, check_size, parse_size, split_lora_tags
from .setup import ImageSetup

KINDS = ("generate", "edit", "variation")
DEFAULT_SIDE = 512


def worker_argv(setup: ImageSetup) -> list[str]:
    return [*self_command(), "_sd-worker", json.dumps(setup.worker_config())]


def _flag_needed(field: str, flag: str, what: str) -> BadRequest:
    return BadRequest(f"'{field}' needs {what}, which this server was started without (start it with {flag})",
                      param=field, code="not_enabled")


def _b64(value: str, param: str) -> bytes:
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"invalid '{param}': not base64 image data", param=param) from None


class ImagePool(WorkerPool):
    def __init__(self, setup: ImageSetup) -> None:
        os.environ.setdefault("GGML_NO_BACKTRACE", "1")  # workers inherit it: no gdb on a native abort
        argv = worker_argv(setup)
        super().__init__("sd", lambda _i: argv, setup.workers)
        self.setup = setup

    def _loras(self, refs: list[LoraRef]) -> list[list[Any]]:
        known = self.setup.loras
        out: dict[str, float] = {}
        for ref in refs:
            if ref.name not in known:
                listed = ", ".join(sorted(known)) if known else "none (start the server with --sd-lora NAME=PATH)"
                raise BadRequest(f"unknown LoRA {ref.name!r}; known LoRAs: {listed}", param="loras")
            if not -8.0 <= ref.scale <= 8.0:
                raise BadRequest(f"LoRA {ref.name!r}: scale must be between -8 and 8", param="loras")
            out[known[ref.name]] = out.get(known[ref.name], 0.0) + ref.scale
        return [[path, scale] for path, scale in out.items()]

    def job(self, req: ImageRequest, kind: str, files: dict[str, list[bytes]] | None = None) -> tuple[dict[str, Any], bytes]:
        """The worker header and data for a request, or a 400 that names the field (and flag)."""
        assert kind in KINDS
        s = self.setup
        files = {k: v for k, v in (files or {}).items() if v}
        if req.response_format == "url":
            raise BadRequest("response_format 'url' is not supported: chimera has no static-file backend to host "
                             "images; use response_format 'b64_json' (the default)", param="response_format")
        if kind == "generate" and not req.prompt.strip():
            raise BadRequest("'prompt' is required", param="prompt")
        if kind != "generate" and "image" not in files:
            raise BadRequest("'image' is required (a multipart file field 'image' or 'image[]')", param="image")
        if req.steps > s.max_steps:
            raise BadRequest(f"invalid 'steps': at most {s.max_steps} (--sd-max-steps)", param="steps")
        prompt, tagged = split_lora_tags(req.prompt)
        loras = self._loras([*req.loras, *tagged])
        size = None
        if req.size is not None:
            size = check_size(*parse_size(req.size), s.max_pixels)
        elif kind == "generate":  # 512x512, or the largest square --sd-max-pixels allows; edits and
            side = min(DEFAULT_SIDE, int(s.max_pixels**0.5) // 16 * 16)  # variations: the input's size
            size = (side, side)
        if req.control_image is not None:
            files.setdefault("control_image", [_b64(req.control_image, "control_image")])
        if ("control_image" in files or req.control_strength is not None) and not s.control_net:
            raise _flag_needed("control_image" if "control_image" in files else "control_strength",
                               "--sd-control-net PATH", "a ControlNet model")
        if req.control_strength is not None and "control_image" not in files:
            raise BadRequest("'control_strength' needs a 'control_image'", param="control_strength")
        pm_set = None
        if req.pm_id_images:
            if not s.photo_maker:
                raise _flag_needed("pm_id_images", "--sd-photo-maker PATH", "a PhotoMaker model")
            files["pm_id"] = [_b64(v, "pm_id_images") for v in req.pm_id_images]
        elif req.pm_id_image_set is not None:
            if not s.photo_maker:
                raise _flag_needed("pm_id_image_set", "--sd-photo-maker PATH", "a PhotoMaker model")
            if not s.pm_sets:
                raise _flag_needed("pm_id_image_set", "--sd-pm-id-dir DIR", "a directory of id image sets")
            if req.pm_id_image_set not in s.pm_sets:
                raise BadRequest(f"unknown pm_id_image_set {req.pm_id_image_set!r}; known: {', '.join(sorted(s.pm_sets))}",
                                 param="pm_id_image_set")
            pm_set = s.pm_sets[req.pm_id_image_set]
        if req.pm_style_strength is not None and not s.photo_maker:
            raise _flag_needed("pm_style_strength", "--sd-photo-maker PATH", "a PhotoMaker model")
        seed = req.seed if req.seed >= 0 else random.randint(0, 2**31 - 1)
        if seed + req.n > MAX_SEED:
            raise BadRequest(f"invalid 'seed': at most {MAX_SEED - req.n}", param="seed")
        strength = req.strength
        if strength is None:
            strength = 1.0 if "mask" in files else 0.75
        header: dict[str, Any] = {
            "task": "generate", "kind": kind, "prompt": prompt, "negative_prompt": req.negative_prompt,
            "n": req.n, "size": list(size) if size else None, "steps": req.steps, "cfg_scale": req.cfg_scale,
            "seed": seed, "sample_method": req.sample_method, "scheduler": req.scheduler, "strength": strength,
            "loras": loras, "control_strength": req.control_strength, "pm_id_image_set": pm_set,
            "pm_id_embed_path": s.pm_id_embed_path, "pm_style_strength": req.pm_style_strength,
            "output_format": req.output_format, "output_compression": req.output_compression,
            "stream": req.stream, "max_pixels": s.max_pixels, "blobs": [],
        }
        chunks: list[bytes] = []
        for name in ("image", "mask", "control_image", "pm_id"):
            for blob in files.get(name, []):
                header["blobs"].append([name, len(blob)])
                chunks.append(blob)
        return header, b"".join(chunks)
