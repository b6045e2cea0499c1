"""The image worker process: one stable-diffusion.cpp context, requests over its stdin/stdout.

Started as `chimera _sd-worker CONFIG_JSON` (the same executable, frozen or not); the pipe protocol
is in `workers/frames.py`. What this process does about the binding (stable-diffusion-cpp-python):

- A failed load is not raised: the context is NULL and the object looks fine. The worker checks
  the context and answers the `ready` handshake with an error instead (then leaves with
  `os._exit`, since freeing a NULL context segfaults).
- `verbose=False` would point the process's fds 1 and 2 at /dev/null during every call, hiding a
  GGML_ASSERT line from the supervisor. The worker loads with `verbose=True` and installs its own
  native log callback, which writes warnings and errors to stderr (the supervisor keeps a tail).
- The binding registers each call's progress callback globally and frees it when the call ends;
  a later call without one would jump into freed memory. Every call here passes one.
- One call at a time on the one context: the pipe protocol is sequential.
"""

from __future__ import annotations

import base64
import ctypes
import io
import os
import time
from pathlib import Path
from typing import Any

from ..workers.frames import Protocol, WorkerInputError, serve

SD_LOG_WARN = 2


def _blobs(req: dict[str, Any], data: bytes) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    pos = 0
    for name, n in req.get("blobs", []):
        out.setdefault(name, []).append(data[pos : pos + n])
        pos += n
    return out


def decode_image(raw: bytes, param: str, max_pixels: int) -> Any:
    """Pillow image from uploaded bytes, fully decoded (a truncated file fails here), or a 400."""
    from PIL import Image, UnidentifiedImageError

    if not raw:
        raise WorkerInputError(f"'{param}' is empty", param=param)
    Image.MAX_IMAGE_PIXELS = max(max_pixels, 1 << 20) * 2  # beyond twice this Pillow refuses (bombs)
    try:
        img = Image.open(io.BytesIO(raw))
        img.load()
    except UnidentifiedImageError:
        raise WorkerInputError(f"'{param}' is not an image Pillow can read (PNG, JPEG, WebP, ...)", param=param) from None
    except Image.DecompressionBombError:
        raise WorkerInputError(f"'{param}' has too many pixels", param=param) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise WorkerInputError(f"'{param}' is a corrupt or truncated image ({e})", param=param) from None
    if img.width * img.height > max_pixels * 4:
        raise WorkerInputError(f"'{param}' is {img.width}x{img.height}, too large for this server (--sd-max-pixels)",
                               param=param)
    return img


def _rgb(img: Any) -> Any:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        from PIL import Image

        bg = Image.new("RGB", img.size, (0, 0, 0))
        rgba = img.convert("RGBA")
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")


def mask_for_engine(mask: Any) -> Any:
    """OpenAI's mask marks the area to edit with transparency; without an alpha channel, white is
    the area to edit (stable-diffusion.cpp's convention). Returns an L image, white = repaint."""
    from PIL import ImageOps

    if "A" in mask.getbands() or (mask.mode == "P" and "transparency" in mask.info):
        return ImageOps.invert(mask.convert("RGBA").getchannel("A"))
    return mask.convert("L")


