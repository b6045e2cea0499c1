"""`make bench`: speculative decoding, chimera against llama-server with the same flags.

Two setups, each without speculation and with it, at 1 and 4 clients, greedy (temperature 0):
- draft model: SmolLM2-135M-Instruct in F16 as the model (made here from the prepared Q4_1 by
  llama.cpp's own quantizer, which dequantizes with --allow-requantize) and the Q4_1 file as the
  draft (`-md`, llama-server's default --spec-draft-n-max 3); short stories.
- n-grams: the Q4_1 model with `--spec-type ngram-simple`, asked to rewrite a given code file with
  one function renamed, so most of the answer repeats the prompt.
The servers run at once and the measurements alternate between them; medians. With --write FILE
it replaces the table between the bench:speculative markers.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import ctypes
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from run import Proc, build_tool, cpu_name, free_port, publish  # noqa: E402

CODE = '''import json
import os


def load_config(path):
    with open(path) as f:
        return json.load(f)


def save_config(path, config):
    with open(path, "w") as f:
        json.dump(config, f, indent=2)


def merge_config(base, override):
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = value
    return out


def config_path(name):
    home = os.path.expanduser("~")
    return os.path.join(home, ".config", name, "config.json")


def main():
    base = load_config(config_path("app"))
    local = load_config("local.json")
    save_config(config_path("app"), merge_config(base, local))


if __name__ == "__main__":
    main()
'''
STORIES = ["Write a short story about a lighthouse keeper.", "Write a short story about a robot that learns to paint.",
           "Write a short story about two friends lost in a forest.", "Write a short story about a city under the sea."]


def f16_of(q4: Path) -> Path:
    """The model re-encoded as F16 by llama.cpp's quantizer (cached beside the bench's files)."""
    out = q4.parent / "bench" / (q4.name.split(".")[0] + ".F16.gguf")
    if out.exists():
        return out
    import llama_cpp.llama_cpp as ll

    out.parent.mkdir(parents=True, exist_ok=True)
    params = ll.llama_model_quantize_default_params()
    params.ftype = 1  # LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 2
    tmp = out.with_suffix(".part")
    if ll.llama_model_quantize(str(q4).encode(), str(tmp).encode(), ctypes.byref(params)) != 0:
        raise SystemExit(f"could not re-encode {q4} as F16")
    tmp.rename(out)
    return out


def one(base: str, prompt: str, max_tokens: int) -> tuple[int, dict[str, float]]:
    r = httpx.post(base + "/v1/chat/completions", timeout=900, json={
        "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0})
    r.raise_for_status()
    d = r.json()
    return int(d["usage"]["completion_tokens"]), d.get("timings", {})


def load(base: str, prompts: list[str], clients: int, max_tokens: int) -> tuple[float, float]:
    """tok/s of `clients` streams, each sending its prompts in turn; and the acceptance rate."""
    one(base, "Hello", 4)  # warm-up
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as pool:
        out = list(pool.map(lambda k: [one(base, prompts[(k + i) % len(prompts)], max_tokens) for i in range(2)], range(clients)))
    wall = time.perf_counter() - t0
    results = [x for xs in out for x in xs]
    drafted = sum(t.get("draft_n", 0) for _, t in results)
    accepted = sum(t.get("draft_n_accepted", 0) for _, t in results)
    return sum(n for n, _ in results) / wall, (accepted / drafted if drafted else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--write", default=None)
    args = ap.parse_args()
    from chimera.models import prepare

    q4 = prepare("llm")
    f16 = f16_of(q4)
    server_bin = build_tool("cpu", "llama-server")
    common = ["-t", str(args.threads), "-c", "8192", "-np", "4", "--host", "127.0.0.1"]
    setups = {
        "draft": ([("none", ["-m", str(f16)]), ("spec", ["-m", str(f16), "-md", str(q4), "--spec-type", "draft-simple"])],
                  STORIES, 128),
        "ngram": ([("none", ["-m", str(q4)]), ("spec", ["-m", str(q4), "--spec-type", "ngram-simple"])],
                  [f"Rewrite this file with the function merge_config renamed to deep_merge everywhere. Answer with the whole "
                   f"file only.\n\n```python\n{CODE}```"], 420),
    }
    table: dict[tuple[str, str, str, int], list[float]] = {}
    rates: dict[tuple[str, str, str, int], list[float]] = {}
    for setup, (configs, prompts, max_tokens) in setups.items():
        servers: list[tuple[str, str, Proc]] = []
        try:
            for cfg, flags in configs:
                for name in ("llama-server", "chimera"):
                    port = free_port()
                    argv = ([server_bin, *flags, *common, "--port", str(port), "--no-webui"] if name == "llama-server"
                            else [sys.executable, "-m", "chimera", "serve", *flags, *common, "--port", str(port)])
                    servers.append((name, cfg, Proc(f"spec-{setup}-{cfg}-{name}", argv, port)))
            for rep in range(args.reps):
                for clients in (1, 4):
                    for name, cfg, p in (servers if rep % 2 == 0 else servers[::-1]):
                        tps, rate = load(p.base, prompts, clients, max_tokens)
                        table.setdefault((setup, cfg, name, clients), []).append(tps)
                        rates.setdefault((setup, cfg, name, clients), []).append(rate)
                        print(f"  {setup} {cfg:4s} {name:12s} c={clients}: {tps:.1f} tok/s, accepted {rate:.0%}", flush=True)
        finally:
            for _, _, p in servers:
                p.stop()

    med = {k: statistics.median(v) for k, v in table.items()}
    acc = {k: statistics.median(v) for k, v in rates.items()}
    cpu = cpu_name()
    lines = [
        f"Machine: {cpu}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}. Both servers with `-c 8192 -np 4 "
        f"-t {args.threads}`, running at once, measurements alternating; greedy; medians of {args.reps} runs, each client "
        "sending 2 requests. Draft: `-m SmolLM2-135M-Instruct.F16.gguf -md SmolLM2-135M-Instruct.Q4_1.gguf "
        "--spec-type draft-simple` (draft n-max 3), "
        "128-token stories. N-gram: `-m SmolLM2-135M-Instruct.Q4_1.gguf --spec-type ngram-simple`, a 40-line Python file "
        "rewritten with one function renamed (up to 420 tokens).",
        "",
        "| setup | clients | llama-server: no spec → spec tok/s (speed-up, accepted) | chimera: no spec → spec tok/s (speed-up, accepted) "
        "| chimera / llama-server with spec |",
        "|---|---|---|---|---|",
    ]
    for setup in setups:
        for c in (1, 4):
            cells = []
            for name in ("llama-server", "chimera"):
                a, b = med[(setup, "none", name, c)], med[(setup, "spec", name, c)]
                cells.append(f"{a:.1f} → {b:.1f} ({b / a:.2f}×, {acc[(setup, 'spec', name, c)]:.0%})")
            ratio = med[(setup, "spec", "chimera", c)] / med[(setup, "spec", "llama-server", c)]
            lines.append(f"| {setup} | {c} | {cells[0]} | {cells[1]} | {ratio:.2f} |")
    md = "\n".join(lines)
    publish(md, args.write, "bench:speculative", "Speculative decoding")


if __name__ == "__main__":
    main()
