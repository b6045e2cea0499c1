"""Typed settings for `chimera serve`, resolved in one place.

Precedence: command line > environment (`CHIMERA_<NAME>`) > config file (`--config`, TOML) >
defaults. Every option is declared once in OPTIONS; the CLI, the environment and the config file
all read that table, so a flag cannot exist in one and be missing in another.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .templates import BUILTIN_TEMPLATES


@dataclass(frozen=True)
class Option:
    dest: str
    flags: tuple[str, ...]
    help: str
    kind: str = "value"  # value | flag | list | pairs (two values on the command line, A:B elsewhere)
    metavar: str | None = None
    secret: bool = False


OPTIONS: tuple[Option, ...] = (
    Option("model", ("-m", "--model"), "GGUF model to serve (default: SmolLM2-135M-Instruct, prepared on first use)", metavar="PATH"),
    Option("alias", ("--alias",), "model id reported by the API (default: the file name without .gguf)"),
    Option("host", ("--host",), "address to bind (default 127.0.0.1)"),
    Option("port", ("--port",), "port to bind; 0 picks a free one (default 8080)"),
    Option("ctx_size", ("-c", "--ctx-size"), "total context in tokens, split evenly over the slots; 0 = the model's training context (default 4096)"),
    Option("parallel", ("-np", "--parallel"), "number of slots: sequences decoded together (default 4)"),
    Option("batch_size", ("-b", "--batch-size"), "logical batch: most tokens decoded in one step (default 2048)"),
    Option("ubatch_size", ("-ub", "--ubatch-size"), "physical batch (default 512)"),
    Option("threads", ("-t", "--threads"), "threads for generation (default: physical cores)"),
    Option("threads_batch", ("-tb", "--threads-batch"), "threads for prompt processing (default: --threads)"),
    Option("n_gpu_layers", ("-ngl", "--n-gpu-layers"), "layers to offload to a GPU (default 999: all, when a GPU backend exists)"),
    Option("flash_attn", ("-fa", "--flash-attn"), "flash attention: on | off | auto (default auto)"),
    Option("api_key", ("--api-key",), "require this API key; repeat for several", kind="list", secret=True),
    Option("api_key_file", ("--api-key-file",), "file with one API key a line", metavar="PATH"),
    Option("metrics", ("--metrics",), "accepted for llama-server compatibility; /metrics is always on", kind="flag"),
    Option("jinja", ("--jinja",), "accepted for llama-server compatibility; templates are always Jinja", kind="flag"),
    Option("verbose", ("-v", "--verbose"), "debug logging, native engine logs included", kind="flag"),
    Option("log_format", ("--log-format",), "text | json (default text)"),
    Option("cors_origins", ("--cors-origins",), "origins allowed cross-origin requests, comma-separated or repeated; '*' for any", kind="list"),
    Option("allow_host", ("--allow-host",), "extra Host header values accepted (DNS-rebinding protection); '*' for any", kind="list"),
    Option("max_body_size", ("--max-body-size",), "largest request body in bytes (default 104857600)"),
    Option("shutdown_timeout", ("--shutdown-timeout",), "seconds in-flight requests get to finish on shutdown (default 10)"),
    Option("keep_alive_timeout", ("--keep-alive-timeout",), "seconds an idle connection stays open, and that a client gets to send a request's headers (default 5, as llama-server)"),
    Option("embeddings", ("--embeddings",), "enable /v1/embeddings on the main model", kind="flag"),
    Option("rerank_model", ("--rerank-model",), "a cross-encoder GGUF loaded beside the main model for /v1/rerank", metavar="PATH"),
    Option("reranking", ("--reranking",), "the main model is a reranker: serve /v1/rerank from it", kind="flag"),
    Option("whisper_model", ("--whisper-model",), "whisper.cpp ggml model for /v1/audio/* (run in worker processes)", metavar="PATH"),
    Option("whisper_workers", ("--whisper-workers",), "audio worker processes, one whisper context each (default 1)"),
    Option("whisper_threads", ("--whisper-threads",), "threads per audio worker (default 2)"),
    Option("max_audio_seconds", ("--max-audio-seconds",), "longest audio accepted, in seconds (default 3600)"),
    Option("sd_model", ("--sd-model",), "stable-diffusion.cpp model (all-in-one file) for /v1/images/* (run in worker processes)", metavar="PATH"),
    Option("sd_diffusion_model", ("--sd-diffusion-model",), "stable-diffusion.cpp diffusion model alone, with its text encoders from --sd-llm / --sd-clip-l / --sd-t5xxl", metavar="PATH"),
    Option("sd_llm", ("--sd-llm",), "LLM text encoder for split models (FLUX.2, Qwen-Image, Z-Image)", metavar="PATH"),
    Option("sd_clip_l", ("--sd-clip-l",), "CLIP-L text encoder for split models", metavar="PATH"),
    Option("sd_t5xxl", ("--sd-t5xxl",), "T5-XXL text encoder for split models", metavar="PATH"),
    Option("sd_vae", ("--sd-vae",), "VAE for the image model", metavar="PATH"),
    Option("sd_taesd", ("--sd-taesd",), "tiny autoencoder (TAESD) for the image model", metavar="PATH"),
    Option("sd_workers", ("--sd-workers",), "image worker processes, one stable-diffusion context each (default 1)"),
    Option("sd_threads", ("--sd-threads",), "threads per image worker (default 2)"),
    Option("sd_max_pixels", ("--sd-max-pixels",), "largest image accepted or generated, in pixels (default 4194304 = 2048x2048)"),
    Option("sd_max_steps", ("--sd-max-steps",), "most sampling steps a request may ask for (default 150)"),
    Option("sd_control_net", ("--sd-control-net",), "ControlNet model: enables control_image / control_strength", metavar="PATH"),
    Option("sd_photo_maker", ("--sd-photo-maker",), "PhotoMaker model: enables pm_id_images / pm_id_image_set / pm_style_strength", metavar="PATH"),
    Option("sd_pm_id_dir", ("--sd-pm-id-dir",), "directory of PhotoMaker id image sets, one subdirectory each (pm_id_image_set names one)", metavar="DIR"),
    Option("sd_pm_id_embed_path", ("--sd-pm-id-embed-path",), "PhotoMaker v2 id embedding file", metavar="PATH"),
    Option("sd_lora", ("--sd-lora",), "image LoRA as NAME=PATH; requests name it in 'loras'; repeatable", kind="list", metavar="NAME=PATH"),
    Option("persist_chats", ("--persist-chats",), "save every chat exchange to the chat database", kind="flag"),
    Option("chat_db", ("--chat-db",), "chat database file (default: chats.db in the user data dir)", metavar="PATH"),
    Option("rag_model", ("--rag-model",), "embedding GGUF for vector stores (default: the main model, with --embeddings)", metavar="PATH"),
    Option("rag_db", ("--rag-db",), "vector-store database file (default: rag.db beside the chat database)", metavar="PATH"),
    Option("rag_chunk_tokens", ("--rag-chunk-tokens",), "largest chunk, in embedding-model tokens (default 256)"),
    Option("rag_chunk_overlap", ("--rag-chunk-overlap",), "tokens a chunk repeats from the one before it (default 32)"),
    Option("mmproj", ("--mmproj",), "multimodal projector GGUF: images (and audio) in chat messages", metavar="PATH"),
    Option("allow_remote_media", ("--allow-remote-media",), "fetch http(s) image URLs in messages (default: data: URLs only)", kind="flag"),
    Option("lora", ("--lora",), "LoRA adapter GGUF, scale 1; repeat for several", kind="list", metavar="PATH"),
    Option("lora_scaled", ("--lora-scaled",), "LoRA adapter with a scale (env/config: PATH:SCALE); repeatable", kind="pairs"),
    Option("lora_init_without_apply", ("--lora-init-without-apply",), "load adapters with scale 0 (set them with POST /lora-adapters)", kind="flag"),
    Option("max_queue", ("--max-queue",), "requests that may wait for a slot; beyond it 503 (default 256)"),
    Option("chat_template", ("--chat-template",), "built-in chat template to use instead of the model's (chatml, llama3, ...)"),
    Option("chat_template_file", ("--chat-template-file",), "Jinja chat template file to use instead of the model's", metavar="PATH"),
    Option("reasoning_format", ("--reasoning-format",), "where <think> blocks go: auto (when the template thinks) | deepseek (always) | none (left in content)"),
    Option("reasoning_budget", ("--reasoning-budget",), "-1: think freely; 0: ask the template not to think (default -1)"),
    Option("slot_save_path", ("--slot-save-path",), "directory for slot KV-cache files (POST /slots/{id}?action=save|restore)", metavar="DIR"),
    Option("no_webui", ("--no-webui",), "do not serve the web UI at /", kind="flag"),
    Option("webui_path", ("--webui-path", "--path"), "serve the static files of this folder at / instead of the built-in web UI", metavar="DIR"),
    Option("models_cache", ("--models-cache",), "where prepared default models are kept (default: the user cache dir)", metavar="PATH"),
    Option("models_dir", ("--models-dir",), "a folder of GGUF models served on demand (the request's model picks one); repeatable", kind="list", metavar="DIR"),
    Option("models_preset", ("--models-preset",), "TOML file of per-model options (docs/serve.md)", metavar="FILE"),
    Option("models_max", ("--models-max",), "most models loaded at once; 0 = as many as fit in memory (default 0)"),
    Option("sleep_idle_seconds", ("--sleep-idle-seconds",), "unload a model idle this long; -1 = never (default -1); per model: keep-alive"),
)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Path | None = None
    alias: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    ctx_size: int = Field(4096, ge=0)
    parallel: int = Field(4, ge=1, le=256)
    batch_size: int = Field(2048, ge=1)
    ubatch_size: int = Field(512, ge=1)
    threads: int | None = Field(None, ge=1)
    threads_batch: int | None = Field(None, ge=1)
    n_gpu_layers: int = Field(999, ge=-1)
    flash_attn: Literal["on", "off", "auto"] = "auto"
    api_key: tuple[str, ...] = ()
    api_key_file: Path | None = None
    metrics: bool = True
    jinja: bool = True
    verbose: bool = False
    log_format: Literal["text", "json"] = "text"
    cors_origins: tuple[str, ...] = ()
    allow_host: tuple[str, ...] = ()
    max_body_size: int = Field(100 * 1024 * 1024, ge=1024)
    shutdown_timeout: float = Field(10.0, ge=0)
    keep_alive_timeout: float = Field(5.0, gt=0)
    embeddings: bool = False
    whisper_model: Path | None = None
    whisper_workers: int = Field(1, ge=1, le=64)
    whisper_threads: int = Field(2, ge=1, le=256)
    max_audio_seconds: float = Field(3600.0, gt=0)
    sd_model: Path | None = None
    sd_diffusion_model: Path | None = None
    sd_llm: Path | None = None
    sd_clip_l: Path | None = None
    sd_t5xxl: Path | None = None
    sd_vae: Path | None = None
    sd_taesd: Path | None = None
    sd_workers: int = Field(1, ge=1, le=64)
    sd_threads: int = Field(2, ge=1, le=256)
    sd_max_pixels: int = Field(2048 * 2048, ge=256)
    sd_max_steps: int = Field(150, ge=1, le=10000)
    sd_control_net: Path | None = None
    sd_photo_maker: Path | None = None
    sd_pm_id_dir: Path | None = None
    sd_pm_id_embed_path: Path | None = None
    sd_lora: tuple[str, ...] = ()
    persist_chats: bool = False
    chat_db: Path | None = None
    rag_model: Path | None = None
    rag_db: Path | None = None
    rag_chunk_tokens: int = Field(256, ge=16, le=8192)
    rag_chunk_overlap: int = Field(32, ge=0, le=4096)
    mmproj: Path | None = None
    allow_remote_media: bool = False
    lora: tuple[str, ...] = ()
    lora_scaled: tuple[str, ...] = ()
    lora_init_without_apply: bool = False
    rerank_model: Path | None = None
    reranking: bool = False
    max_queue: int = Field(256, ge=0)
    chat_template: str | None = None
    chat_template_file: Path | None = None
    models_cache: Path | None = None
    no_webui: bool = False
    webui_path: Path | None = None
    models_dir: tuple[Path, ...] = ()
    models_preset: Path | None = None
    models_max: int = Field(0, ge=0)
    sleep_idle_seconds: float = -1.0
    slot_save_path: Path | None = None
    reasoning_format: Literal["auto", "deepseek", "none"] = "auto"
    reasoning_budget: int = -1

    @field_validator("flash_attn", mode="before")
    @classmethod
    def _fa(cls, v: Any) -> Any:
        aliases = {"1": "on", "true": "on", "0": "off", "false": "off", True: "on", False: "off"}
        return aliases.get(v if not isinstance(v, str) else v.lower(), v)

    @field_validator("reasoning_budget")
    @classmethod
    def _budget(cls, v: int) -> int:
        if v not in (-1, 0):
            raise ValueError("only -1 (no limit) and 0 (no thinking) are supported")
        return v

    @field_validator("chat_template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None and v not in BUILTIN_TEMPLATES:
            raise ValueError(f"unknown template; built in: {', '.join(BUILTIN_TEMPLATES)}")
        return v

    @field_validator("slot_save_path")
    @classmethod
    def _slot_dir(cls, v: Path | None) -> Path | None:
        if v is not None:
            try:
                v.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ValueError(f"cannot create the directory: {e.strerror}") from None
        return v

    @field_validator("webui_path")
    @classmethod
    def _site(cls, v: Path | None) -> Path | None:
        if v is not None and not (v / "index.html").is_file():
            raise ValueError(f"{v} has no index.html")
        return v

    @field_validator("models_dir")
    @classmethod
    def _folders(cls, v: tuple[Path, ...]) -> tuple[Path, ...]:
        for folder in v:
            if not folder.is_dir():
                raise ValueError(f"{folder} is not a folder")
        return v

    @field_validator("chat_template_file", "api_key_file", "models_preset")
    @classmethod
    def _readable(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError("no such file")
        return v

    @field_validator("lora_scaled")
    @classmethod
    def _scaled(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            path, sep, scale = item.rpartition(":")
            try:
                float(scale)
            except ValueError:
                raise ValueError(f"{item!r} is not PATH:SCALE (or PATH SCALE on the command line)") from None
            if not sep or not path:
                raise ValueError(f"{item!r} is not PATH:SCALE")
        return v

    def sd_enabled(self) -> bool:
        """Image generation is on: a stable-diffusion model (whole, or its diffusion part) is set."""
        return self.sd_model is not None or self.sd_diffusion_model is not None

    def chat_db_path(self) -> Path:
        if self.chat_db is not None:
            return self.chat_db
        import platformdirs

        return Path(platformdirs.user_data_dir("chimera")) / "chats.db"

    def rag_db_path(self) -> Path:
        return self.rag_db if self.rag_db is not None else self.chat_db_path().parent / "rag.db"

    def lora_adapters(self) -> list[tuple[Path, float]]:
        """(path, initial scale) of every adapter, in flag order: --lora first, then --lora-scaled."""
        out = [(Path(p), 1.0) for p in self.lora]
        for item in self.lora_scaled:
            path, _, scale = item.rpartition(":")
            out.append((Path(path), float(scale)))
        if self.lora_init_without_apply:
            out = [(p, 0.0) for p, _ in out]
        for p, _ in out:
            if not p.is_file():
                raise ConfigError(f"--lora: no such file: {p}")
        return out

    def api_keys(self) -> tuple[str, ...]:
        """Every accepted key: --api-key values plus the lines of --api-key-file."""
        keys = list(self.api_key)
        if self.api_key_file is not None:
            try:
                text = self.api_key_file.read_text()
            except OSError as e:
                raise ConfigError(f"--api-key-file: cannot read {self.api_key_file}: {e.strerror}") from e
            keys += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        return tuple(keys)

    def redacted(self) -> dict[str, Any]:
        """The effective settings as JSON-able values, with secrets replaced."""
        out: dict[str, Any] = {}
        secret = {o.dest for o in OPTIONS if o.secret}
        for name, value in self.model_dump(mode="json").items():
            if name in secret:
                value = ["***"] * len(value) if value else []
            out[name] = value
        return out


_BY_DEST = {o.dest: o for o in OPTIONS}


def _split_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for v in value:
            out += _split_list(v) if isinstance(v, str) else [str(v)]
        return out
    raise ConfigError(f"expected a list or a comma-separated string, got {value!r}")


def _env_layer(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for opt in OPTIONS:
        key = "CHIMERA_" + opt.dest.upper()
        if key in environ:
            raw = environ[key]
            if opt.kind == "flag":
                low = raw.strip().lower()
                if low not in {"1", "0", "true", "false", "yes", "no", "on", "off", ""}:
                    raise ConfigError(f"{key}: expected a boolean, got {raw!r}")
                out[opt.dest] = low in {"1", "true", "yes", "on"}
            elif opt.kind in ("list", "pairs"):
                out[opt.dest] = _split_list(raw)
            else:
                out[opt.dest] = raw
    return out


def _file_layer(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"--config: cannot read {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config: {path} is not valid TOML: {e}") from e
    section = data.get("serve", data)
    out: dict[str, Any] = {}
    for key, value in section.items():
        dest = key.replace("-", "_")
        if dest not in _BY_DEST:
            raise ConfigError(f"--config: unknown setting {key!r} in {path}")
        out[dest] = _split_list(value) if _BY_DEST[dest].kind == "list" else value
    return out


def resolve(cli: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    """Merge the layers and validate. `cli` holds only the options given on the command line."""
    environ = dict(os.environ) if environ is None else environ
    env = _env_layer(environ)
    config_path = cli.get("config") or environ.get("CHIMERA_CONFIG")
    merged: dict[str, Any] = _file_layer(Path(config_path)) if config_path else {}
    merged.update(env)
    merged.update({k: v for k, v in cli.items() if k != "config"})
    for key, value in list(merged.items()):
        kind = _BY_DEST[key].kind
        if kind == "pairs":
            merged[key] = tuple(":".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
                                for v in (value if isinstance(value, (list, tuple)) else _split_list(value)))
        elif kind == "list":
            merged[key] = tuple(_split_list(value))
    try:
        return Settings(**merged)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            dest = str(err["loc"][0]) if err["loc"] else "?"
            flag = max(_BY_DEST[dest].flags, key=len) if dest in _BY_DEST else dest
            problems.append(f"{flag}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("; ".join(problems)) from None
