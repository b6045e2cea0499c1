"""`make bench`: both servers with their default flags (only -m and -t given).

llama-server's defaults are `-c 0` (the training context) and `-np` auto: 4 slots on one unified
KV cache; chimera's are the same. This prints tok/s at 1 and 4 streaming clients (interleaved,
medians), the longest conversation each accepts (the context one sequence may fill, and a
conversation just under it answered), and for reference chimera with its former defaults
(`-c 4096 -np 4`: 1,024 tokens a slot). With --write FILE it replaces the table between the
bench:defaults markers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).parent))
from load import run_load  # noqa: E402
from run import Proc, build_tool, cpu_name, free_port, prompt_of_tokens, publish  # noqa: E402

LS, CH, OLD = "llama-server", "chimera", "chimera -c 4096 -np 4"


def slot_context(p: Proc) -> int:
    props = httpx.get(p.base + "/props", timeout=30).json()
    if "n_ctx_slot" in props:
        return int(props["n_ctx_slot"])
    return int(props["default_generation_settings"]["n_ctx"])


def conversation(p: Proc, tokens: int, ref: Proc) -> tuple[int, float, str]:
    """A conversation of about `tokens` prompt tokens (the filler cut by ref's tokenizer): its
    prompt tokens, seconds, and the outcome."""
    filler = prompt_of_tokens(ref.base, tokens - 60)
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Read these notes: " + filler},
                {"role": "assistant", "content": "I have read them."},
                {"role": "user", "content": "Which word came first? One word."}]
    t0 = time.perf_counter()
    r = httpx.post(p.base + "/v1/chat/completions", timeout=1800,
                   json={"messages": messages, "max_tokens": 8, "temperature": 0, "cache_prompt": False})
    dt = time.perf_counter() - t0
    if r.status_code != 200:
        return 0, dt, f"refused ({r.status_code})"
    return int(r.json()["usage"]["prompt_tokens"]), dt, "answered"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="default: the prepared SmolLM2 (8k training context)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--write", default=None)
    args = ap.parse_args()
    if args.model is None:
        from chimera.models import prepare

        args.model = str(prepare("llm"))
    base = ["-m", args.model, "-t", str(args.threads), "--host", "127.0.0.1"]
    server_bin = build_tool("cpu", "llama-server")
    argvs = {
        LS: lambda port: [server_bin, *base, "--port", str(port), "--no-webui"],
        CH: lambda port: [sys.executable, "-m", "chimera", "serve", *base, "--port", str(port)],
        OLD: lambda port: [sys.executable, "-m", "chimera", "serve", *base, "-c", "4096", "-np", "4", "--port", str(port)],
    }
    servers = []
    for name, make in argvs.items():
        port = free_port()
        servers.append(Proc({LS: "llama-server", CH: "chimera", OLD: "chimera-old"}[name], make(port), port))
        servers[-1].name = name
    try:
        runs: dict[str, dict[int, list[float]]] = {p.name: {1: [], 4: []} for p in servers}
        idx = 0
        for rep in range(args.reps):
            for c in (1, 4):
                for p in servers if rep % 2 == 0 else servers[::-1]:
                    n = 4 * c
                    res = trio.run(partial(run_load, p.base, c, n, args.max_tokens, first_index=idx))
                    idx += n
                    runs[p.name][c].append(res["tok_s"])
                    print(f"  rep {rep} {p.name:22s} c={c}: {res['tok_s']:.1f} tok/s", flush=True)
        ctx = {p.name: slot_context(p) for p in servers}
        convo: dict[str, tuple[int, float, str]] = {}
        for p in servers[:2]:  # a conversation just under the slot's context (the same text for both)
            convo[p.name] = conversation(p, min(ctx[LS], ctx[CH]) - 200, servers[0])
            print(f"  {p.name}: {convo[p.name]}", flush=True)
        convo[OLD] = conversation(servers[2], 6000, servers[0])
    finally:
        for p in servers:
            p.stop()

    med = {n: {c: statistics.median(v) for c, v in d.items()} for n, d in runs.items()}
    cpu = cpu_name()
    lines = [
        f"Machine: {cpu}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}. Model: {Path(args.model).name} "
        f"(8,192-token training context); each server with only `-m` and `-t {args.threads}`, all three running at "
        f"once, measurements interleaved; medians of {args.reps} runs of {args.max_tokens}-token streams.",
        "",
        "| server | tok/s, 1 client | tok/s, 4 clients | context of one conversation | a long conversation |",
        "|---|---|---|---|---|",
    ]
    for n in (LS, CH, OLD):
        toks, secs, outcome = convo[n]
        what = f"{toks} prompt tokens {outcome} in {secs:.0f} s" if toks else f"6,000 tokens {outcome}"
        lines.append(f"| {n} | {med[n][1]:.1f} | {med[n][4]:.1f} | {ctx[n]} | {what} |")
    lines += ["", f"chimera / llama-server: {med[CH][1] / med[LS][1]:.2f} at 1 client, {med[CH][4] / med[LS][4]:.2f} at 4; "
              f"chimera's defaults / its former ones: {med[CH][1] / med[OLD][1]:.2f} at 1 client, "
              f"{med[CH][4] / med[OLD][4]:.2f} at 4."]
    md = "\n".join(lines)
    publish(md, args.write, "bench:defaults", "Default flags")


if __name__ == "__main__":
    main()
