"""`chimera sd`: one image through the same setup, request model, pool and worker as the server."""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any

import trio
from pydantic import ValidationError

from ..config import resolve
from ..errors import ChimeraError, ConfigError, leaf_error
from .lora import check_loras
from .params import ImageRequest
from .pool import ImagePool, worker_argv
from .setup import image_setup


def _request(ns: argparse.Namespace) -> tuple[ImageRequest, dict[str, list[bytes]], str]:
    fields: dict[str, Any] = {"prompt": ns.req_prompt}
    for key in ("negative_prompt", "size", "n", "steps", "cfg_scale", "seed", "strength", "sample_method",
                "scheduler", "control_strength"):
        value = getattr(ns, "req_" + key)
        if value is not None:
            fields[key] = value
    loras = []
    for item in ns.req_lora:
        name, _, scale = item.partition(":")
        loras.append({"name": name, "scale": scale or 1.0})
    fields["loras"] = loras
    try:
        req = ImageRequest.model_validate(fields)
    except ValidationError as e:
        err = e.errors()[0]
        raise ChimeraError(f"--{'-'.join(str(p) for p in err['loc'][:1]).replace('_', '-')}: {err['msg']}") from None
    files: dict[str, list[bytes]] = {}
    for key, field in (("req_init_image", "image"), ("req_mask", "mask"), ("req_control_image", "control_image")):
        path = getattr(ns, key)
        if path:
            try:
                files[field] = [Path(path).read_bytes()]
            except OSError as e:
                raise ChimeraError(f"cannot read {path}: {e.strerror}") from None
    if "mask" in files and "image" not in files:
        raise ChimeraError("--mask needs --init-image")
    return req, files, "edit" if "image" in files else "generate"


def _outputs(base: str, n: int) -> list[Path]:
    p = Path(base)
    if n == 1:
        return [p]
    return [p.with_name(f"{p.stem}-{i + 1}{p.suffix or '.png'}") for i in range(n)]


def sd_main(ns: argparse.Namespace) -> int:
    cli = {k: v for k, v in vars(ns).items() if k != "command" and not k.startswith("req_")}
    try:
        settings = resolve(cli)
        setup = image_setup(settings.model_copy(update={"sd_workers": 1}))
        req, files, kind = _request(ns)
        suffix = Path(ns.req_output).suffix.lower().lstrip(".")
        fmt = {"jpg": "jpeg"}.get(suffix, suffix)
        req = req.model_copy(update={"output_format": fmt if fmt in ("png", "jpeg", "webp") else "png"})
    except (ConfigError, ChimeraError) as e:
        print(f"chimera: error: {getattr(e, 'message', e)}", file=sys.stderr)
        return 2

    async def run() -> dict[str, Any]:
        pool = ImagePool(setup)
        header, data = pool.job(req, kind, files)
        await check_loras(setup.loras, lambda _i: worker_argv(setup))
        box: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            try:
                box["result"] = await pool.request(header, data)
            finally:
                nursery.cancel_scope.cancel()
        return box["result"]

    try:
        result = trio.run(run)
    except BaseException as exc:  # noqa: BLE001 - nurseries wrap errors in groups
        config = leaf_error(exc, ConfigError)
        if config is not None:
            print(f"chimera: error: {config}", file=sys.stderr)
            return 2
        err = leaf_error(exc, ChimeraError)
        if err is None:
            raise
        print(f"chimera: {err.message}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1
    for path, image in zip(_outputs(ns.req_output, len(result["images"])), result["images"]):
        path.write_bytes(base64.b64decode(image["b64_json"]))
        print(f"{path}  {result['width']}x{result['height']}  seed {image['seed']}")
    return 0
