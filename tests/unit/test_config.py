"""Settings resolution: CLI > environment > config file > defaults, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from chimera.cli import build_parser
from chimera.config import resolve
from chimera.errors import ConfigError


def settings_from(argv: list[str], env: dict[str, str] | None = None):
    ns = build_parser().parse_args(["serve", *argv])
    cli = {k: v for k, v in vars(ns).items() if k != "command"}
    return resolve(cli, env or {})


def test_defaults() -> None:
    s = settings_from([])
    assert (s.host, s.port, s.parallel, s.ctx_size, s.flash_attn) == ("127.0.0.1", 8080, -1, 0, "auto")
    assert (s.n_slots(), s.unified_kv(), s.context_shift, s.n_keep) == (4, None, False, 0)
    assert s.api_key == () and s.max_queue == 256 and s.shutdown_timeout == 10


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('port = 9000\nparallel = 3\nctx-size = 2048\nalias = "from-file"\n')
    env = {"CHIMERA_PORT": "9100", "CHIMERA_PARALLEL": "5"}
    s = settings_from(["--config", str(cfg), "--port", "9200"], env)
    assert s.port == 9200  # CLI wins
    assert s.parallel == 5  # env beats file
    assert s.ctx_size == 2048 and s.alias == "from-file"  # file beats defaults


def test_llama_server_short_flags() -> None:
    s = settings_from(["-np", "8", "-c", "8192", "-b", "512", "-ub", "256", "-t", "2", "-tb", "2", "-ngl", "0", "-fa", "off"])
    assert (s.parallel, s.ctx_size, s.batch_size, s.ubatch_size, s.threads, s.threads_batch) == (8, 8192, 512, 256, 2, 2)
    assert s.n_gpu_layers == 0 and s.flash_attn == "off"


def test_repeatable_and_list_flags() -> None:
    s = settings_from(["--api-key", "a", "--api-key", "b", "--cors-origins", "http://x,http://y"])
    assert s.api_key == ("a", "b")
    assert s.cors_origins == ("http://x", "http://y")
    assert settings_from([], {"CHIMERA_API_KEY": "k1,k2"}).api_key == ("k1", "k2")


def test_bad_values_raise_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--port"):
        settings_from(["--port", "abc"])
    with pytest.raises(ConfigError, match="--parallel"):
        settings_from(["-np", "0"])
    with pytest.raises(ConfigError, match="CHIMERA_EMBEDDINGS"):
        settings_from([], {"CHIMERA_EMBEDDINGS": "maybe"})
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_setting = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        settings_from(["--config", str(bad)])
    broken = tmp_path / "broken.toml"
    broken.write_text("port = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        settings_from(["--config", str(broken)])


def test_secrets_are_redacted(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text("# keys\nfile-key\n\n")
    s = settings_from(["--api-key", "hunter2-xyz", "--api-key-file", str(keyfile)])
    assert s.api_keys() == ("hunter2-xyz", "file-key")
    assert s.redacted()["api_key"] == ["***"]
    assert "hunter2-xyz" not in str(s.redacted())


def test_unknown_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["serve", "--no-such-flag"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
