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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .llama_flags import LLAMA_ENV, NOT_BUILT, SPEC_TYPES, parse_override
from .templates import BUILTIN_TEMPLATES, LLAMA_CPP_TEMPLATES, is_jinja
from .tools.flags import enabled_tools, parse_runtime

DEFAULT_SLOTS = 4  # -np auto, as llama-server
KvType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]


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
    Option("alias", ("-a", "--alias"), "model id reported by the API (default: the file name without .gguf); comma-separated names: all are accepted, the first in sorted order is the id"),
    Option("tags", ("--tags",), "comma-separated tags of the model, listed by /v1/models (informational)", kind="list"),
    Option("host", ("--host",), "addresses to listen on, comma-separated, or UNIX socket paths ending in .sock (default 127.0.0.1)"),
    Option("port", ("--port",), "port to bind; 0 picks a free one (default 8080)"),
    Option("ctx_size", ("-c", "--ctx-size"), "KV cache size in tokens, all slots together; 0 = the model's training context, lowered to fit in memory (default 0)"),
    Option("parallel", ("-np", "--parallel"), "number of slots: sequences decoded together; -1 = auto: 4 slots sharing one KV cache (default -1)"),
    Option("kv_unified", ("-kvu", "--kv-unified"), "one KV cache shared by the slots, so one sequence may use all of -c (default: on when -np is auto)", kind="flag"),
    Option("no_kv_unified", ("-no-kvu", "--no-kv-unified"), "split the KV cache evenly over the slots: -c / -np tokens each", kind="flag"),
    Option("kv_unified_per_slot", ("--kv-unified-per-slot",), "with a shared cache, the most tokens one slot may hold; without -c the cache is -np times this (default 0: no limit)"),
    Option("context_shift", ("--context-shift",), "when a generation reaches the end of its context, drop the oldest half of it (after --keep tokens) and go on", kind="flag"),
    Option("no_context_shift", ("--no-context-shift",), "a generation that reaches the end of its context ends with finish_reason length (default)", kind="flag"),
    Option("cache_reuse", ("--cache-reuse",), "reuse runs of at least N tokens of a slot's cache that match a new prompt after a changed part, moving them into place by KV shifting (default 0: off)"),
    Option("n_keep", ("--keep",), "tokens of the prompt kept when the context shifts; -1 = all of the prompt (default 0)"),
    Option("batch_size", ("-b", "--batch-size"), "logical batch: most tokens decoded in one step (default 2048)"),
    Option("ubatch_size", ("-ub", "--ubatch-size"), "physical batch (default 512)"),
    Option("threads", ("-t", "--threads"), "threads for generation (default: physical cores)"),
    Option("threads_batch", ("-tb", "--threads-batch"), "threads for prompt processing (default: --threads)"),
    Option("n_gpu_layers", ("-ngl", "--gpu-layers", "--n-gpu-layers"), "layers to offload to a GPU (default 999: all, when a GPU backend exists)"),
    Option("flash_attn", ("-fa", "--flash-attn"), "flash attention: on | off | auto (default auto)"),
    Option("api_key", ("--api-key",), "require this API key; repeat for several", kind="list", secret=True),
    Option("api_key_file", ("--api-key-file",), "file with one API key a line", metavar="PATH"),
    Option("metrics", ("--metrics",), "accepted for llama-server compatibility; /metrics is always on", kind="flag"),
    Option("jinja", ("--jinja",), "accepted for llama-server compatibility; templates are always Jinja", kind="flag"),
    Option("verbose", ("-v", "--log-verbose", "--verbose"), "debug logging, native engine logs included", kind="flag"),
    Option("log_format", ("--log-format",), "text | json (default text)"),
    Option("cors_origins", ("--cors-origins",), "origins allowed cross-origin requests, comma-separated or repeated; '*' for any", kind="list"),
    Option("allow_host", ("--allow-host",), "extra Host header values accepted (DNS-rebinding protection); '*' for any", kind="list"),
    Option("max_body_size", ("--max-body-size",), "largest request body in bytes (default 104857600)"),
    Option("shutdown_timeout", ("--shutdown-timeout",), "seconds in-flight requests get to finish on shutdown (default 10)"),
    Option("keep_alive_timeout", ("--keep-alive-timeout",), "seconds an idle connection stays open, and that a client gets to send a request's headers (default 5, as llama-server)"),
    Option("embeddings", ("--embedding", "--embeddings"), "enable /v1/embeddings on the main model", kind="flag"),
    Option("pooling", ("--pooling",), "embedding pooling: none (one vector per token, on /embeddings) | mean | cls | last | rank (default: the model's)"),
    Option("rerank_model", ("--rerank-model",), "a cross-encoder GGUF loaded beside the main model for /v1/rerank", metavar="PATH"),
    Option("reranking", ("--rerank", "--reranking"), "the main model is a reranker: serve /v1/rerank from it", kind="flag"),
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
    Option("mmproj", ("-mm", "--mmproj"), "multimodal projector GGUF: images (and audio) in chat messages", metavar="PATH"),
    Option("allow_remote_media", ("--allow-remote-media",), "fetch http(s) image URLs in messages (default: data: URLs only)", kind="flag"),
    Option("media_path", ("--media-path",), "folder that file:// media URLs in messages are read from, by relative path (default: file:// refused)", metavar="DIR"),
    Option("lora", ("--lora",), "LoRA adapter GGUF, scale 1; repeat for several", kind="list", metavar="PATH"),
    Option("lora_scaled", ("--lora-scaled",), "LoRA adapter with a scale (env/config: PATH:SCALE); repeatable", kind="pairs"),
    Option("lora_init_without_apply", ("--lora-init-without-apply",), "load adapters with scale 0 (set them with POST /lora-adapters)", kind="flag"),
    Option("max_queue", ("--max-queue",), "requests that may wait for a slot; beyond it 503 (default 256)"),
    Option("chat_template", ("--chat-template",), "chat template to use instead of the model's: a built-in name (chatml, llama3, mistral-v7, ...; llama.cpp's names) or Jinja text"),
    Option("chat_template_file", ("--chat-template-file",), "Jinja chat template file to use instead of the model's", metavar="PATH"),
    Option("reasoning_format", ("--reasoning-format",), "where <think> blocks go: auto (when the template thinks) | deepseek (always) | none (left in content)"),
    Option("reasoning", ("-rea", "--reasoning"), "thinking in chat: on | off (templates asked not to think, a forced-open <think> closed) | auto (default)"),
    Option("reasoning_budget", ("--reasoning-budget",), "-1: think freely; 0: ask the template not to think (default -1)"),
    Option("slots", ("--slots",), "GET /slots lists the slots (default)", kind="flag"),
    Option("no_slots", ("--no-slots",), "GET /slots answers 501 (the slots' prompts stay private to their clients)", kind="flag"),
    Option("slot_save_path", ("--slot-save-path",), "directory for slot KV-cache files (POST /slots/{id}?action=save|restore)", metavar="DIR"),
    # llama-server's tools for agents (GET/POST /tools)
    Option("tools", ("--tools",), "built-in tools served at GET/POST /tools, comma-separated or repeated: read_file, file_glob_search, grep_search, exec_shell_command, write_file, edit_file, get_info, or all (default: none). They act on this machine as the server's user, and exec_shell_command runs any command: only for a trusted client. Without --cors-origins, cross-origin requests are then allowed from loopback origins only", kind="list", metavar="TOOL1,TOOL2,..."),
    Option("tools_runtime", ("--tools-runtime",), "where the built-in tools run: docker:IMAGE or podman:IMAGE (a container started for them, removed at exit), docker-container:ID or podman-container:ID (a running container), ssh:TARGET (a host over SSH, key-based auth and a trusted host key) (default: this machine)", metavar="OPTION"),
    Option("mcp_servers_config", ("--mcp-servers-config",), "JSON file of MCP servers (Cursor's {\"mcpServers\": {NAME: {\"command\", \"args\", \"env\", \"cwd\", \"timeout_ms\"}}}) whose tools GET/POST /tools serve as NAME_TOOL; they are started with the server", metavar="PATH"),
    Option("mcp_servers_json", ("--mcp-servers-json",), "MCP servers as inline JSON, as in --mcp-servers-config", metavar="JSON"),
    # llama-server's engine flags
    Option("cache_type_k", ("-ctk", "--cache-type-k"), "KV cache type for K: f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1 (default f16)"),
    Option("cache_type_v", ("-ctv", "--cache-type-v"), "KV cache type for V, as -ctk; a quantized V needs flash attention (turned on with -fa auto)"),
    Option("load_mode", ("-lm", "--load-mode"), "how to load the weights: auto | none | mmap | mlock | mmap+mlock | dio (default auto: mmap)"),
    Option("no_mmap", ("--no-mmap",), "read the model into memory instead of mapping it (--load-mode none)", kind="flag"),
    Option("mlock", ("--mlock",), "keep the model in RAM, no swapping (--load-mode mmap+mlock)", kind="flag"),
    Option("override_kv", ("--override-kv",), "override model metadata: KEY=TYPE:VALUE (types int, float, bool, str), comma-separated or repeated", kind="list", metavar="KEY=TYPE:VALUE"),
    Option("numa", ("--numa",), "NUMA strategy: distribute | isolate | numactl"),
    Option("split_mode", ("-sm", "--split-mode"), "how to split the model over GPUs: none | layer | row | tensor (default layer)"),
    Option("tensor_split", ("-ts", "--tensor-split"), "fraction of the model per GPU, e.g. 3,1", metavar="N0,N1,..."),
    Option("main_gpu", ("-mg", "--main-gpu"), "the GPU for the whole model (-sm none) or for intermediate results (-sm row)"),
    Option("device", ("-dev", "--device"), "devices to use, comma-separated (none = CPU only); see --list-devices", kind="list", metavar="DEV"),
    Option("list_devices", ("--list-devices",), "print the devices and exit", kind="flag"),
    Option("rpc", ("--rpc",), "RPC servers (`chimera rpc-server` or llama.cpp's rpc-server) whose devices take model layers with -ngl, comma-separated; checked at start", kind="list", metavar="HOST:PORT,..."),
    Option("rope_scaling", ("--rope-scaling",), "RoPE scaling: none | linear | yarn (default: the model's)"),
    Option("rope_scale", ("--rope-scale",), "RoPE context scaling factor (the context grows by this factor)"),
    Option("rope_freq_base", ("--rope-freq-base",), "RoPE base frequency (default: the model's)"),
    Option("rope_freq_scale", ("--rope-freq-scale",), "RoPE frequency scaling factor (1/N expands the context N times)"),
    Option("yarn_orig_ctx", ("--yarn-orig-ctx",), "YaRN: the model's original context (default: its training context)"),
    Option("yarn_ext_factor", ("--yarn-ext-factor",), "YaRN: extrapolation mix factor (-1: from the model)"),
    Option("yarn_attn_factor", ("--yarn-attn-factor",), "YaRN: attention magnitude scale"),
    Option("yarn_beta_slow", ("--yarn-beta-slow",), "YaRN: high correction dim or alpha"),
    Option("yarn_beta_fast", ("--yarn-beta-fast",), "YaRN: low correction dim or beta"),
    # speculative decoding
    Option("model_draft", ("-md", "--model-draft", "--spec-draft-model"), "draft model for speculative decoding (same tokenizer as -m); implies --spec-type draft-simple", metavar="PATH"),
    Option("spec_type", ("--spec-type",), "speculative decoding: none | draft-simple (with -md) | ngram-simple (no model: repeats of earlier text)", kind="list", metavar="TYPE"),
    Option("draft_max", ("--spec-draft-n-max", "--draft-max", "--draft", "--draft-n"), "most tokens drafted a step (default 3)"),
    Option("draft_min", ("--spec-draft-n-min", "--draft-min", "--draft-n-min"), "fewest drafted tokens worth checking; shorter drafts are dropped (default 0)"),
    Option("draft_p_min", ("--spec-draft-p-min", "--draft-p-min"), "the draft model stops where its top probability falls below this (default 0.0)"),
    Option("n_gpu_layers_draft", ("-ngld", "--spec-draft-ngl", "--gpu-layers-draft", "--n-gpu-layers-draft"), "draft model layers on a GPU (default: as -ngl)"),
    Option("ctx_size_draft", ("-cd", "--ctx-size-draft"), "the draft model's context (default: the model's)"),
    Option("device_draft", ("-devd", "--device-draft", "--spec-draft-device"), "devices for the draft model (default: as --device)", kind="list", metavar="DEV"),
    Option("cache_type_k_draft", ("-ctkd", "--cache-type-k-draft", "--spec-draft-type-k"), "KV cache type for K of the draft model (default f16)"),
    Option("cache_type_v_draft", ("-ctvd", "--cache-type-v-draft", "--spec-draft-type-v"), "KV cache type for V of the draft model (default f16)"),
    Option("threads_draft", ("-td", "--threads-draft", "--spec-draft-threads"), "threads for the draft model (default: --threads)"),
    Option("threads_batch_draft", ("-tbd", "--threads-batch-draft", "--spec-draft-threads-batch"), "threads for the draft model's prompt processing (default: --threads-draft)"),
    Option("spec_ngram_simple_size_n", ("--spec-ngram-simple-size-n",), "ngram-simple: tokens looked up (default 12)"),
    Option("spec_ngram_simple_size_m", ("--spec-ngram-simple-size-m",), "ngram-simple: most tokens drafted from a match (default 48)"),
    Option("spec_ngram_simple_min_hits", ("--spec-ngram-simple-min-hits",), "ngram-simple: matches needed (only 1, the default, is supported)"),
    # server-wide generation defaults, which each request may override
    Option("n_predict", ("-n", "--n-predict", "--predict"), "tokens to generate when a request says nothing (default -1: until the context is full)"),
    Option("temp", ("--temp", "--temperature"), "default temperature (0.8)"),
    Option("top_k", ("--top-k",), "default top-k (40)"),
    Option("top_p", ("--top-p",), "default top-p (0.95)"),
    Option("min_p", ("--min-p",), "default min-p (0.05)"),
    Option("typical", ("--typical-p", "--typical"), "default typical-p (1.0: off)"),
    Option("top_nsigma", ("--top-nsigma", "--top-n-sigma"), "default top-n-sigma (-1: off)"),
    Option("repeat_penalty", ("--repeat-penalty",), "default repeat penalty (1.0: off)"),
    Option("repeat_last_n", ("--repeat-last-n",), "default window of the repeat penalties (64; -1: the context)"),
    Option("presence_penalty", ("--presence-penalty",), "default presence penalty (0)"),
    Option("frequency_penalty", ("--frequency-penalty",), "default frequency penalty (0)"),
    Option("dry_multiplier", ("--dry-multiplier",), "default DRY multiplier (0: off)"),
    Option("dry_base", ("--dry-base",), "default DRY base (1.75)"),
    Option("dry_allowed_length", ("--dry-allowed-length",), "default DRY allowed length (2)"),
    Option("dry_penalty_last_n", ("--dry-penalty-last-n",), "default DRY window (-1: the context)"),
    Option("dry_sequence_breaker", ("--dry-sequence-breaker",), "a DRY sequence breaker (repeatable; 'none' for none)", kind="list", metavar="STR"),
    Option("xtc_probability", ("--xtc-probability",), "default XTC probability (0: off)"),
    Option("xtc_threshold", ("--xtc-threshold",), "default XTC threshold (0.1)"),
    Option("seed", ("-s", "--seed"), "default seed (-1: random)"),
    Option("ignore_eos", ("--ignore-eos",), "by default, generate past end-of-generation tokens", kind="flag"),
    Option("grammar", ("--grammar",), "default GBNF grammar for requests that bring no constraint of their own"),
    Option("grammar_file", ("--grammar-file",), "--grammar from a file", metavar="FILE"),
    Option("json_schema", ("-j", "--json-schema"), "default JSON schema (as --grammar)", metavar="SCHEMA"),
    Option("json_schema_file", ("-jf", "--json-schema-file"), "--json-schema from a file", metavar="FILE"),
    Option("props", ("--props",), "allow POST /props to change the default generation settings", kind="flag"),
    # llama-server's HTTP flags
    Option("timeout", ("-to", "--timeout"), "seconds a request body may take to arrive (default 600)"),
    Option("threads_http", ("--threads-http",), "accepted for llama-server compatibility: chimera serves HTTP on one event loop"),
    Option("cont_batching", ("-cb", "--cont-batching"), "accepted: batching is always continuous", kind="flag"),
    Option("no_cont_batching", ("-nocb", "--no-cont-batching"), "accepted and refused with a note: batching is always continuous", kind="flag"),
    Option("ssl_key_file", ("--ssl-key-file",), "PEM private key: serve HTTPS (with --ssl-cert-file)", metavar="FILE"),
    Option("ssl_cert_file", ("--ssl-cert-file",), "PEM certificate chain for HTTPS", metavar="FILE"),
    Option("no_webui", ("--no-ui", "--no-webui"), "do not serve the web UI at /", kind="flag"),
    Option("ui_mcp_proxy", ("--ui-mcp-proxy", "--webui-mcp-proxy"), "serve /cors-proxy?url=, which fetches any http(s) URL for the caller (a web UI's MCP servers); trusted networks only", kind="flag"),
    Option("no_ui_mcp_proxy", ("--no-ui-mcp-proxy", "--no-webui-mcp-proxy"), "no /cors-proxy (default)", kind="flag"),
    Option("webui_path", ("--webui-path", "--path"), "serve the static files of this folder at / instead of the built-in web UI", metavar="DIR"),
    Option("hf_repo", ("-hf", "-hfr", "--hf-repo"), "download the model from a Hugging Face repository: <user>/<model>[:quant] (quant default Q4_K_M, else the first GGUF); its projector too, unless --no-mmproj", metavar="REPO[:QUANT]"),
    Option("hf_file", ("-hff", "--hf-file"), "the file to download from --hf-repo (instead of picking by quant)", metavar="FILE"),
    Option("hf_token", ("-hft", "--hf-token"), "Hugging Face access token (default: $HF_TOKEN)", secret=True),
    Option("model_url", ("-mu", "--model-url"), "download the model from this URL", metavar="URL"),
    Option("offline", ("--offline",), "use only models already in the cache: no network access for -hf / -mu", kind="flag"),
    Option("no_mmproj", ("--no-mmproj", "--no-mmproj-auto"), "with -hf, do not download or use the repository's projector", kind="flag"),
    Option("models_cache", ("--models-cache",), "where prepared default models are kept (default: the user cache dir)", metavar="PATH"),
    Option("models_dir", ("--models-dir",), "a folder of GGUF models served on demand (the request's model picks one); repeatable", kind="list", metavar="DIR"),
    Option("models_preset", ("--models-preset",), "TOML file of per-model options (docs/serve.md)", metavar="FILE"),
    Option("models_max", ("--models-max",), "most models loaded at once; 0 = as many as fit in memory (default 0)"),
    Option("models_autoload", ("--models-autoload",), "a request for a model that is not loaded loads it (default)", kind="flag"),
    Option("no_models_autoload", ("--no-models-autoload",), "a request for a model that is not loaded is a 400; POST /models/load loads it", kind="flag"),
    Option("sleep_idle_seconds", ("--sleep-idle-seconds",), "unload a model idle this long; -1 = never (default -1); per model: keep-alive"),
)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Path | None = None
    alias: str | None = None
    # Vertex AI custom-container mode (AIP_MODE=PREDICTION in the environment, not a flag)
    predict_route: str | None = None  # AIP_PREDICT_ROUTE, default /predict
    predict_health_route: str | None = None  # AIP_HEALTH_ROUTE: /health under another path
    slots: bool = False
    no_slots: bool = False
    tags: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    ctx_size: int = Field(0, ge=0)
    parallel: int = Field(-1, ge=-1, le=256)
    kv_unified: bool | None = None
    no_kv_unified: bool = False
    kv_unified_per_slot: int = Field(0, ge=0)
    context_shift: bool = False
    no_context_shift: bool = False
    n_keep: int = Field(0, ge=-1)
    cache_reuse: int = Field(0, ge=0)
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
    pooling: Literal["none", "mean", "cls", "last", "rank"] | None = None
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
    media_path: Path | None = None
    lora: tuple[str, ...] = ()
    lora_scaled: tuple[str, ...] = ()
    lora_init_without_apply: bool = False
    rerank_model: Path | None = None
    reranking: bool = False
    max_queue: int = Field(256, ge=0)
    chat_template: str | None = None
    chat_template_file: Path | None = None
    models_cache: Path | None = None
    hf_repo: str | None = None
    hf_file: str | None = None
    hf_token: str | None = None
    model_url: str | None = None
    offline: bool = False
    no_mmproj: bool = False
    cache_type_k: KvType = "f16"
    cache_type_v: KvType = "f16"
    load_mode: Literal["auto", "none", "mmap", "mlock", "mmap+mlock", "dio"] = "auto"
    no_mmap: bool = False
    mlock: bool = False
    override_kv: tuple[str, ...] = ()
    model_draft: Path | None = None
    spec_type: tuple[str, ...] = ()
    draft_max: int = Field(3, ge=0, le=256)
    draft_min: int = Field(0, ge=0, le=256)
    draft_p_min: float = Field(0.0, ge=0.0, le=1.0)
    n_gpu_layers_draft: int | None = Field(None, ge=-1)
    ctx_size_draft: int = Field(0, ge=0)
    device_draft: tuple[str, ...] = ()
    cache_type_k_draft: KvType = "f16"
    cache_type_v_draft: KvType = "f16"
    threads_draft: int | None = Field(None, ge=1)
    threads_batch_draft: int | None = Field(None, ge=1)
    spec_ngram_simple_size_n: int = Field(12, ge=1, le=1024)
    spec_ngram_simple_size_m: int = Field(48, ge=1, le=1024)
    spec_ngram_simple_min_hits: int = Field(1, ge=1, le=1)
    numa: Literal["distribute", "isolate", "numactl"] | None = None
    split_mode: Literal["none", "layer", "row", "tensor"] = "layer"
    tensor_split: tuple[float, ...] = ()
    main_gpu: int = Field(0, ge=0)
    device: tuple[str, ...] = ()
    list_devices: bool = False
    rpc: tuple[str, ...] = ()
    rope_scaling: Literal["none", "linear", "yarn"] | None = None
    rope_scale: float | None = Field(None, gt=0)
    rope_freq_base: float | None = Field(None, gt=0)
    rope_freq_scale: float | None = Field(None, gt=0)
    yarn_orig_ctx: int | None = Field(None, ge=0)
    yarn_ext_factor: float | None = None
    yarn_attn_factor: float | None = None
    yarn_beta_slow: float | None = None
    yarn_beta_fast: float | None = None
    n_predict: int = Field(-1, ge=-1)
    temp: float | None = Field(None, ge=0.0, le=10.0)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    typical: float | None = Field(None, ge=0.0, le=1.0)
    top_nsigma: float | None = None
    repeat_penalty: float | None = Field(None, ge=0.0)
    repeat_last_n: int | None = Field(None, ge=-1)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    dry_multiplier: float | None = Field(None, ge=0.0)
    dry_base: float | None = Field(None, ge=1.0)
    dry_allowed_length: int | None = Field(None, ge=0)
    dry_penalty_last_n: int | None = Field(None, ge=-1)
    dry_sequence_breaker: tuple[str, ...] = ()
    xtc_probability: float | None = Field(None, ge=0.0, le=1.0)
    xtc_threshold: float | None = Field(None, ge=0.0, le=1.0)
    seed: int | None = None
    ignore_eos: bool = False
    grammar: str | None = None
    grammar_file: Path | None = None
    json_schema: str | None = None
    json_schema_file: Path | None = None
    props: bool = False
    timeout: float = Field(600.0, gt=0)
    threads_http: int | None = Field(None, ge=-1)
    cont_batching: bool = True
    no_cont_batching: bool = False
    ssl_key_file: Path | None = None
    ssl_cert_file: Path | None = None
    no_webui: bool = False
    ui_mcp_proxy: bool = False
    no_ui_mcp_proxy: bool = False
    webui_path: Path | None = None
    models_dir: tuple[Path, ...] = ()
    models_preset: Path | None = None
    models_max: int = Field(0, ge=0)
    models_autoload: bool = False
    no_models_autoload: bool = False
    sleep_idle_seconds: float = -1.0
    slot_save_path: Path | None = None
    tools: tuple[str, ...] = ()
    tools_runtime: str | None = None
    mcp_servers_config: Path | None = None
    mcp_servers_json: str | None = None
    reasoning_format: Literal["auto", "deepseek", "none"] = "auto"
    reasoning: Literal["on", "off", "auto"] = "auto"
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
        if v is not None and v not in BUILTIN_TEMPLATES and v not in LLAMA_CPP_TEMPLATES and not is_jinja(v):
            raise ValueError(f"unknown template; give a Jinja template, or one of: {', '.join(sorted({*BUILTIN_TEMPLATES, *LLAMA_CPP_TEMPLATES}))}")
        return v

    @field_validator("tools")
    @classmethod
    def _tools(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        enabled_tools(v)
        return v

    @field_validator("tools_runtime")
    @classmethod
    def _tools_runtime(cls, v: str | None) -> str | None:
        if v:
            parse_runtime(v)
        return v

    @field_validator("mcp_servers_json")
    @classmethod
    def _mcp_json(cls, v: str | None) -> str | None:
        if v:
            import json

            try:
                json.loads(v)
            except json.JSONDecodeError as e:
                raise ValueError(f"failed to parse MCP config JSON: {e}") from None
        return v

    @field_validator("mcp_servers_config")
    @classmethod
    def _mcp_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"failed to open MCP config file: {v}")
        return v

    def tools_enabled(self) -> bool:
        """GET/POST /tools are served: built-in tools or MCP servers are configured."""
        return bool(self.tools or self.mcp_servers_config or self.mcp_servers_json)

    @field_validator("slot_save_path")
    @classmethod
    def _slot_dir(cls, v: Path | None) -> Path | None:
        if v is not None:
            try:
                v.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ValueError(f"cannot create the directory: {e.strerror}") from None
        return v

    @model_validator(mode="after")
    def _pairs(self) -> Settings:
        if (self.ssl_key_file is None) != (self.ssl_cert_file is None):
            raise ValueError("--ssl-key-file and --ssl-cert-file go together")
        given = [f for f, v in (("--grammar", self.grammar), ("--grammar-file", self.grammar_file),
                                ("--json-schema", self.json_schema), ("--json-schema-file", self.json_schema_file)) if v]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)}: give one default constraint")
        if self.cache_type_v not in ("f16", "f32", "bf16") and self.flash_attn == "off":
            raise ValueError(f"--cache-type-v {self.cache_type_v}: a quantized V cache needs flash attention (-fa on or auto)")
        if sum(1 for v in (self.model, self.hf_repo, self.model_url) if v) > 1:
            raise ValueError("--model, --hf-repo and --model-url: give one")
        if self.hf_file and not self.hf_repo:
            raise ValueError("--hf-file needs --hf-repo")
        if "draft-simple" in self.spec_type and self.model_draft is None:
            raise ValueError("--spec-type draft-simple needs a draft model (-md)")
        if self.parallel == 0:
            raise ValueError("--parallel: give a number of slots, or -1 for auto")
        if self.kv_unified and self.no_kv_unified:
            raise ValueError("--kv-unified and --no-kv-unified: give one")
        if self.context_shift and self.no_context_shift:
            raise ValueError("--context-shift and --no-context-shift: give one")
        return self

    def thinking(self) -> bool | None:
        """The server's word on thinking: off with --reasoning off or --reasoning-budget 0, on
        with --reasoning on, else left to the template (None)."""
        if self.reasoning == "off" or self.reasoning_budget == 0:
            return False
        return True if self.reasoning == "on" else None

    def hosts(self) -> list[str]:
        """--host's addresses and socket paths."""
        return [h.strip() for h in self.host.split(",") if h.strip()]

    def unified_kv(self) -> bool | None:
        """-kvu / -no-kvu as given (None: not given, so on when -np is auto)."""
        return False if self.no_kv_unified else self.kv_unified

    def n_slots(self) -> int:
        """Slots: -np, or 4 when it is auto."""
        return DEFAULT_SLOTS if self.parallel < 1 else self.parallel

    @field_validator("rpc", mode="before")
    @classmethod
    def _rpc_list(cls, v: Any) -> Any:
        return tuple(x.strip() for x in v.split(",") if x.strip()) if isinstance(v, str) else v

    @field_validator("rpc")
    @classmethod
    def _rpc(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for x in v:  # llama.cpp's reading: the host is everything before the first colon
            host, sep, port = x.partition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{x!r} is not HOST:PORT")
        return v

    @field_validator("tensor_split", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):  # "3,1" or llama-server's "3/1"
            return tuple(float(x) for x in v.replace("/", ",").split(",") if x.strip())
        return v

    @field_validator("grammar_file", "json_schema_file", "ssl_key_file", "ssl_cert_file")
    @classmethod
    def _file_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        return v

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, v: str | None) -> str | None:
        if v is not None:
            import json

            try:
                if not isinstance(json.loads(v), dict):
                    raise ValueError("a JSON schema is an object")
            except json.JSONDecodeError as e:
                raise ValueError(f"not JSON: {e}") from None
        return v

    @field_validator("webui_path")
    @classmethod
    def _site(cls, v: Path | None) -> Path | None:
        if v is not None and not (v / "index.html").is_file():
            raise ValueError(f"{v} has no index.html")
        return v

    @field_validator("media_path")
    @classmethod
    def _media_folder(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_dir():
            raise ValueError(f"not a directory: {v}")
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

    @field_validator("n_gpu_layers_draft", mode="before")
    @classmethod
    def _ngl_draft(cls, v: Any) -> Any:
        return {"auto": None, "all": 999}.get(v, v) if isinstance(v, str) else v

    @field_validator("model_draft")
    @classmethod
    def _draft_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no such file: {v}")
        return v

    @field_validator("spec_type")
    @classmethod
    def _spec_types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if name in NOT_BUILT:
                raise ValueError(f"{name} is not supported here; use draft-simple (with -md) or ngram-simple")
            if name not in SPEC_TYPES:
                raise ValueError(f"unknown type {name!r} (none, draft-simple, ngram-simple)")
        if len([n for n in v if n != "none"]) > 1:
            raise ValueError("give one of draft-simple and ngram-simple")
        return v

    def alias_names(self) -> tuple[str, ...]:
        """--alias's names, sorted (llama-server's id is the first), or () without it."""
        return tuple(sorted({a.strip() for a in (self.alias or "").split(",") if a.strip()}))

    def spec_kinds(self) -> tuple[str, ...]:
        """The speculative decoding in use: --spec-type, or draft-simple when -md is given."""
        kinds = tuple(n for n in self.spec_type if n != "none")
        if not kinds and self.model_draft is not None and "none" not in self.spec_type:
            return ("draft-simple",)
        return kinds

    @field_validator("override_kv")
    @classmethod
    def _overrides(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            parse_override(item)
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
                if isinstance(value, str):
                    value = "***"
                else:
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
        if key not in environ and opt.dest in LLAMA_ENV and LLAMA_ENV[opt.dest] in environ:
            key = LLAMA_ENV[opt.dest]  # llama-server's name for it
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


def _vertex_layer(environ: dict[str, str]) -> dict[str, Any]:
    """Vertex AI's custom-container contract (AIP_MODE=PREDICTION): the port it gives wins over
    --port, and POST AIP_PREDICT_ROUTE answers its `instances` requests."""
    if environ.get("AIP_MODE") != "PREDICTION":
        return {}

    def route(name: str, default: str | None) -> str | None:
        value = environ.get(name) or default
        return None if value is None else "/" + value.lstrip("/")

    try:
        port = int(environ.get("AIP_HTTP_PORT") or 8080)
    except ValueError:
        raise ConfigError(f"AIP_HTTP_PORT: expected a port number, got {environ['AIP_HTTP_PORT']!r}") from None
    return {"port": port, "predict_route": route("AIP_PREDICT_ROUTE", "/predict"),
            "predict_health_route": route("AIP_HEALTH_ROUTE", None)}


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
    merged.update(_vertex_layer(environ))
    try:
        return Settings(**merged)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            dest = str(err["loc"][0]) if err["loc"] else "?"
            flag = max(_BY_DEST[dest].flags, key=len) if dest in _BY_DEST else dest
            problems.append(f"{flag}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("; ".join(problems)) from None
