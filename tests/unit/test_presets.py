"""`--models-preset` parsing: keys by long, short and llama-server env names, the defaults table
under both of its names, durations, and errors naming the file, table and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from chimera.config import Settings
from chimera.errors import ConfigError
from chimera.registry.presets import load_presets, parse_duration, settings_for


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "presets.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("value", "seconds"), [
    (300, 300.0), (2.5, 2.5), ("5m", 300.0), ("1h30m", 5400.0), ("1h 30m", 5400.0), ("250ms", 0.25),
    ("0", 0.0), ("-1", -1.0), ("-1m", -60.0), ("45", 45.0), ("10s", 10.0),
])
def test_durations_as_ollama_writes_them(value: object, seconds: float) -> None:
    assert parse_duration(value, "x") == seconds


@pytest.mark.parametrize("value", ["five minutes", "5 parsecs", "", True, None, [1]])
def test_bad_durations_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="expected a duration"):
        parse_duration(value, "x")


def test_llama_server_names_star_table_version_and_env_keys(tmp_path: Path) -> None:
    p = write(tmp_path, 'version = 1\n["*"]\nc = 8192\n[m]\nLLAMA_ARG_N_GPU_LAYERS = 12\nLLAMA_ARG_N_PARALLEL = 2\n'
                        'stop-timeout = 3\nkeep-alive = "30m"\nmmproj = "proj.gguf"\n')
    defaults, tables = load_presets(p)
    assert defaults.options == {"ctx_size": 8192}
    m = tables["m"]
    assert m.options["n_gpu_layers"] == 12 and m.options["parallel"] == 2
    assert m.stop_timeout == 3.0 and m.keep_alive == 1800.0
    assert m.options["mmproj"] == str(tmp_path / "proj.gguf")  # relative to the preset file
    s = settings_for(Settings(ctx_size=4096, parallel=4), p, "m", defaults, m.__class__(options={"parallel": 2}))
    assert s.ctx_size == 8192 and s.parallel == 2  # [*] then the model's table, over the server's flags


@pytest.mark.parametrize(("text", "expect"), [
    ("[m]\nctx-sise = 1\n", "[m] ctx-sise: unknown key"),
    ("[m]\nstop-timeout = -1\n", "[m] stop-timeout: expected seconds"),
    ("[m]\npin = 1\n", "[m] pin: expected true or false"),
    ("version = 2\n", "version: only version 1"),
    ("[defaults]\nc = 1\n[\"*\"]\nc = 2\n", "[defaults] and [*] are the same table"),
    ("[defaults]\nalias = 'x'\n", "[defaults]: 'model' and 'alias' belong"),
    ("[m]\nalias = 3\n", "[m] alias: expected a name"),
    ("[m\n", "is not valid TOML"),
])
def test_bad_presets_name_the_file_table_and_key(tmp_path: Path, text: str, expect: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_presets(p)
    assert str(p) in str(e.value) and expect in str(e.value)


def test_a_bad_value_is_refused_when_settings_are_built(tmp_path: Path) -> None:
    p = write(tmp_path, "[m]\nparallel = 'many'\n")
    defaults, tables = load_presets(p)
    with pytest.raises(ConfigError, match=r"\[m\] parallel: .*'many'"):
        settings_for(Settings(), p, "m", defaults, tables["m"])
