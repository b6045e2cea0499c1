"""llama-server's side of the command line: its names for settings that chimera has too (the
`LLAMA_ARG_*` environment variables, `--spec-type` kinds, `--override-kv` values), and the flags
it takes that have no effect here (accepted with a one-line note, so existing command lines start).
"""

from __future__ import annotations

from dataclasses import dataclass

# --spec-type: llama-server's names; the ones built here, and the others
SPEC_TYPES = ("none", "draft-simple", "ngram-simple")
NOT_BUILT = ("draft-eagle3", "draft-mtp", "draft-dflash", "draft-dspark", "ngram-map-k", "ngram-map-k4v", "ngram-mod",
             "ngram-cache")

@dataclass(frozen=True)
class Accepted:
    """A llama-server flag that has no effect here: accepted with a one-line note, so existing
    command lines start (`value`: whether it takes an argument)."""
    flags: tuple[str, ...]
    note: str
    value: bool = False


ACCEPTED: tuple[Accepted, ...] = (
    Accepted(("--no-warmup",), "chimera does not run a warm-up decode"),
    Accepted(("--warmup",), "chimera does not run a warm-up decode"),
    Accepted(("--log-disable",), "use --log-format, or redirect the output"),
    Accepted(("--log-file",), "chimera logs to stderr; redirect it", value=True),
    Accepted(("--log-colors",), "chimera's log has no colours", value=True),
    Accepted(("--log-prefix",), "chimera's log lines have their own prefix"),
    Accepted(("--log-timestamps",), "chimera's log lines carry timestamps"),
    Accepted(("-lv", "--verbosity", "--log-verbosity"), "use -v for debug logging", value=True),
    Accepted(("--no-perf",), "timings are always reported"),
    Accepted(("--perf",), "timings are always reported"),
    Accepted(("-sp", "--special"), "special tokens are rendered as the API asks"),
    Accepted(("-cram", "--cache-ram"), "chimera keeps no host-memory prompt cache; slots reuse their own KV cache", value=True),
    Accepted(("--swa-full",), "chimera uses llama.cpp's default SWA cache"),
    Accepted(("-fit", "--fit"), "use -ngl and -c to size the model", value=True),
    Accepted(("--webui", "--ui"), "the web UI is on unless --no-webui"),
    Accepted(("-bs", "--backend-sampling", "--backend_sampling"), "sampling runs on the CPU after each decode"),
    Accepted(("--mmproj-auto",), "with -hf the repository's projector is used unless --no-mmproj"),
    Accepted(("--no-jinja",), "chat templates are always Jinja (rendered in a sandbox)"),
)


