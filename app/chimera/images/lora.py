"""Image LoRAs: a closed set of aliases, each checked against the model before any request.

Requests name aliases (`"loras": [{"name": "style", "scale": 0.8}]`), never paths. stable-diffusion.cpp
aborts the whole process on a LoRA whose tensor shapes do not match the model (GGML_ASSERT), and
silently makes the image without a LoRA it cannot read or that matches no tensor. So at start-up
every adapter is tried once in a throwaway worker process: a 64x64, one-step image with and
without it. An adapter that aborts that worker, or changes nothing, stops the server from
starting, with the native error line quoted; the serving workers never see it.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from collections.abc import Callable
from pathlib import Path

import trio

from ..errors import ChimeraError, ConfigError

log = logging.getLogger("chimera.images")

ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SUFFIXES = (".safetensors", ".gguf", ".ckpt", ".pt", ".pth")


def _header_problem(path: Path) -> str | None:
    """Why the file cannot be a LoRA of its kind, from its first bytes; None when it may be one."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            size = path.stat().st_size
            if path.suffix == ".safetensors":
                if len(head) < 8:
                    return "it is too short to be a safetensors file"
                (n,) = struct.unpack("<Q", head)
                if n <= 1 or n > min(size - 8, 100 << 20):
                    return "it is not a safetensors file (bad header length)"
                meta = json.loads(fh.read(n))
                if not isinstance(meta, dict) or not [k for k in meta if k != "__metadata__"]:
                    return "its safetensors header lists no tensors"
            elif path.suffix == ".gguf":
                if head[:4] != b"GGUF":
                    return "it is not a GGUF file"
            elif head[:2] != b"PK" and head[:1] != b"\x80":
                return "it is not a PyTorch checkpoint"
    except OSError as e:
        return f"it cannot be read ({e.strerror})"
    except (ValueError, UnicodeDecodeError):
        return "its safetensors header is not valid JSON"
    return None


def parse_loras(items: tuple[str, ...]) -> dict[str, str]:
    """`--sd-lora NAME=PATH` values → {alias: absolute path}, or a ConfigError naming the problem."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not raw.strip():
            raise ConfigError(f"--sd-lora: {item!r} is not NAME=PATH")
        if not ALIAS.match(name):
            raise ConfigError(f"--sd-lora: alias {name!r} must be letters, digits, '_', '.' or '-' (at most 64)")
        if name in out:
            raise ConfigError(f"--sd-lora: alias {name!r} is given twice")
        path = Path(raw.strip()).expanduser()
        if not path.is_file():
            raise ConfigError(f"--sd-lora {name}: no such file: {path}")
        if path.suffix.lower() not in SUFFIXES:
            raise ConfigError(f"--sd-lora {name}: {path.name} is not a LoRA file ({', '.join(SUFFIXES)})")
        resolved = str(path.resolve())
        if ":" in resolved or ">" in resolved:  # the engine reads LoRAs from <lora:PATH:SCALE> tags
            raise ConfigError(f"--sd-lora {name}: the path may not contain ':' or '>': {resolved}")
        problem = _header_problem(path)
        if problem:
            raise ConfigError(f"--sd-lora {name}: {path} is refused: {problem}")
        out[name] = resolved
    return out


async def check_loras(loras: dict[str, str], argv: Callable[[int], list[str]]) -> None:
    """Try every adapter in a throwaway worker; raise ConfigError listing those that do not fit."""
    from ..workers.supervisor import WorkerDied, WorkerPool

    if not loras:
        return
    probe = WorkerPool("sd-lora-check", argv, 1)
    refused: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(probe.run)
        for name, path in loras.items():
            try:
                await probe.request({"task": "lora_check", "path": path}, b"")
                log.info("image LoRA %r fits the model", name)
            except WorkerDied as e:
                refused.append(f"{name}={path}: it does not fit the model ({e.message})")
            except ChimeraError as e:
                refused.append(f"{name}={path}: {e.message}")
        nursery.cancel_scope.cancel()
    if refused:
        raise ConfigError("--sd-lora refused: " + "; ".join(refused))
