"""llama-server command lines as people write them (from llama.cpp's server README, its issue
tracker and common guides) go through chimera's own parser and come out as the settings they
mean. No prefix matching: `-cb`, `-ctk`, `-md`, `-ts` are never read as `-c b`, `-c tk`, ..."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from chimera.cli import accepted_notes, build_parser, parse_settings, setting_notes
from chimera.config import Settings, resolve
from chimera.errors import ConfigError
from chimera.llm.generation import generation_defaults


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("model.gguf", "mmproj.gguf", "key.pem", "cert.pem", "g.gbnf", "schema.json", "tpl.jinja"):
        (tmp_path / name).write_text('{"type": "object"}' if name == "schema.json" else "root ::= \"a\"")
        out[name] = tmp_path / name
    return out


def parse(line: str, files: dict[str, Path]) -> tuple[Settings, list[str]]:
    for name, path in files.items():
        line = line.replace("$" + name, str(path))
    argv = ["serve", *shlex.split(line)]
    ns = build_parser().parse_args(argv)
    s = parse_settings(ns)
    return s, accepted_notes(argv) + setting_notes(s)


LINES: list[tuple[str, dict[str, Any]]] = [
    ("-m $model.gguf -c 8192 -np 4 --host 0.0.0.0 --port 8080", {"ctx_size": 8192, "parallel": 4, "host": "0.0.0.0"}),
    ("-m $model.gguf -ngl 99 -fa on -ctk q8_0 -ctv q8_0", {"n_gpu_layers": 99, "flash_attn": "on", "cache_type_k": "q8_0", "cache_type_v": "q8_0"}),
    ("-m $model.gguf --no-mmap --mlock -t 8 -tb 16", {"no_mmap": True, "mlock": True, "threads": 8, "threads_batch": 16}),
    ("-m $model.gguf -ngl 99 -ts 3,1 -sm row -mg 1", {"tensor_split": (3.0, 1.0), "split_mode": "row", "main_gpu": 1}),
    ("-m $model.gguf --device none --numa distribute", {"device": ("none",), "numa": "distribute"}),
    ("-m $model.gguf -c 32768 --rope-scaling yarn --rope-scale 4 --yarn-orig-ctx 8192",
     {"rope_scaling": "yarn", "rope_scale": 4.0, "yarn_orig_ctx": 8192}),
    ("-m $model.gguf --rope-freq-base 1000000 --rope-freq-scale 0.5", {"rope_freq_base": 1e6, "rope_freq_scale": 0.5}),
    ("-m $model.gguf -n 256 --temp 0.7 --top-k 20 --top-p 0.8 --min-p 0.0", {"n_predict": 256, "temp": 0.7, "top_k": 20, "top_p": 0.8, "min_p": 0.0}),
    ("-m $model.gguf --repeat-penalty 1.1 --repeat-last-n 128 --presence-penalty 1.5 --frequency-penalty 0.2",
     {"repeat_penalty": 1.1, "repeat_last_n": 128, "presence_penalty": 1.5, "frequency_penalty": 0.2}),
    ("-m $model.gguf --dry-multiplier 0.8 --dry-base 1.75 --dry-allowed-length 2 --dry-penalty-last-n -1 --dry-sequence-breaker none",
     {"dry_multiplier": 0.8, "dry_penalty_last_n": -1, "dry_sequence_breaker": ("none",)}),
    ("-m $model.gguf --xtc-probability 0.5 --xtc-threshold 0.1 --seed 42 --typical 0.9", {"xtc_probability": 0.5, "seed": 42, "typical": 0.9}),
    ("-m $model.gguf --grammar-file $g.gbnf", {"grammar_file": "$g.gbnf"}),
    ("-m $model.gguf --json-schema '{\"type\": \"object\"}'", {"json_schema": '{"type": "object"}'}),
    ("-m $model.gguf --ssl-key-file $key.pem --ssl-cert-file $cert.pem --timeout 600 --threads-http 4",
     {"timeout": 600.0, "threads_http": 4}),
    ("-m $model.gguf -cb --metrics --slots --jinja --no-webui", {"cont_batching": True, "no_webui": True}),
    ("-m $model.gguf --mmproj $mmproj.gguf --no-warmup -np 1 -c 0", {"ctx_size": 0, "parallel": 1}),
    ("-m $model.gguf --chat-template-file $tpl.jinja --reasoning-format deepseek --reasoning-budget 0",
     {"reasoning_format": "deepseek", "reasoning_budget": 0}),
    ("-m $model.gguf --embeddings -ub 8192 -b 8192 --api-key secret", {"embeddings": True, "ubatch_size": 8192, "api_key": ("secret",)}),
    ("-m $model.gguf --alias my-model --props --ignore-eos -s 7", {"alias": "my-model", "props": True, "ignore_eos": True, "seed": 7}),
    ("--models-dir /tmp --models-max 2 --sleep-idle-seconds 300 --no-context-shift --log-disable -lv 3",
     {"models_max": 2, "sleep_idle_seconds": 300.0, "no_context_shift": True}),
    ("-m $model.gguf -c 16384 -np 4 -kvu --context-shift --keep -1 --cache-reuse 256",
     {"parallel": 4, "kv_unified": True, "context_shift": True, "n_keep": -1, "cache_reuse": 256}),
    ("-m $model.gguf -np 2 -no-kvu", {"parallel": 2, "no_kv_unified": True}),
    ("-hf ggml-org/gemma-3-4b-it-GGUF:Q4_K_M --no-mmproj -hft hf_x --offline --port 8081",
     {"hf_repo": "ggml-org/gemma-3-4b-it-GGUF:Q4_K_M", "no_mmproj": True, "hf_token": "hf_x", "offline": True, "model": None}),
    ("-m $model.gguf -md $mmproj.gguf --draft-max 16 --draft-min 2 --draft-p-min 0.6 -ngld 99 -ctkd q8_0",
     {"model_draft": "$mmproj.gguf", "draft_max": 16, "draft_min": 2, "draft_p_min": 0.6, "n_gpu_layers_draft": 99, "cache_type_k_draft": "q8_0"}),
    ("-m $model.gguf --spec-type ngram-simple --spec-ngram-simple-size-n 8 --spec-ngram-simple-size-m 32 -ngld all",
     {"spec_type": ("ngram-simple",), "spec_ngram_simple_size_n": 8, "spec_ngram_simple_size_m": 32, "n_gpu_layers_draft": 999}),
    ("-hfr ggml-org/models -hff tinyllamas/stories260K.gguf", {"hf_repo": "ggml-org/models", "hf_file": "tinyllamas/stories260K.gguf"}),
    ("-m $model.gguf --kv-unified-per-slot 4096", {"kv_unified_per_slot": 4096, "ctx_size": 0, "parallel": -1}),
    ("-m $model.gguf -nocb --cache-ram 0 --swa-full --list-devices", {"no_cont_batching": True, "list_devices": True}),
]


@pytest.mark.parametrize(("line", "expect"), LINES, ids=[line[:48] for line, _ in LINES])
def test_llama_server_command_lines_are_accepted_and_mapped(line: str, expect: dict[str, Any], files: dict[str, Path]) -> None:
    settings, _notes = parse(line, files)
    for key, value in expect.items():
        got = getattr(settings, key)
        if isinstance(value, str) and value.startswith("$"):
            value = files[value[1:]]
        assert got == value, (key, got, value)


def test_flags_without_effect_say_so_in_one_line(files: dict[str, Path]) -> None:
    _, notes = parse("-m $model.gguf --no-warmup --log-file x.log --threads-http 8 -nocb", files)
    assert any(n.startswith("--no-warmup: accepted without effect") for n in notes)
    assert any(n.startswith("--log-file: accepted without effect") for n in notes)
    assert any(n.startswith("--threads-http") for n in notes) and any(n.startswith("--no-cont-batching") for n in notes)
    assert len(notes) == 4


@pytest.mark.parametrize("short", ["-cb", "-ctk q8_0", "-ts 3,1", "-sm row", "-nocb", "-mg 0", "-to 30", "-jf $schema.json", "-ngl 1"])
def test_no_prefix_matching(short: str, files: dict[str, Path]) -> None:
    settings, _ = parse(f"-m $model.gguf {short}", files)
    assert settings.ctx_size == 0 and settings.threads is None and settings.model == files["model.gguf"]


def test_a_prefix_of_a_long_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["serve", "--ctx", "100"])  # argparse used to read it as --ctx-size
    assert e.value.code == 2 and "--ctx" in capsys.readouterr().err


def test_help_lists_no_hidden_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "SUPPRESS" not in out and "_probe" not in out and "_sd-worker" not in out and "serve" in out


def test_llama_server_environment_names() -> None:
    s = resolve({}, {"LLAMA_ARG_CTX_SIZE": "8192", "LLAMA_ARG_N_PARALLEL": "2", "LLAMA_ARG_CACHE_TYPE_K": "q4_0",
                     "LLAMA_ARG_NO_MMAP": "1", "LLAMA_API_KEY": "k1,k2", "CHIMERA_PARALLEL": "3"})
    assert (s.ctx_size, s.parallel, s.cache_type_k, s.no_mmap, s.api_key) == (8192, 3, "q4_0", True, ("k1", "k2"))  # CHIMERA_ wins


@pytest.mark.parametrize(("cli", "message"), [
    ({"cache_type_k": "q3_k"}, "--cache-type-k"),
    ({"ssl_key_file": "/nonexistent.pem"}, "--ssl-key-file"),
    ({"split_mode": "diagonal"}, "--split-mode"),
    ({"json_schema": "{not json"}, "--json-schema"),
    ({"grammar": "root ::= x", "json_schema": "{}"}, "give one default constraint"),
    ({"numa": "everywhere"}, "--numa"),
])
def test_bad_llama_server_values_name_the_flag(cli: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(cli, {})


def test_server_sampling_flags_become_the_defaults_requests_override() -> None:
    from chimera.protocol.params import GenerationFields

    d = generation_defaults(resolve({"temp": "0.3", "top_k": "7", "n_predict": "12", "seed": "5",
                                     "dry_sequence_breaker": ["none"], "ignore_eos": True}, {}))
    assert (d.sampling.temperature, d.sampling.top_k, d.sampling.seed, d.max_tokens) == (0.3, 7, 5, 12)
    assert d.sampling.dry_sequence_breakers == () and d.sampling.ignore_eos
    spec = GenerationFields.model_validate({"temperature": 1.2}).spec(100, defaults=d)
    assert (spec.sampling.temperature, spec.sampling.top_k, spec.max_tokens, spec.sampling.ignore_eos) == (1.2, 7, 12, True)
    spec = GenerationFields.model_validate({"max_tokens": 3, "top_k": 1, "ignore_eos": False}).spec(100, defaults=d)
    assert (spec.max_tokens, spec.sampling.top_k, spec.sampling.ignore_eos) == (3, 1, False)
    g = generation_defaults(resolve({"json_schema": '{"type": "object", "properties": {"a": {"type": "integer"}}}'}, {}))
    assert g.sampling.grammar and "root" in g.sampling.grammar
    spec = GenerationFields.model_validate({"grammar": 'root ::= "x"'}).spec(100, defaults=g)
    assert spec.sampling.grammar == 'root ::= "x"'  # the request's own constraint replaces the default


def test_the_flags_table_in_serve_md_is_current_and_true() -> None:
    """docs/serve.md's table is what tests/compat/flags_table.py makes from llama-server's --help
    today, and the parser agrees with every row: flags marked the same or accepted parse, refused
    ones exit with 2."""
    import re
    import sys

    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo / "tests" / "compat"))
    import flags_table

    help_text = (repo / "tests" / "compat" / "llama-server-help.txt").read_text()
    doc = (repo / "docs" / "serve.md").read_text()
    assert flags_table.table(help_text) in doc, "run tests/compat/flags_table.py to refresh docs/serve.md"
    ours = flags_table.chimera_flags()
    for names in flags_table.llama_flags(help_text):
        kind, _ = flags_table.classify(names, ours)
        for name in names:
            if kind != "refused" and name in ours:
                continue
            if name in ("-h", "--help"):
                continue
            with pytest.raises(SystemExit) as e:
                build_parser().parse_args(["serve", name])
            assert e.value.code == 2 or name in ours, name
    assert re.search(r"Of llama-server's \d+ flags", doc)


@pytest.mark.parametrize("unknown", ["-mdx", "-cl", "-dr", "-hfd", "-nkvo", "-ctxcp", "-tdx"])
def test_an_unknown_short_flag_is_never_read_as_a_known_one_with_a_value(unknown: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:  # argparse would read -md as -m d, -cl as -c l
        build_parser().parse_args(["serve", unknown, "x"])
    assert e.value.code == 2 and unknown in capsys.readouterr().err