def encode(img: Any, fmt: str, compression: int | None) -> str:
    buf = io.BytesIO()
    rgb = img.convert("RGB")
    if fmt == "png":
        rgb.save(buf, format="PNG", compress_level=6 if compression is None else max(0, min(9, compression // 11)))
    else:
        rgb.save(buf, format=fmt.upper(), quality=95 if compression is None else compression)
    return base64.b64encode(buf.getvalue()).decode()


class Generator:
    """One loaded model and what a request needs from it."""

    def __init__(self, config: dict[str, Any]) -> None:
        import stable_diffusion_cpp as sdcpp

        self.sd = sdcpp.StableDiffusion(**config["engine"], n_threads=int(config["threads"]), verbose=True)
        self._baseline: Any = None

    def loaded(self) -> bool:
        return bool(getattr(self.sd._model, "model", None))

    def run(self, proto: Protocol, req: dict[str, Any], data: bytes) -> dict[str, Any]:
        if req.get("task") == "lora_check":
            return self.lora_check(req["path"])
        return self.generate(proto, req, data)

    def generate(self, proto: Protocol, req: dict[str, Any], data: bytes) -> dict[str, Any]:
        max_pixels = int(req["max_pixels"])
        blobs = _blobs(req, data)
        kw: dict[str, Any] = {}
        images = [decode_image(raw, "image", max_pixels) for raw in blobs.get("image", [])]
        if req.get("size"):
            width, height = req["size"]
        elif images:  # edits and variations default to the input's size, rounded up to 16
            width, height = (-(-v // 16) * 16 for v in images[0].size)
            if width * height > max_pixels:
                raise WorkerInputError(f"'image' is {images[0].width}x{images[0].height}; pass a 'size' of at most "
                                       f"{max_pixels} pixels (--sd-max-pixels)", param="size")
        else:
            width, height = 512, 512
        if images:
            kw["init_image"] = _rgb(images[0])
            kw["strength"] = float(req["strength"])
            if len(images) > 1:
                kw["ref_images"] = [_rgb(im) for im in images[1:]]
        if "mask" in blobs:
            mask = decode_image(blobs["mask"][0], "mask", max_pixels)
            if images and mask.size != images[0].size:
                raise WorkerInputError(f"'mask' is {mask.width}x{mask.height} but 'image' is "
                                       f"{images[0].width}x{images[0].height}; they must be the same size", param="mask")
            kw["mask_image"] = mask_for_engine(mask)
        if "control_image" in blobs:
            kw["control_image"] = _rgb(decode_image(blobs["control_image"][0], "control_image", max_pixels))
            if req.get("control_strength") is not None:
                kw["control_strength"] = float(req["control_strength"])
        if "pm_id" in blobs:
            kw["pm_id_images"] = [_rgb(decode_image(b, "pm_id_images", max_pixels)) for b in blobs["pm_id"]]
        elif req.get("pm_id_image_set"):
            files = sorted(p for p in Path(req["pm_id_image_set"]).iterdir() if p.is_file())
            kw["pm_id_images"] = [_rgb(decode_image(p.read_bytes(), "pm_id_image_set", max_pixels)) for p in files
                                  if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")]
        if "pm_id_images" in kw:
            kw["pm_id_embed_path"] = req.get("pm_id_embed_path") or ""
            if req.get("pm_style_strength") is not None:
                kw["pm_style_strength"] = float(req["pm_style_strength"])
        if req.get("sample_method"):
            kw["sample_method"] = req["sample_method"]
        if req.get("scheduler"):
            kw["scheduler"] = req["scheduler"]
        prompt = req["prompt"] + "".join(f" <lora:{path}:{scale}>" for path, scale in req.get("loras", []))

        state: dict[str, Any] = {"index": -1, "total": None, "prev": 0}
        stream = bool(req.get("stream"))

        def progress(step: int, steps: int, _t: float) -> None:
            # The engine reports every phase through this one callback: loading a LoRA's tensors
            # jumps from 0 to the end (0/12, 12/12), sampling counts up one step at a time
            # (0/N, 1/N, ... N/N, once per image of the batch). Only the sampling runs are sent.
            if step == 0:
                state.update(total=steps, prev=0)
                return
            if steps != state["total"] or step != state["prev"] + 1:
                state["total"] = None
                return
            if step == 1:
                state["index"] += 1
            state["prev"] = step
            if stream:
                proto.event(step=step, steps=steps, image_index=state["index"])

        seed = int(req["seed"])
        t0 = time.perf_counter()
        out = self.sd.generate_image(
            prompt=prompt, negative_prompt=req.get("negative_prompt") or "", width=width, height=height,
            sample_steps=int(req["steps"]), cfg_scale=float(req["cfg_scale"]), seed=seed,
            batch_count=int(req["n"]), progress_callback=progress, **kw)
        elapsed = time.perf_counter() - t0
        if len(out) != int(req["n"]):
            raise RuntimeError(f"stable-diffusion.cpp returned {len(out)} of {req['n']} images")
        fmt, comp = req.get("output_format", "png"), req.get("output_compression")
        return {
            "images": [{"b64_json": encode(im, fmt, comp), "seed": seed + i} for i, im in enumerate(out)],
            "width": out[0].width, "height": out[0].height, "seed": seed, "elapsed": round(elapsed, 4),
        }

    def lora_check(self, path: str) -> dict[str, Any]:
        """A 64x64 one-step image with and without the adapter: it must apply, and change it."""
        import numpy as np

        c = dict(width=64, height=64, sample_steps=1, cfg_scale=1.0, seed=1, progress_callback=lambda *a: None)
        if self._baseline is None:
            self._baseline = np.asarray(self.sd.generate_image(prompt="a", **c)[0])
        with_lora = np.asarray(self.sd.generate_image(prompt=f"a <lora:{path}:1>", **c)[0])
        if np.array_equal(with_lora, self._baseline):
            raise WorkerInputError("it changes nothing: stable-diffusion.cpp could not read it, or none of its "
                                   "tensors match this model")
        return {"ok": True}


def main(config_json: str) -> int:
    import json

    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    proto = Protocol()
    config = json.loads(config_json)
    from stable_diffusion_cpp import stable_diffusion_cpp as lib

    @lib.sd_log_callback
    def on_log(level: int, text: bytes, _data: Any) -> None:
        if level >= SD_LOG_WARN:
            os.write(2, text if text.endswith(b"\n") else text + b"\n")

    lib.sd_set_log_callback(on_log, ctypes.c_void_p(0))
    gen = Generator(config)
    if not gen.loaded():
        what = config["engine"].get("model_path") or config["engine"].get("diffusion_model_path")
        proto.send({"type": "error", "message": f"stable-diffusion.cpp could not load {what} with the files given "
                                                "(no context was created; see the native log lines before this)"})
        os._exit(3)  # freeing the NULL context in the binding's destructor would segfault
    rc = serve(gen.run, {"threads": config["threads"]}, proto)
    os._exit(rc)  # skip the binding's teardown: the process is done
