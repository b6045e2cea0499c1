"""Image start-up: what refuses to start (with exit code 2 and a clear line), split models,
several workers, and `chimera sd` sharing the server's implementation."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from conftest import REPO, Server, sd_args
from models.tiny_sd import lora_tensors, write_safetensors


def _refused(s: Server, timeout: float = 120) -> str:
    rc = s.proc.wait(timeout)
    out = s.output()
    assert rc == 2, f"exit {rc}:\n{out}"
    return out


def test_lora_that_does_not_fit_is_refused_before_serving(start_server: type[Server], smollm: Path, sd_models: Path,
                                                          tmp_path: Path) -> None:
    bad = tmp_path / "bad-shape.safetensors"  # img_in takes 128 inputs; this adapter says 64
    write_safetensors(bad, lora_tensors([("img_in", 128, 64), ("final_layer.linear", 64, 128)]))
    out = _refused(start_server("-m", str(smollm), *sd_args(sd_models, "--sd-lora", f"bad={bad}")))
    assert "--sd-lora refused: bad=" in out and "GGML_ASSERT" in out, out


def test_lora_that_matches_nothing_or_is_garbage_is_refused(start_server: type[Server], smollm: Path, sd_models: Path,
                                                            tmp_path: Path) -> None:
    nomatch = tmp_path / "nomatch.safetensors"
    write_safetensors(nomatch, lora_tensors([("no_such_module", 128, 128)]))
    out = _refused(start_server("-m", str(smollm), *sd_args(sd_models, "--sd-lora", f"nm={nomatch}")))
    assert "nm=" in out and "changes nothing" in out, out
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 100)
    out = _refused(start_server("-m", str(smollm), *sd_args(sd_models, "--sd-lora", f"g={garbage}")))
    assert "--sd-lora g:" in out and "not a safetensors file" in out, out
    out = _refused(start_server("-m", str(smollm), *sd_args(sd_models, "--sd-lora", "../etc/x.safetensors")))
    assert "NAME=PATH" in out


def test_a_model_that_leaves_no_context_is_a_startup_error(start_server: type[Server], smollm: Path, sd_models: Path,
                                                           tmp_path: Path) -> None:
    garbage = tmp_path / "model.ckpt"
    garbage.write_bytes(b"PK\x03\x04 not really a checkpoint" * 10)
    out = _refused(start_server("-m", str(smollm), *sd_args(sd_models), "--sd-model", str(garbage)))
    assert "image model: the sd worker failed to start: stable-diffusion.cpp could not load" in out, out
    # the tiny model without its autoencoder: the binding reports success and holds a NULL context
    out = _refused(start_server("-m", str(smollm), "--sd-model", str(sd_models / "tiny-flux2-klein.ckpt")))
    assert "could not load" in out and "Traceback" not in out, out
    out = _refused(start_server("-m", str(smollm), "--sd-model", str(tmp_path / "missing.ckpt")))
    assert "--sd-model: no such file" in out


def test_empty_photomaker_id_set_is_a_startup_error(start_server: type[Server], smollm: Path, sd_models: Path,
                                                    tmp_path: Path) -> None:
    (tmp_path / "ids" / "alice").mkdir(parents=True)
    (tmp_path / "ids" / "bob").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "ids" / "alice" / "1.png")
    out = _refused(start_server("-m", str(smollm), *sd_args(sd_models), "--sd-photo-maker", str(sd_models / "tiny-taef2.ckpt"),
                                "--sd-pm-id-dir", str(tmp_path / "ids")))
    assert "--sd-pm-id-dir" in out and "bob" in out and "alice" not in out.split("--sd-pm-id-dir")[-1], out
    out = _refused(start_server("-m", str(smollm), *sd_args(sd_models), "--sd-pm-id-dir", str(tmp_path / "ids")))
    assert "need --sd-photo-maker" in out


def test_images_off_is_501_naming_the_flag(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm)).wait_ready()
    r = httpx.post(s.base + "/v1/images/generations", json={"prompt": "x"})
    assert r.status_code == 501 and "--sd-model" in r.json()["error"]["message"]
    assert httpx.get(s.base + "/v1/images/lora-adapters").json() == []


def test_split_model_and_two_workers(start_server: type[Server], smollm: Path, sd_models: Path) -> None:
    split = sd_models / "split"
    s = start_server("-m", str(smollm), "--sd-diffusion-model", str(split / "tiny-flux2-klein-dit.ckpt"),
                     "--sd-llm", str(split / "tiny-qwen3.ckpt"), "--sd-taesd", str(split / "tiny-taef2.ckpt"),
                     "--sd-workers", "2").wait_ready()
    import psutil

    workers = [p for p in psutil.Process(s.proc.pid).children(recursive=True) if "_sd-worker" in " ".join(p.cmdline())]
    assert len(workers) == 2
    body = {"prompt": "a cat", "size": "64x64", "steps": 3, "cfg_scale": 1, "seed": 5}
    r = httpx.post(s.base + "/v1/images/generations", json=body, timeout=120)
    assert r.status_code == 200, r.text
    img = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
    assert img.size == (64, 64)


def test_sd_cli_shares_the_implementation(smollm: Path, sd_models: Path, tmp_path: Path, start_server: type[Server]) -> None:
    a = np.zeros((64, 64, 3), np.uint8)
    a[:, :, 0] = np.linspace(0, 255, 64)[None, :].astype(np.uint8)
    init = tmp_path / "in.png"
    Image.fromarray(a).save(init)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255  # no alpha channel: white = repaint
    Image.fromarray(mask, "L").save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    argv = [sys.executable, "-m", "chimera", "sd", *sd_args(sd_models), "--prompt", "a cat", "--init-image", str(init),
            "--mask", str(tmp_path / "mask.png"), "--steps", "3", "--cfg-scale", "1", "--seed", "9", "--output", str(out)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "64x64" in r.stdout and "seed 9" in r.stdout
    cli_img = np.asarray(Image.open(out).convert("RGB")).astype(float)
    assert np.abs(cli_img[:, :32] - a[:, :32]).mean() < 20
    s = start_server("-m", str(smollm), *sd_args(sd_models)).wait_ready()
    with open(init, "rb") as fi, open(tmp_path / "mask.png", "rb") as fm:
        resp = httpx.post(s.base + "/v1/images/edits", files={"image": fi, "mask": fm}, timeout=120,
                          data={"prompt": "a cat", "steps": "3", "cfg_scale": "1", "seed": "9"})
    assert base64.b64decode(resp.json()["data"][0]["b64_json"]) == out.read_bytes()  # the same bytes
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    r = subprocess.run([*argv[:argv.index("--init-image") + 1], str(bad), "--output", str(out)],
                       capture_output=True, text=True, timeout=180, cwd=REPO)
    assert r.returncode == 1 and "'image' is" in r.stderr, r.stderr[-2000:]
