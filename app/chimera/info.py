"""What `chimera info` and `GET /v1/chimera/info` report: versions, backends, devices, settings.

whisper.cpp and stable-diffusion.cpp each carry their own ggml; loading them beside llama.cpp's
in the server process is what the worker processes exist to avoid. Their versions therefore come
from a short-lived probe process (`chimera _probe`), run once and cached.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from . import __version__
from .config import Settings


def self_command() -> list[str]:
    """argv prefix that runs this chimera again: the frozen executable, or this Python."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "chimera"]


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def probe_main() -> int:
    """Runs in a child process: import the audio and image engines and print what they are."""
    out: dict[str, Any] = {}
    try:
        import _pywhispercpp as pw

        out["whisper_cpp"] = {
            "binding": _dist_version("pywhispercpp"),
            "version": getattr(pw, "__version__", None),
            "system_info": pw.whisper_print_system_info().strip(),
        }
    except Exception as e:  # noqa: BLE001 - report, never fail the probe
        out["whisper_cpp"] = {"error": f"{type(e).__name__}: {e}"}
    try:
        import stable_diffusion_cpp as sd
        from stable_diffusion_cpp import stable_diffusion_cpp as lib

        info: dict[str, Any] = {"binding": _dist_version("stable-diffusion-cpp-python")}
        for fn in ("sd_version", "sd_commit"):
            if hasattr(lib, fn):
                v = getattr(lib, fn)()
                info[fn.removeprefix("sd_")] = v.decode() if isinstance(v, bytes) else v
        if hasattr(lib, "sd_get_system_info"):
            v = lib.sd_get_system_info()
            info["system_info"] = (v.decode() if isinstance(v, bytes) else str(v)).strip()
        info.setdefault("version", getattr(sd, "__version__", None))
        out["stable_diffusion_cpp"] = info
    except Exception as e:  # noqa: BLE001
        out["stable_diffusion_cpp"] = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out))
    return 0


def probe_engines(timeout: float = 60.0) -> dict[str, Any]:
    try:
        res = subprocess.run(
            [*self_command(), "_probe"], capture_output=True, text=True, timeout=timeout, check=False
        )
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        if res.returncode == 0 and lines:
            return dict(json.loads(lines[-1]))
        return {"error": f"probe exited {res.returncode}: {res.stderr.strip()[-300:]}"}
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        return {"error": f"probe failed: {e}"}


def sqlite_info() -> dict[str, Any]:
    import apsw
    import sqlite_vec

    out: dict[str, Any] = {"sqlite": apsw.sqlite_lib_version(), "apsw": apsw.apsw_version()}
    try:
        con = apsw.Connection(":memory:")
        con.enable_load_extension(True)
        con.load_extension(sqlite_vec.loadable_path())
        out["sqlite_vec"] = con.execute("select vec_version()").fetchall()[0][0]
        con.close()
    except Exception as e:  # noqa: BLE001
        out["sqlite_vec"] = {"error": str(e), "binding": _dist_version("sqlite-vec")}
    return out


@dataclass(frozen=True)
class Live:
    """What a running server adds to the report; `chimera info` (no server) has none of it."""

    uptime_s: float | None = None
    ready: bool = False
    model: dict[str, Any] | None = None
    audio: Any = None  # the AudioPool once its workers are up
    rag: Any = None  # the RagService once its embedder is loaded
    images: Any = None  # the ImagePool once its workers are up
    device_lost: str | None = None  # an RPC server died (its devices' memory is not asked for)


def modalities(st: Settings, live: Live) -> dict[str, Any]:
    """Speech-to-text, vector stores and images: configured or not, and whether they are up."""
    audio = None
    if st.whisper_model is not None:
        pool = live.audio
        audio = {"model": str(st.whisper_model), "workers": st.whisper_workers, "threads": st.whisper_threads,
                 "ready": pool is not None, "multilingual": pool.multilingual if pool is not None else None,
                 "restarts": pool.restarts if pool is not None else 0}
    rag = None
    if live.rag is not None:
        r = live.rag
        rag = {"db": str(r.path), "embedding_model": r.model_name, "dimension": r.dim,
               "chunk_tokens": r.chunk_tokens, "chunk_overlap": r.overlap, "ready": True}
    elif st.rag_model is not None or st.embeddings:
        rag = {"db": str(st.rag_db_path()), "embedding_model": str(st.rag_model) if st.rag_model else None,
               "dimension": None, "chunk_tokens": st.rag_chunk_tokens, "chunk_overlap": st.rag_chunk_overlap,
               "ready": False}
    images = None
    if st.sd_enabled():
        pool = live.images
        images = {"model": str(st.sd_model or st.sd_diffusion_model), "workers": st.sd_workers, "threads": st.sd_threads,
                  "ready": pool is not None, "restarts": pool.restarts if pool is not None else 0}
    return {"speech_to_text": audio, "vector_stores": rag, "images": images}


def collect_info(settings: Settings, engines: dict[str, Any] | None = None, live: Live | None = None) -> dict[str, Any]:
    """The whole report; the same keys from `chimera info` and `GET /v1/chimera/info`."""
    from .llm import native

    live = live or Live()
    llama = native.describe(rpc_memory=live.device_lost is None)
    model = live.model
    if model is None and settings.model is not None:
        model = {"id": next(iter(settings.alias_names()), settings.model.name.removesuffix(".gguf")),
                 "path": str(settings.model)}
    return {
        "chimera": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "frozen": bool(getattr(sys, "frozen", False)),
        "llama_cpp": llama,
        "engines": engines if engines is not None else probe_engines(),
        "sqlite": sqlite_info(),
        "settings": settings.redacted(),
        "uptime_s": live.uptime_s,
        "ready": live.ready,
        "model": model,
        **modalities(settings, live),
    }
