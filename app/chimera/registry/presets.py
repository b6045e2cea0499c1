"""`--models-preset FILE`: per-model serve options in TOML, and Ollama-style durations.

    [defaults]              # every model
    ctx-size = 8192

    [qwen3-8b]              # a model from --models-dir, by id
    parallel = 2
    pin = true
    alias = ["qwen", "default"]

    [my-model]              # a model of its own
    model = "/models/my-model.gguf"
    load-on-startup = true
    keep-alive = "30m"

Keys are the serve flags that concern one model, by their long or short name without dashes
(`ctx-size` or `c`, `n-gpu-layers` or `ngl`, ...), as llama-server's presets name them, plus
`model`, `alias`, `load-on-startup`, `pin`, `keep-alive` and `stop-timeout`; llama-server's
`LLAMA_ARG_*` names of the same options, its `[*]` name for `[defaults]` and its top-level
`version = 1` are accepted too. An unknown key or a bad value is a ConfigError naming the file,
the table and the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..config import OPTIONS, Settings
from ..errors import ConfigError

PER_MODEL = frozenset({
    "ctx_size", "parallel", "batch_size", "ubatch_size", "threads", "threads_batch", "n_gpu_layers", "flash_attn",
    "mmproj", "chat_template", "chat_template_file", "reasoning_format", "reasoning_budget", "lora", "lora_scaled",
    "lora_init_without_apply", "embeddings", "reranking", "rpc",
})
PRESET_ONLY = frozenset({"model", "alias", "tags", "load-on-startup", "pin", "keep-alive", "stop-timeout"})
_KEYS: dict[str, str] = {flag.lstrip("-"): o.dest for o in OPTIONS if o.dest in PER_MODEL for flag in o.flags}
_LLAMA_ENV = {  # llama-server's environment names of the same options, where they are not LLAMA_ARG_ + the dest
    "parallel": "N_PARALLEL", "batch_size": "BATCH", "ubatch_size": "UBATCH",
    "reasoning_format": "THINK", "reasoning_budget": "THINK_BUDGET",
}
_KEYS |= {"LLAMA_ARG_" + _LLAMA_ENV.get(o.dest, o.dest.upper()): o.dest for o in OPTIONS if o.dest in PER_MODEL}
DEFAULT_TABLES = ("defaults", "*")  # llama-server names its global table [*] (in TOML: ["*"])
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any, where: str) -> float:
    """Seconds from a number or an Ollama duration ("5m", "1h30m", "0", "-1"); negative: forever."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        parts = re.findall(r"-?\d+(?:\.\d+)?(?:ms|s|m|h)?", text)
        if parts and "".join(parts) == text.replace(" ", ""):
            total = 0.0
            for p in parts:
                m = _DURATION.match(p)
                assert m is not None
                total += float(m.group(1)) * _UNIT[m.group(2)]
            return total
    raise ConfigError(f"{where}: expected a duration such as 300, \"5m\", \"1h\", 0 or -1, got {value!r}")


@dataclass
class Preset:
    options: dict[str, Any] = field(default_factory=dict)  # Settings fields
    model: Path | None = None
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] | None = None
    load_on_startup: bool | None = None
    pin: bool | None = None
    keep_alive: float | None = None
    stop_timeout: float | None = None


def _table(path: Path, name: str, table: Any) -> Preset:
    where = f"{path} [{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table of options")
    out = Preset()
    for key, value in table.items():
        at = f"{where} {key}"
        if key == "model":
            if not isinstance(value, str):
                raise ConfigError(f"{at}: expected a path")
            out.model = (path.parent / value).resolve() if not Path(value).is_absolute() else Path(value)
        elif key == "alias":
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise ConfigError(f"{at}: expected a name or a list of names")
            out.aliases = tuple(names)
        elif key == "tags":
            tags = [t.strip() for t in value.split(",")] if isinstance(value, str) else value
            if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
                raise ConfigError(f"{at}: expected a list of tags or a comma-separated string")
            out.tags = tuple(tags)
        elif key in ("load-on-startup", "pin"):
            if not isinstance(value, bool):
                raise ConfigError(f"{at}: expected true or false, got {value!r}")
            setattr(out, key.replace("-", "_"), value)
        elif key == "keep-alive":
            out.keep_alive = parse_duration(value, at)
        elif key == "stop-timeout":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{at}: expected seconds (a number >= 0), got {value!r}")
            out.stop_timeout = float(value)
        elif key in _KEYS:
            dest = _KEYS[key]
            if dest in ("mmproj", "chat_template_file") and isinstance(value, str) and not Path(value).is_absolute():
                value = str((path.parent / value).resolve())
            if dest in ("lora", "lora_scaled"):
                value = tuple(value) if isinstance(value, list) else (value,)
            out.options[dest] = value
        else:
            known = ", ".join(sorted({*_KEYS, *PRESET_ONLY}))
            raise ConfigError(f"{at}: unknown key (the keys are: {known})")
    return out


def load_presets(path: Path) -> tuple[Preset, dict[str, Preset]]:
    """([defaults], {model id: its table})."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"--models-preset: cannot read {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--models-preset: {path} is not valid TOML: {e}") from e
    version = data.pop("version", 1)
    if version != 1:
        raise ConfigError(f"{path} version: only version 1 is known, got {version!r}")
    present = [name for name in DEFAULT_TABLES if name in data]
    if len(present) > 1:
        raise ConfigError(f"{path}: [defaults] and [*] are the same table; keep one")
    defaults = _table(path, present[0] if present else "defaults", data.pop(present[0]) if present else {})
    if defaults.model is not None or defaults.aliases:
        raise ConfigError(f"{path} [defaults]: 'model' and 'alias' belong in a model's own table")
    return defaults, {name: _table(path, name, table) for name, table in data.items()}


def settings_for(base: Settings, path: Path, name: str, *layers: Preset) -> Settings:
    """The server's settings with the presets' options on top, validated (a bad value names the
    file, table and key)."""
    merged = base.model_dump()
    for layer in layers:
        merged.update(layer.options)
    try:
        return Settings.model_validate(merged)
    except ValidationError as e:
        err = e.errors()[0]
        dest = str(err["loc"][0]) if err["loc"] else "?"
        key = next((k for k, d in _KEYS.items() if d == dest and len(k) > 2), dest)
        raise ConfigError(f"{path} [{name}] {key}: {err['msg']} (got {err.get('input')!r})") from None
