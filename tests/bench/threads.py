"""CPU time per generated token, thread by thread, for chimera and llama-server under the same load.

Throughput on a shared 2-core machine drifts 10-25% from minute to minute; CPU time per token does
not. Every CPU millisecond a server spends outside its decode threads comes out of the decode on
such a machine, so this is where a throughput gap between the two servers shows up first.

    python tests/bench/threads.py [--concurrency 1 4] [--requests 24]
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from load import run_load  # noqa: E402
from run import add_server_args, server_argvs, start_server  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def thread_times(pid: int) -> dict[int, tuple[str, float]]:
    """tid → (name, user+system CPU seconds)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except FileNotFoundError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def profile(pid: int, base: str, c: int, requests: int, max_tokens: int, first_index: int) -> tuple[dict, list]:
    before = thread_times(pid)
    res = trio.run(partial(run_load, base, c, requests, max_tokens, first_index=first_index))
    after = thread_times(pid)
    per_thread = []
    for tid, (name, t) in after.items():
        dt = t - before.get(tid, (name, 0.0))[1]
        per_thread.append((tid, "main" if tid == pid else name, dt))
    per_thread.sort(key=lambda x: -x[2])
    return res, per_thread


def main() -> None:
    ap = argparse.ArgumentParser()
    add_server_args(ap)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--only", choices=["chimera", "llama-server"], default=None)
    args = ap.parse_args()
    argvs = server_argvs(args, (args.only,) if args.only else ("chimera", "llama-server"))
    index = 0
    for name, argv in argvs.items():
        p = start_server(name, argv)
        try:
            for c in args.concurrency:
                res, threads = profile(p.proc.pid, p.base, c, args.requests, args.max_tokens, index)
                index += args.requests + 1
                tokens = res["tokens"]
                total = sum(t for _, _, t in threads)
                print(f"{name} c={c}: {res['tok_s']:.1f} tok/s; CPU {1000 * total / tokens:.3f} ms per token")
                for tid, tname, t in threads:
                    if t > 0:
                        print(f"    {tname:16s} {tid:7d} {1000 * t / tokens:7.3f} ms/token")
        finally:
            p.stop()


if __name__ == "__main__":
    main()
