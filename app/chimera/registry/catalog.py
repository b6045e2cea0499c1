"""Which models a server can serve: `-m PATH`, every GGUF in the `--models-dir` folders, and the
tables of a `--models-preset` file, each with the serve options it loads with.

A folder's `NAME.gguf` is the model `NAME`; a subfolder holding one model (or the shards of one,
`…-00001-of-000NN.gguf`) and optionally an `mmproj*.gguf` projector is the model named after the
subfolder. What a model can do (chat, embeddings, rerank, vision, tools) is read from its GGUF
header without loading it.
"""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import Settings
from ..errors import ConfigError

log = logging.getLogger("chimera.registry")

Kind = Literal["chat", "embeddings", "rerank"]
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
# architectures that only encode: their contexts make embeddings, not text
ENCODERS = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "neo-bert",
                      "modern-bert", "eurobert", "t5encoder"})
RANK_POOLING = 4


@dataclass(frozen=True)
class ModelSpec:
    id: str
    path: Path
    settings: Settings  # the server's options, then the preset's [defaults], then the model's table
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    load_on_startup: bool = False
    pin: bool = False
    keep_alive: float | None = None  # seconds idle before unloading; None: the server's; < 0: never
    stop_timeout: float = 10.0  # an unload waits this long for in-flight requests, then ends them
    kind: Kind = "chat"
    capabilities: tuple[str, ...] = ()
    size: int = 0  # bytes on disk (all shards)
    source: str = "models-dir"
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)


def _header(path: Path) -> dict[str, Any]:
    """The GGUF header's scalar fields and the chat template, or {} if the file does not read."""
    try:
        import gguf

        reader = gguf.GGUFReader(str(path))
    except Exception:  # noqa: BLE001 - a broken file fails (with llama.cpp's reason) when loaded
        return {}
    out: dict[str, Any] = {}
    for key, fld in reader.fields.items():
        if key.startswith("tokenizer.ggml.") and key != "tokenizer.chat_template":
            continue
        try:
            value = fld.contents()
        except Exception:  # noqa: BLE001
            continue
        if isinstance(value, (str, int, float, bool)):
            out[key] = value
    del reader  # the reader maps the whole file: unmap it now, not whenever the cycle collector runs
    gc.collect()
    return out


def describe(path: Path, mmproj: Path | None) -> tuple[Kind, tuple[str, ...], dict[str, Any]]:
    """What a model file is, from its header: (kind, capabilities, metadata)."""
    meta = _header(path)
    arch = str(meta.get("general.architecture", ""))
    kind: Kind = "chat"
    if meta.get(f"{arch}.pooling_type") == RANK_POOLING:
        kind = "rerank"
    elif arch in ENCODERS or meta.get(f"{arch}.attention.causal") is False:
        kind = "embeddings"
    caps: list[str] = [kind] if kind != "chat" else ["completion", "chat"]
    if kind == "chat" and "tools" in str(meta.get("tokenizer.chat_template", "")):
        caps.append("tools")
    if mmproj is not None:
        caps.append("vision")
    return kind, tuple(caps), meta


def _first_shard(files: list[Path]) -> Path | None:
    shards = sorted(f for f in files if _SHARD.search(f.name))
    return next((f for f in shards if _SHARD.search(f.name).group(1) == "00001"), None) if shards else None  # type: ignore[union-attr]


def _model_files(folder: Path) -> tuple[Path, Path | None] | None:
    """(the model, its projector) of a model's own subfolder, or None if it holds no single model."""
    ggufs = sorted(p for p in folder.glob("*.gguf") if p.is_file())
    projectors = [p for p in ggufs if p.name.lower().startswith("mmproj")]
    models = [p for p in ggufs if p not in projectors]
    first = _first_shard(models)
    if first is not None:
        models = [first]
    if len(models) != 1 or len(projectors) > 1:
        return None
    return models[0], (projectors[0] if projectors else None)


