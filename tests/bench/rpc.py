"""`make bench`, RPC: one model split over two local RPC helpers.

chimera (`chimera serve --rpc` and two `chimera rpc-server`) against llama.cpp (`llama-server
--rpc` and two of its own `rpc-server`, built from the same vendored llama.cpp with the same
flags), 1 and 4 clients; both also without the split (the same servers, no --rpc), so the cost of
the network hop shows even on loopback. Every server and helper runs at once; measurements
alternate between them; medians. With --write FILE the section between the `bench:rpc` markers
in that file is replaced.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from load import run_load  # noqa: E402
from run import Proc, build_tool, cpu_name, free_port, publish  # noqa: E402


def listening(port: int) -> Callable[[], bool]:
    """An RPC helper is up once its port accepts connections (it has no HTTP)."""
    def check() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    return check


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--helper-threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--write", default=None)
    args = ap.parse_args()
    from chimera.models import prepare

    model = str(prepare("llm"))
    server_bin = build_tool("cpu", "llama-server")
    rpc_bin = build_tool("cpu", "ggml-rpc-server")
    common = ["-m", model, "-c", "4096", "-np", "4", "-t", str(args.threads), "--host", "127.0.0.1"]
    helpers: list[Proc] = []
    servers: list[tuple[str, str, Proc]] = []
    table: dict[tuple[str, str, int], list[float]] = {}
    try:
        endpoints: dict[str, list[str]] = {"llama.cpp": [], "chimera": []}
        for side in endpoints:
            for k in range(2):
                port = free_port()
                argv = ([rpc_bin, "-p", str(port), "-t", str(args.helper_threads)] if side == "llama.cpp" else
                        [sys.executable, "-m", "chimera", "rpc-server", "-p", str(port), "-t", str(args.helper_threads)])
                helpers.append(Proc(f"rpc-{side}-{k}", argv, port, ready=listening(port)))
                endpoints[side].append(f"127.0.0.1:{port}")
        for setup in ("local", "split"):
            for side in ("llama.cpp", "chimera"):
                extra = ["--rpc", ",".join(endpoints[side]), "-ngl", "99"] if setup == "split" else []
                port = free_port()
                argv = ([server_bin, *common, *extra, "--port", str(port), "--no-webui"] if side == "llama.cpp" else
                        [sys.executable, "-m", "chimera", "serve", *common, *extra, "--port", str(port)])
                servers.append((side, setup, Proc(f"rpc-{setup}-{side}", argv, port)))
        index = 0
        for rep in range(args.reps):
            for clients in (1, 4):
                for side, setup, p in (servers if rep % 2 == 0 else servers[::-1]):
                    r = trio.run(run_load, p.base, clients, args.requests, args.max_tokens, "m", 0.2, index)
                    index += args.requests + 1
                    table.setdefault((side, setup, clients), []).append(r["tok_s"])
                    print(f"  {side:9s} {setup:5s} c={clients}: {r['tok_s']:.1f} tok/s", flush=True)
    finally:
        for _, _, p in servers:
            p.stop()
        for h in helpers:
            h.stop()

    med = {k: statistics.median(v) for k, v in table.items()}
    lines = [
        f"Machine: {cpu_name()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}. SmolLM2-135M-Instruct Q4_1, "
        f"`-c 4096 -np 4 -t {args.threads}`; split: `--rpc A,B -ngl 99` over two helpers on this machine (loopback), "
        f"`-t {args.helper_threads}` each; {args.max_tokens}-token answers, {args.requests} requests a measurement; "
        f"medians of {args.reps}. llama.cpp: llama-server and its `rpc-server`, built from the same vendored llama.cpp "
        "with the same flags.",
        "",
        "| clients | llama.cpp: local → split tok/s (split / local) | chimera: local → split tok/s (split / local) | "
        "chimera / llama.cpp, split |",
        "|---|---|---|---|",
    ]
    for c in (1, 4):
        cells = []
        for side in ("llama.cpp", "chimera"):
            a, b = med[(side, "local", c)], med[(side, "split", c)]
            cells.append(f"{a:.1f} → {b:.1f} ({b / a:.2f})")
        lines.append(f"| {c} | {cells[0]} | {cells[1]} | {med[('chimera', 'split', c)] / med[('llama.cpp', 'split', c)]:.2f} |")
    publish("\n".join(lines), args.write, "bench:rpc", "RPC: one model over two helpers")


if __name__ == "__main__":
    main()
