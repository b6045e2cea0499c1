"""Writes docs/serve.md's table of llama-server's flags and what chimera does with each.

    .venv/bin/python tests/compat/flags_table.py [--help-text FILE]

reads `llama-server --help` (the anchor that native/build-llama-server.sh builds from the same
vendored llama.cpp, or a saved copy), and sorts every flag into: the same (chimera's parser has
it), accepted without effect (with the note chimera prints), or refused (exit 2, with the reason).
tests/unit/test_llama_server_flags.py checks the table against the parser.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "app"))

from chimera.cli import build_parser  # noqa: E402
from chimera.llama_flags import ACCEPTED  # noqa: E402

# why a llama-server flag is refused: the first pattern that matches the flag's names
REFUSED: list[tuple[str, str]] = [
    (r"^--(help|usage|version|completion-bash)$|^-h$", "chimera has its own `--help` and `--version`"),
    (r"cpu-mask|cpu-range|cpu-strict|^--prio|^--poll|^-C", "thread affinity, priority and polling: llama.cpp's defaults are used"),
    (r"^-hfd|hf-repo-draft|spec-draft-hf", "a draft model from the hub: `chimera pull` it, then `-md PATH`"),
    (r"spec-ngram-mod|spec-ngram-map|spec-synth|p-split|backend-sampling|draft-cpu|draft-prio|draft-poll|-Cd$|-Crd$|-Cbd$|"
     r"override-tensor-draft|^-otd|cpu-moe-draft|n-cpu-moe-draft|^-cmoed|^-ncmoed|spec-draft-.*(moe|override)|^--spec-ngram-size|"
     r"^--spec-ngram-min-hits",
     "speculative decoding here is draft-simple and ngram-simple; this option belongs to another kind or to thread placement"),
    (r"hf-repo-v|hf-file-v|^-hfv|^-hffv", "text-to-speech vocoders are not supported"),
    (r"docker|^-dr$|^-cl$|--cache-list", "Docker Hub models are not supported; `chimera pull` downloads from Hugging Face and lists what it fetched"),
    (r"override-tensor|^-ot|cpu-moe|n-cpu-moe|n-cpu-ffn|^-ncmoe|^-ncffn|^-cmoe", "tensor placement overrides are not built yet"),
    (r"checkpoint|ctx-checkpoints|cache-idle",
     "context checkpoints are not built: a slot reuses its cached prefix, and --cache-reuse moves matching chunks"),
    (r"control-vector", "control vectors are not supported"),
    (r"mirostat|dynatemp|adaptive|^--samplers|sampler-seq|sampling-seq|^-l$|logit-bias|backend-sampling|^-bs$",
     "this sampler setting is not supported (per request: `logit_bias`, and the samplers of the generation table)"),
    (r"kv-offload|^-nkvo|^-kvo|repack|^-nr$|no-host|op-offload|check-tensors|load-mode|lazy-mode|^-lm$|^-lzm$|defrag|^-dt$",
     "a llama.cpp loading or memory detail chimera leaves at its default"),
    (r"^-fitt|fit-target|^-fitc|fit-ctx", "use -ngl and -c to size the model"),
    (r"^--attention|^--embd|^--cls", "embedding options chimera does not have (`--embeddings`, `--pooling`, `--reranking`)"),
    (r"^--api-prefix|reuse-port|^--cors|^--no-host|^--metrics-|^--endpoint|^--webui-config|^--webui$|^--agent",
     "an HTTP option chimera does not have (see Security and Web UI)"),
    (r"^--chat-template-kwargs|^--prefill|^--reasoning$|^--reasoning-effort|^--reasoning-preserve|^--skip-chat|^--no-prefill|^-rea",
     "set per request (`chat_template_kwargs`, `reasoning_effort`) instead"),
    (r"image-min|image-max|mmproj-auto|mmproj-url|mmproj-offload|mtmd|^--no-mmproj", "projector options: `--mmproj PATH` only"),
    (r"^--escape|^-e$|^--no-escape|^-sp|^--special|^--verbose-prompt|^--show-timings|^--no-show-timings|^--jinja|^--no-jinja",
     "a formatting option chimera does not have"),
    (r"^--slot-prompt-similarity|^-sps|^--n-keep|^-nkeep|^--sleep|^--models-autoload|^--no-models-autoload",
     "not built yet"),
]


def llama_flags(help_text: str) -> list[list[str]]:
    """Each flag line's names (`--help` puts the names in the first 40 columns)."""
    out = []
    for line in help_text.splitlines():
        if not line.startswith("-") or line.startswith("-----"):
            continue
        head = line[:40] if len(line) > 40 and line[39] == " " else line
        names = re.findall(r"(?:^|[\s,])(--?[A-Za-z][A-Za-z0-9-]*)", head)
        if names:
            out.append(names)
    return out


def chimera_flags() -> set[str]:
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    return {s for a in serve._actions for s in a.option_strings}


def refusal(names: list[str]) -> str:
    for pattern, reason in REFUSED:
        if any(re.search(pattern, n) for n in names):
            return reason
    return "not built yet"


def classify(names: list[str], ours: set[str]) -> tuple[str, str]:
    accepted = {f: a.note for a in ACCEPTED for f in a.flags}
    missing = [n for n in names if n not in ours]
    if len(missing) == len(names):
        return "refused", refusal(names)
    also = f"; {', '.join(f'`{n}`' for n in missing)}: refused, {refusal(missing)}" if missing else ""
    if any(n in accepted for n in names):
        return "accepted without effect", next(accepted[n] for n in names if n in accepted) + also
    return "same", also.lstrip("; ")


def table(help_text: str) -> str:
    ours = chimera_flags()
    rows = ["| llama-server flag | chimera | note |", "|---|---|---|"]
    counts: dict[str, int] = {}
    for names in llama_flags(help_text):
        kind, note = classify(names, ours)
        counts[kind] = counts.get(kind, 0) + 1
        rows.append(f"| {', '.join('`' + n + '`' for n in names)} | {kind} | {note} |")
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    return f"Of llama-server's {sum(counts.values())} flags: {summary}.\n\n" + "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--help-text", help="a saved `llama-server --help` (default: run the anchor)")
    ap.add_argument("--write", default=str(REPO / "docs" / "serve.md"))
    args = ap.parse_args()
    if args.help_text:
        text = Path(args.help_text).read_text()
    else:
        exe = subprocess.run([str(REPO / "native/build-llama-server.sh"), "cpu", "llama-server"], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        text = subprocess.run([exe, "--help"], capture_output=True, text=True, env={"LD_LIBRARY_PATH": str(Path(exe).parent)}).stdout
    (REPO / "tests" / "compat" / "llama-server-help.txt").write_text(text)
    md = table(text)
    path = Path(args.write)
    doc = path.read_text()
    tag = "llama-server-flags"
    if f"<!-- {tag}:start -->" not in doc:
        doc += f"\n<!-- {tag}:start -->\n<!-- {tag}:end -->\n"
    path.write_text(re.sub(rf"(<!-- {tag}:start -->\n).*?(<!-- {tag}:end -->)", lambda m: m.group(1) + md + "\n" + m.group(2), doc, flags=re.S))
    print(md.splitlines()[0])


if __name__ == "__main__":
    main()