# llama-server's environment variable for an option, where it has one (CHIMERA_* wins over it)
LLAMA_ENV: dict[str, str] = {
    "model": "LLAMA_ARG_MODEL", "alias": "LLAMA_ARG_ALIAS", "host": "LLAMA_ARG_HOST", "port": "LLAMA_ARG_PORT",
    "ctx_size": "LLAMA_ARG_CTX_SIZE", "parallel": "LLAMA_ARG_N_PARALLEL", "kv_unified": "LLAMA_ARG_KV_UNIFIED",
    "kv_unified_per_slot": "LLAMA_ARG_KV_UNIFIED_PER_SLOT", "context_shift": "LLAMA_ARG_CONTEXT_SHIFT",
    "cache_reuse": "LLAMA_ARG_CACHE_REUSE", "n_keep": "LLAMA_ARG_KEEP", "batch_size": "LLAMA_ARG_BATCH",
    "ubatch_size": "LLAMA_ARG_UBATCH", "threads": "LLAMA_ARG_THREADS", "threads_batch": "LLAMA_ARG_THREADS_BATCH",
    "n_gpu_layers": "LLAMA_ARG_N_GPU_LAYERS", "flash_attn": "LLAMA_ARG_FLASH_ATTN", "api_key": "LLAMA_API_KEY",
    "api_key_file": "LLAMA_ARG_API_KEY_FILE", "embeddings": "LLAMA_ARG_EMBEDDINGS", "pooling": "LLAMA_ARG_POOLING",
    "reranking": "LLAMA_ARG_RERANKING", "mmproj": "LLAMA_ARG_MMPROJ", "chat_template": "LLAMA_ARG_CHAT_TEMPLATE",
    "chat_template_file": "LLAMA_ARG_CHAT_TEMPLATE_FILE", "reasoning_format": "LLAMA_ARG_THINK",
    "reasoning_budget": "LLAMA_ARG_THINK_BUDGET", "reasoning": "LLAMA_ARG_REASONING",
    "models_dir": "LLAMA_ARG_MODELS_DIR", "models_preset": "LLAMA_ARG_MODELS_PRESET",
    "models_max": "LLAMA_ARG_MODELS_MAX", "cache_type_k": "LLAMA_ARG_CACHE_TYPE_K",
    "cache_type_v": "LLAMA_ARG_CACHE_TYPE_V", "numa": "LLAMA_ARG_NUMA", "split_mode": "LLAMA_ARG_SPLIT_MODE",
    "tensor_split": "LLAMA_ARG_TENSOR_SPLIT", "main_gpu": "LLAMA_ARG_MAIN_GPU", "device": "LLAMA_ARG_DEVICE",
    "rope_scaling": "LLAMA_ARG_ROPE_SCALING_TYPE", "rope_scale": "LLAMA_ARG_ROPE_SCALE",
    "rope_freq_base": "LLAMA_ARG_ROPE_FREQ_BASE", "rope_freq_scale": "LLAMA_ARG_ROPE_FREQ_SCALE",
    "yarn_orig_ctx": "LLAMA_ARG_YARN_ORIG_CTX", "yarn_ext_factor": "LLAMA_ARG_YARN_EXT_FACTOR",
    "yarn_attn_factor": "LLAMA_ARG_YARN_ATTN_FACTOR", "yarn_beta_slow": "LLAMA_ARG_YARN_BETA_SLOW",
    "yarn_beta_fast": "LLAMA_ARG_YARN_BETA_FAST", "n_predict": "LLAMA_ARG_N_PREDICT", "timeout": "LLAMA_ARG_TIMEOUT",
    "threads_http": "LLAMA_ARG_THREADS_HTTP", "cont_batching": "LLAMA_ARG_CONT_BATCHING",
    "ssl_key_file": "LLAMA_ARG_SSL_KEY_FILE", "ssl_cert_file": "LLAMA_ARG_SSL_CERT_FILE",
    "no_mmap": "LLAMA_ARG_NO_MMAP", "mlock": "LLAMA_ARG_MLOCK", "props": "LLAMA_ARG_ENDPOINT_PROPS",
    "load_mode": "LLAMA_ARG_LOAD_MODE", "slot_save_path": "LLAMA_ARG_SLOT_SAVE_PATH",
    "sleep_idle_seconds": "LLAMA_ARG_SLEEP_IDLE_SECONDS", "webui_path": "LLAMA_ARG_STATIC_PATH",
    "hf_repo": "LLAMA_ARG_HF_REPO", "hf_file": "LLAMA_ARG_HF_FILE", "model_draft": "LLAMA_ARG_SPEC_DRAFT_MODEL",
    "spec_type": "LLAMA_ARG_SPEC_TYPE", "draft_max": "LLAMA_ARG_SPEC_DRAFT_N_MAX",
    "draft_min": "LLAMA_ARG_SPEC_DRAFT_N_MIN", "draft_p_min": "LLAMA_ARG_SPEC_DRAFT_P_MIN",
    "n_gpu_layers_draft": "LLAMA_ARG_N_GPU_LAYERS_DRAFT", "cache_type_k_draft": "LLAMA_ARG_SPEC_DRAFT_CACHE_TYPE_K",
    "cache_type_v_draft": "LLAMA_ARG_SPEC_DRAFT_CACHE_TYPE_V", "hf_token": "HF_TOKEN",
    "model_url": "LLAMA_ARG_MODEL_URL", "offline": "LLAMA_ARG_OFFLINE", "tools": "LLAMA_ARG_TOOLS",
    "tools_runtime": "LLAMA_ARG_TOOLS_RUNTIME", "mcp_servers_config": "LLAMA_ARG_MCP_SERVERS_CONFIG",
    "mcp_servers_json": "LLAMA_ARG_MCP_SERVERS_JSON", "rpc": "LLAMA_ARG_RPC",
}


def parse_override(item: str) -> tuple[str, str, int | float | bool | str]:
    """--override-kv's KEY=TYPE:VALUE → (key, type, value); ValueError says what is wrong."""
    key, eq, rest = item.partition("=")
    kind, colon, raw = rest.partition(":")
    if not eq or not colon or not key:
        raise ValueError(f"{item!r} is not KEY=TYPE:VALUE")
    if len(key.encode()) > 127:
        raise ValueError(f"{key!r}: a key has at most 127 bytes")
    try:
        if kind == "int":
            return key, kind, int(raw)
        if kind == "float":
            return key, kind, float(raw)
    except ValueError:
        raise ValueError(f"{item!r}: {raw!r} is not {'an' if kind == 'int' else 'a'} {kind}") from None
    if kind == "bool":
        if raw not in ("true", "false"):
            raise ValueError(f"{item!r}: a bool is true or false")
        return key, kind, raw == "true"
    if kind == "str":
        if len(raw.encode()) > 127:
            raise ValueError(f"{item!r}: a str value has at most 127 bytes")
        return key, kind, raw
    raise ValueError(f"{item!r}: the type is int, float, bool or str")