def scan(folder: Path) -> list[tuple[str, Path, Path | None]]:
    """(id, model file, projector) of every model in a --models-dir folder."""
    found: list[tuple[str, Path, Path | None]] = []
    top = sorted(p for p in folder.glob("*.gguf") if p.is_file() and not p.name.lower().startswith("mmproj"))
    shard_groups: dict[str, list[Path]] = {}
    for p in top:
        m = _SHARD.search(p.name)
        if m:
            shard_groups.setdefault(p.name[: m.start()], []).append(p)
        else:
            found.append((p.name.removesuffix(".gguf"), p, None))
    for stem, parts in sorted(shard_groups.items()):
        first = _first_shard(parts)
        if first is not None:
            found.append((stem, first, None))
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = _model_files(sub)
        if files is not None:
            found.append((sub.name, files[0], files[1]))
    return found


def size_of(path: Path) -> int:
    m = _SHARD.search(path.name)
    if not m:
        return path.stat().st_size if path.exists() else 0
    stem = path.name[: m.start()]
    return sum(p.stat().st_size for p in path.parent.glob(f"{stem}-*-of-{m.group(2)}.gguf"))


def build(settings: Settings, default_model: Callable[[], Path]) -> tuple[list[ModelSpec], str | None]:
    """Every model this server offers, and the one a request without `model` gets (-m's)."""
    from .presets import Preset, load_presets, settings_for

    preset_file = settings.models_preset
    defaults, tables = load_presets(preset_file) if preset_file is not None else (Preset(), {})
    where = preset_file or Path("--models-preset")
    found: dict[str, tuple[Path, Path | None, str]] = {}
    main: str | None = None
    if settings.model is not None:
        main = next(iter(settings.alias_names()), settings.model.name.removesuffix(".gguf"))
        found[main] = (settings.model, settings.mmproj, "-m")
    for folder in settings.models_dir:
        for model_id, path, projector in scan(folder):
            if model_id in found:
                log.warning("model %s in %s is already served from %s: skipped", model_id, folder, found[model_id][0])
                continue
            found[model_id] = (path, projector, "models-dir")
    for name, table in tables.items():
        if table.model is not None:
            if name in found:
                raise ConfigError(f"{where} [{name}] model: {name} is already a model ({found[name][0]})")
            if not table.model.is_file():
                raise ConfigError(f"{where} [{name}] model: no such file: {table.model}")
            found[name] = (table.model, None, "preset")
        elif name not in found:
            raise ConfigError(f"{where} [{name}]: no model {name!r} in --models-dir (give it 'model = PATH')")
    if not found:
        path = default_model()
        main = next(iter(settings.alias_names()), path.name.removesuffix(".gguf"))
        found[main] = (path, None, "default")
    specs = []
    for model_id, (path, projector, source) in found.items():
        table = tables.get(model_id, Preset())
        base = settings if source in ("-m", "default") else settings.model_copy(
            update={"mmproj": projector, "embeddings": False, "reranking": False, "alias": None, "lora": (), "lora_scaled": ()})
        s = settings_for(base, where, model_id, defaults, table)
        kind, caps, meta = describe(path, s.mmproj)
        if s.reranking:
            kind, caps = "rerank", ("rerank",)
        elif s.embeddings and kind == "chat":
            kind, caps = "embeddings", ("embeddings",)
        s = s.model_copy(update={"embeddings": kind != "chat", "reranking": kind == "rerank"})
        pick = (lambda a, b: a if a is not None else b)  # noqa: E731 - the model's table, then [defaults]
        own = source in ("-m", "default")  # --alias's other names and --tags are the -m model's
        aliases = (*settings.alias_names(), *table.aliases) if own else table.aliases  # the id among them, as llama-server lists them
        tags = pick(table.tags, settings.tags if own else ())
        specs.append(ModelSpec(
            id=model_id, path=path, settings=s, aliases=aliases, tags=tags, kind=kind, capabilities=caps, size=size_of(path),
            load_on_startup=bool(pick(table.load_on_startup, pick(defaults.load_on_startup, source in ("-m", "default")))),
            pin=bool(pick(table.pin, pick(defaults.pin, False))), keep_alive=pick(table.keep_alive, defaults.keep_alive),
            stop_timeout=pick(table.stop_timeout, pick(defaults.stop_timeout, 10.0)),
            source=source, meta=meta))
    names: dict[str, str] = {}
    for spec in specs:
        for name in spec.names:
            if name in names and names[name] != spec.id:
                raise ConfigError(f"{where}: the name {name!r} is both {names[name]} and {spec.id}")
            names[name] = spec.id
    return specs, main
