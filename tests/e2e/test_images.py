"""Image generation against a real server with the synthetic FLUX.2-klein model: the three OpenAI
routes (through the openai SDK and raw HTTP), LoRA aliases, progress SSE, bad input, crash recovery."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from conftest import Server, module_server, sd_args

FAST = {"steps": 3, "cfg_scale": 1.0}


@pytest.fixture(scope="module")
def server(smollm: Path, sd_models: Path) -> Iterator[Server]:
    yield from module_server("-m", str(smollm), *sd_args(sd_models, "--sd-lora", f"tiny={sd_models / 'loras' / 'tiny-lora.safetensors'}",
                                                          "--sd-max-steps", "40", "--sd-max-pixels", str(256 * 256)))


def png(b64: str) -> Image.Image:
    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(raw))
    img.load()
    return img


def pixels(b64: str) -> np.ndarray:
    return np.asarray(png(b64).convert("RGB")).astype(np.float64)


def pattern(w: int = 64, h: int = 64) -> np.ndarray:
    a = np.zeros((h, w, 3), np.uint8)
    a[:, :, 0] = np.linspace(0, 255, w)[None, :].astype(np.uint8)
    a[:, :, 2] = np.linspace(0, 255, h)[:, None].astype(np.uint8)
    a[: h // 2, : w // 2, 1] = 200
    return a


def png_bytes(a: np.ndarray | Image.Image) -> bytes:
    img = a if isinstance(a, Image.Image) else Image.fromarray(a)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def gen(server: Server, **body: Any) -> httpx.Response:
    return httpx.post(server.base + "/v1/images/generations", json={"prompt": "a cat", **FAST, **body}, timeout=120)


def edit(server: Server, files: Any, **form: Any) -> httpx.Response:
    data = {"prompt": "a cat", "steps": "3", "cfg_scale": "1", **{k: str(v) for k, v in form.items()}}
    return httpx.post(server.base + "/v1/images/edits", files=files, data=data, timeout=120)


def test_sdk_generate_n2_reproducible_png_of_requested_size(server: Server) -> None:
    client = server.client()
    r = client.images.generate(prompt="a cat", n=2, size="64x48", extra_body={**FAST, "seed": 7})  # type: ignore[arg-type]
    assert r.data is not None and len(r.data) == 2 and r.size == "64x48"
    imgs = [png(d.b64_json or "") for d in r.data]
    assert [im.size for im in imgs] == [(64, 48), (64, 48)]
    a, b = (np.asarray(im) for im in imgs)
    assert not np.array_equal(a, b)  # seeds 7 and 8
    again = client.images.generate(prompt="a cat", n=2, size="64x48", extra_body={**FAST, "seed": 7})  # type: ignore[arg-type]
    assert [d.b64_json for d in again.data or []] == [d.b64_json for d in r.data]
    second = gen(server, size="64x48", seed=8).json()  # image 2 of the batch is seed + 1
    assert second["data"][0]["seed"] == 8 and second["data"][0]["b64_json"] == r.data[1].b64_json
    other = gen(server, size="64x48", seed=9).json()
    assert other["data"][0]["b64_json"] not in (r.data[0].b64_json, r.data[1].b64_json)


def test_size_rounding_is_reported(server: Server) -> None:
    r = gen(server, size="72x64", seed=1)
    assert r.status_code == 200
    body = r.json()
    assert body["size"] == "80x64" and body["requested_size"] == "72x64"
    assert r.headers["X-Chimera-Size-Adjusted"] == "72x64 -> 80x64"
    assert png(body["data"][0]["b64_json"]).size == (80, 64)
    exact = gen(server, size="64x64", seed=1).json()
    assert "requested_size" not in exact and png(exact["data"][0]["b64_json"]).size == (64, 64)


@pytest.mark.parametrize("body,param,words", [
    ({"size": "big"}, "size", "WIDTHxHEIGHT"),
    ({"size": "4096x4096"}, "size", "--sd-max-pixels"),
    ({"size": "0x64"}, "size", "at least 1"),
    ({"steps": 1000}, "steps", "--sd-max-steps"),
    ({"steps": "many"}, "steps", "integer"),
    ({"cfg_scale": "high"}, "cfg_scale", "number"),
    ({"seed": "x"}, "seed", "integer"),
    ({"n": 0}, "n", "1"),
    ({"n": 11}, "n", "10"),
    ({"response_format": "url"}, "response_format", "b64_json"),
    ({"sample_method": "warp"}, "sample_method", "euler"),
    ({"scheduler": "x"}, "scheduler", "karras"),
    ({"strength": 2}, "strength", "1"),
    ({"prompt": ""}, "prompt", "required"),
])
def test_bad_generation_fields_are_400_naming_the_field(server: Server, body: dict[str, Any], param: str, words: str) -> None:
    r = gen(server, **body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"], err


def test_json_numbers_and_strings_read_the_same(server: Server) -> None:
    a = gen(server, size="64x64", steps=3, cfg_scale=1.0, seed=11, n=1, strength=0.5).json()
    b = gen(server, size="64x64", steps="3", cfg_scale="1.0", seed="11", n="1", strength="0.5").json()
    assert a["data"][0]["b64_json"] == b["data"][0]["b64_json"]


def test_multipart_numbers_as_strings(server: Server) -> None:
    files = {"image": ("in.png", png_bytes(pattern()), "image/png")}
    a = edit(server, files, seed="5", strength="0.5", n="2", cfg_scale="1.0")
    assert a.status_code == 200, a.text
    assert [d["seed"] for d in a.json()["data"]] == [5, 6]
    b = edit(server, files, seed="5", strength="0.5", n="2", cfg_scale="1.0")
    c = edit(server, files, seed="6", strength="0.5", n="1", cfg_scale="1.0")
    assert [d["b64_json"] for d in a.json()["data"]] == [d["b64_json"] for d in b.json()["data"]]
    assert c.json()["data"][0]["b64_json"] == a.json()["data"][1]["b64_json"]
    bad = edit(server, files, steps="three")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "steps"
    bad = edit(server, files, strength="strong")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "strength"


def test_edit_without_mask_keeps_the_image_at_low_strength(server: Server) -> None:
    init = pattern()
    r = edit(server, {"image": ("in.png", png_bytes(init), "image/png")}, strength="0.1", seed="1")
    out = pixels(r.json()["data"][0]["b64_json"])
    assert out.shape == init.shape  # default size: the input's
    assert np.corrcoef(out.ravel(), init.ravel())[0, 1] > 0.9


def test_edit_with_mask_preserves_the_unmasked_area(server: Server) -> None:
    init = pattern()
    mask = np.zeros((64, 64, 4), np.uint8)
    mask[..., 3] = 255
    mask[:, 32:, 3] = 0  # OpenAI's convention: transparent = the area to edit
    r = edit(server, {"image": ("in.png", png_bytes(init), "image/png"),
                      "mask": ("mask.png", png_bytes(Image.fromarray(mask, "RGBA")), "image/png")}, seed="1")
    assert r.status_code == 200, r.text
    out = pixels(r.json()["data"][0]["b64_json"])
    kept = np.abs(out[:, :32] - init[:, :32]).mean()
    changed = np.abs(out[:, 32:] - init[:, 32:]).mean()
    assert kept < 20 and changed > 3 * kept, (kept, changed)


def test_sdk_edit_with_image_list_and_mask(server: Server, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(png_bytes(pattern()))
    mask = np.zeros((64, 64, 4), np.uint8)
    mask[:, :32, 3] = 255
    (tmp_path / "m.png").write_bytes(png_bytes(Image.fromarray(mask, "RGBA")))
    with open(src, "rb") as img, open(tmp_path / "m.png", "rb") as m:
        r = server.client().images.edit(image=[img], mask=m, prompt="a cat", n=1,  # sent as image[]
                                        extra_body={"steps": 3, "cfg_scale": 1, "seed": 2})
    out = pixels(r.data[0].b64_json or "")  # type: ignore[index]
    assert out.shape == (64, 64, 3)
    assert np.abs(out[:, :32] - pattern()[:, :32]).mean() < 20


def test_sdk_create_variation_defaults_to_the_input_size(server: Server, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(png_bytes(pattern(48, 32)))
    with open(src, "rb") as fh:
        r = server.client().images.create_variation(image=fh, n=2, extra_body={"steps": 3, "cfg_scale": 1, "seed": 4})
    assert r.data is not None and len(r.data) == 2
    assert [png(d.b64_json or "").size for d in r.data] == [(48, 32), (48, 32)]
    with open(src, "rb") as fh:
        sized = server.client().images.create_variation(image=fh, size="256x256", extra_body={"steps": 2, "cfg_scale": 1})  # type: ignore[arg-type]
    assert png(sized.data[0].b64_json or "").size == (256, 256)  # type: ignore[index]


def test_lora_alias_changes_the_image_and_unknown_alias_is_400(server: Server) -> None:
    plain = gen(server, size="64x64", seed=3).json()["data"][0]["b64_json"]
    lora = gen(server, size="64x64", seed=3, loras=[{"name": "tiny", "scale": 1}]).json()["data"][0]["b64_json"]
    tagged = gen(server, size="64x64", seed=3, prompt="a cat <lora:tiny:1>").json()["data"][0]["b64_json"]
    assert lora != plain and tagged == lora
    assert np.abs(pixels(lora) - pixels(plain)).mean() > 1
    r = gen(server, loras=[{"name": "nope"}])
    assert r.status_code == 400 and r.json()["error"]["param"] == "loras" and "tiny" in r.json()["error"]["message"]
    r = gen(server, prompt="a cat <lora:/etc/passwd:1>")
    assert r.status_code == 400 and "unknown LoRA" in r.json()["error"]["message"]
    r = edit(server, {"image": ("in.png", png_bytes(pattern()), "image/png")}, loras=json.dumps([{"name": "tiny"}]), seed="1")
    assert r.status_code == 200, r.text
    assert httpx.get(server.base + "/v1/images/lora-adapters").json() == [{"id": 0, "name": "tiny"}]


@pytest.mark.parametrize("body,flag", [
    ({"control_image": base64.b64encode(png_bytes(pattern())).decode()}, "--sd-control-net"),
    ({"control_strength": 0.5}, "--sd-control-net"),
    ({"pm_id_images": [base64.b64encode(png_bytes(pattern())).decode()]}, "--sd-photo-maker"),
    ({"pm_id_image_set": "alice"}, "--sd-photo-maker"),
    ({"pm_style_strength": 20}, "--sd-photo-maker"),
])
def test_controlnet_and_photomaker_need_their_flags(server: Server, body: dict[str, Any], flag: str) -> None:
    r = gen(server, **body)
    assert r.status_code == 400 and flag in r.json()["error"]["message"], r.text


def test_multipart_control_image_needs_its_flag(server: Server) -> None:
    r = edit(server, {"image": ("in.png", png_bytes(pattern()), "image/png"),
                      "control_image": ("c.png", png_bytes(pattern()), "image/png")})
    assert r.status_code == 400 and "--sd-control-net" in r.json()["error"]["message"]


def _sse(r: httpx.Response) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for block in r.text.strip().split("\n\n"):
        event, data = "message", ""
        for line in block.splitlines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        out.append((event, data if data == "[DONE]" else json.loads(data)))
    return out


def test_progress_sse_one_event_per_step(server: Server) -> None:
    r = gen(server, size="64x64", steps=5, seed=1, stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _sse(r)
    progress = [d for e, d in events if e == "progress"]
    assert [(p["step"], p["steps"], p["image_index"]) for p in progress] == [(i, 5, 0) for i in range(1, 6)]
    assert events[-2][0] == "result" and events[-1] == ("message", "[DONE]")
    result = events[-2][1]
    plain = gen(server, size="64x64", steps=5, seed=1).json()
    assert result["data"][0]["b64_json"] == plain["data"][0]["b64_json"]
    # two images, the Accept header instead of the field, and a LoRA (whose loading also reports progress)
    r = httpx.post(server.base + "/v1/images/generations", headers={"Accept": "text/event-stream"}, timeout=120,
                   json={"prompt": "a cat", "steps": 3, "cfg_scale": 1, "size": "64x64", "n": 2, "loras": [{"name": "tiny"}]})
    progress = [(d["step"], d["image_index"]) for e, d in _sse(r) if e == "progress"]
    assert progress == [(1, 0), (2, 0), (3, 0), (1, 1), (2, 1), (3, 1)]


def test_progress_sse_bad_input_is_a_plain_400(server: Server) -> None:
    r = edit(server, {"image": ("in.png", b"not an image", "image/png")}, stream="true")
    assert r.status_code == 400 and r.json()["error"]["param"] == "image"


def test_corrupt_truncated_and_mismatched_images_are_400(server: Server) -> None:
    good = png_bytes(pattern())
    cases = [
        ({"image": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "image/png")}, "image"),
        ({"image": ("a.png", good[: len(good) // 2], "image/png")}, "image"),
        ({"image": ("a.png", b"", "image/png")}, "image"),
        ({"image": ("a.png", good, "image/png"), "mask": ("m.png", png_bytes(pattern(32, 32)), "image/png")}, "mask"),
        ({"image": ("a.png", good, "image/png"), "mask": ("m.png", b"GIF89a broken", "image/gif")}, "mask"),
    ]
    for files, param in cases:
        r = edit(server, files)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param, r.text
    r = httpx.post(server.base + "/v1/images/variations", data={"n": "1"}, files={"other": ("a.png", good, "image/png")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "image"
    r = httpx.post(server.base + "/v1/images/edits", json={"prompt": "x"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]["message"]
    assert gen(server, size="64x64").status_code == 200  # nothing crashed


def _sd_workers(server: Server) -> list[psutil.Process]:
    return [p for p in psutil.Process(server.proc.pid).children(recursive=True) if "_sd-worker" in " ".join(p.cmdline())]


def test_worker_killed_mid_request_is_500_then_next_request_succeeds(server: Server) -> None:
    (worker,) = _sd_workers(server)
    before = worker.cpu_times().user
    box: dict[str, httpx.Response] = {}
    t = threading.Thread(target=lambda: box.update(r=gen(server, size="256x256", steps=30, seed=1)))
    t.start()
    deadline = time.monotonic() + 60
    while worker.cpu_times().user - before < 0.5 and time.monotonic() < deadline:  # it is sampling
        time.sleep(0.05)
    worker.kill()
    t.join(120)
    r = box["r"]
    assert r.status_code == 500, r.text
    assert "sd worker crashed" in r.json()["error"]["message"]
    ok = gen(server, size="64x64", seed=1)
    assert ok.status_code == 200 and png(ok.json()["data"][0]["b64_json"]).size == (64, 64)
    (fresh,) = _sd_workers(server)
    assert fresh.pid != worker.pid
    assert httpx.get(server.base + "/health").status_code == 200
