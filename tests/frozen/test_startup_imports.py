"""Start-up stays light: `chimera --version` and `chimera serve --help` import no native engine.

Runs from the virtualenv (the frozen program imports the same modules), so it is part of `make test`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("llama_cpp", "_pywhispercpp", "pywhispercpp", "stable_diffusion_cpp", "numpy", "av", "apsw", "sqlite_vec")


@pytest.mark.parametrize("args", [["--version"], ["serve", "--help"]])
def test_no_engine_imported(args: list[str]) -> None:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "chimera", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    top = {m.split(".")[0] for m in imported}
    assert not top & set(HEAVY), sorted(top & set(HEAVY))
