"""What the image workers are started with, checked once at start-up (a bad flag is exit code 2).

Everything here is decided before any worker starts: which model files, the opt-in features
(ControlNet, PhotoMaker, LoRA aliases) and the limits requests are held to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import ConfigError
from .lora import parse_loras

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")

# flag → (Settings field, the StableDiffusion() argument it becomes)
_FILES = (
    ("--sd-model", "sd_model", "model_path"),
    ("--sd-diffusion-model", "sd_diffusion_model", "diffusion_model_path"),
    ("--sd-llm", "sd_llm", "llm_path"),
    ("--sd-clip-l", "sd_clip_l", "clip_l_path"),
    ("--sd-t5xxl", "sd_t5xxl", "t5xxl_path"),
    ("--sd-vae", "sd_vae", "vae_path"),
    ("--sd-taesd", "sd_taesd", "taesd_path"),
    ("--sd-control-net", "sd_control_net", "control_net_path"),
    ("--sd-photo-maker", "sd_photo_maker", "photo_maker_path"),
)


@dataclass(frozen=True)
class ImageSetup:
    engine: dict[str, Any]  # the StableDiffusion() keyword arguments every worker loads with
    threads: int
    workers: int
    max_pixels: int
    max_steps: int
    loras: dict[str, str] = field(default_factory=dict)  # alias → absolute path (the closed set)
    pm_sets: dict[str, str] = field(default_factory=dict)  # pm_id_image_set name → directory
    control_net: bool = False
    photo_maker: bool = False
    pm_id_embed_path: str = ""

    def worker_config(self) -> dict[str, Any]:
        return {"engine": self.engine, "threads": self.threads}


def _scan_pm_dir(root: Path) -> dict[str, str]:
    if not root.is_dir():
        raise ConfigError(f"--sd-pm-id-dir: no such directory: {root}")
    sets: dict[str, str] = {}
    empty: list[str] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        images = [p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if images:
            sets[sub.name] = str(sub.resolve())
        else:
            empty.append(sub.name)
    if empty:
        raise ConfigError(f"--sd-pm-id-dir: these id image sets have no images ({', '.join(IMAGE_SUFFIXES)}): "
                          + ", ".join(empty))
    if not sets:
        raise ConfigError(f"--sd-pm-id-dir: {root} has no id image sets (one subdirectory of images each)")
    return sets


def image_setup(settings: Settings) -> ImageSetup:
    """Check the --sd-* flags (files exist, features fit together) and describe the workers."""
    if not settings.sd_enabled():
        raise ConfigError("image generation needs --sd-model PATH (or --sd-diffusion-model PATH with its text encoders)")
    if settings.sd_model is not None and settings.sd_diffusion_model is not None:
        raise ConfigError("--sd-model and --sd-diffusion-model: give one (a whole model, or a split one)")
    engine: dict[str, Any] = {}
    for flag, dest, arg in _FILES:
        path = getattr(settings, dest)
        if path is None:
            continue
        if not Path(path).is_file():
            raise ConfigError(f"{flag}: no such file: {path}")
        engine[arg] = str(Path(path).resolve())
    pm_sets: dict[str, str] = {}
    if settings.sd_pm_id_dir is not None or settings.sd_pm_id_embed_path is not None:
        if settings.sd_photo_maker is None:
            raise ConfigError("--sd-pm-id-dir and --sd-pm-id-embed-path need --sd-photo-maker PATH")
    if settings.sd_pm_id_dir is not None:
        pm_sets = _scan_pm_dir(Path(settings.sd_pm_id_dir))
    embed = ""
    if settings.sd_pm_id_embed_path is not None:
        if not Path(settings.sd_pm_id_embed_path).is_file():
            raise ConfigError(f"--sd-pm-id-embed-path: no such file: {settings.sd_pm_id_embed_path}")
        embed = str(Path(settings.sd_pm_id_embed_path).resolve())
    return ImageSetup(
        engine=engine,
        threads=settings.sd_threads,
        workers=settings.sd_workers,
        max_pixels=settings.sd_max_pixels,
        max_steps=settings.sd_max_steps,
        loras=parse_loras(settings.sd_lora),
        pm_sets=pm_sets,
        control_net=settings.sd_control_net is not None,
        photo_maker=settings.sd_photo_maker is not None,
        pm_id_embed_path=embed,
    )
