"""The `chimera` command itself, as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

from chimera import __version__


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chimera", *args], capture_output=True, text=True, timeout=120)


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"chimera {__version__}"


def test_unknown_and_malformed_flags_exit_2() -> None:
    r = run("serve", "--bogus")
    assert r.returncode == 2 and "unrecognized arguments: --bogus" in r.stderr
    r = run("serve", "--port", "abc")
    assert r.returncode == 2 and "--port" in r.stderr
    r = run("serve", "--log-format", "xml")
    assert r.returncode == 2 and "--log-format" in r.stderr


def test_info_prints_json_with_versions() -> None:
    r = run("info", "--api-key", "topsecret")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["chimera"] == __version__
    assert info["llama_cpp"]["binding"]
    assert info["settings"]["api_key"] == ["***"]
    assert "topsecret" not in r.stdout
