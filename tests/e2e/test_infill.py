"""POST /infill on a model with FIM tokens, and the 501 for one without."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import Server


@pytest.fixture(scope="module")
def fim_model(smollm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 (real weights) with some of its special tokens declared as the FIM tokens, made
    with the gguf package's own metadata tool: the plumbing needs the tokens, not a code model."""
    out = tmp_path_factory.mktemp("fim") / "smollm2-fim.gguf"
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(smollm), str(out), "--force",
                    "--special-token", "fim_pre", "<gh_stars>", "--special-token", "fim_suf", "<issue_start>",
                    "--special-token", "fim_mid", "<issue_comment>", "--special-token", "fim_sep", "<file_sep>"],
                   check=True, capture_output=True)
    return out


def test_infill_builds_the_fim_prompt_and_generates(start_server: type[Server], fim_model: Path) -> None:
    s = start_server("-m", str(fim_model)).wait_ready()
    body = {"input_prefix": "def add(a, b):\n    ", "input_suffix": "\n    return c\n", "prompt": "c =",
            "input_extra": [{"filename": "util.py", "text": "import math\n"}], "n_predict": 8, "ignore_eos": True}
    r = httpx.post(s.base + "/infill", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    p = out["prompt"]
    order = [p.index(x) for x in ("<file_sep>", "util.py", "import math", "<gh_stars>", "def add",
                                  "<issue_start>", "return c", "<issue_comment>", "c =")]
    assert order == sorted(order), p
    assert out["tokens_predicted"] == 8 and out["stop_type"] == "limit" and isinstance(out["content"], str)
    with httpx.stream("POST", s.base + "/infill", json=body | {"stream": True}, timeout=60) as st:
        lines = [ln for ln in st.iter_lines() if ln.startswith("data: ")]
    assert '"stop":true' in lines[-1].replace(" ", "")
    bad = httpx.post(s.base + "/infill", json={"input_prefix": "x", "input_extra": [{"text": 5}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input_extra.0"


def test_model_without_fim_tokens_is_501(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm)).wait_ready()
    r = httpx.post(s.base + "/infill", json={"input_prefix": "a", "input_suffix": "b"})
    assert r.status_code == 501 and "fill-in-the-middle" in r.json()["error"]["message"]
