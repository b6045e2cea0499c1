"""`make bench`, a shared CPU: chimera against llama-server (the same model, flags and client as
the first table) while another CPU-bound process runs, as on a desktop that is never quiet.

The bench starts and stops the competing process itself: one Python process spinning one thread
at normal priority (a browser tab, a build, an indexer). Each repetition measures both servers
quiet and then both with the competitor running, in alternating order, so the two conditions
see the same drift; medians are reported. With --write FILE the section between the
`bench:shared-cpu` markers in that file is replaced.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from load import run_load  # noqa: E402
from run import add_server_args, cpu_name, publish, server_argvs, start_server  # noqa: E402

SPIN = "import time\nwhile True:\n    pass\n"


class Competitor:
    """A CPU-bound process for the length of a `with` block."""

    def __enter__(self) -> Competitor:
        self.proc = subprocess.Popen([sys.executable, "-c", SPIN])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    add_server_args(ap)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--requests", type=int, default=16, help="requests per measurement (at least 2 per client)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--write", default=None)
    args = ap.parse_args()
    argvs = server_argvs(args)
    names = ("llama-server", "chimera")
    servers = [start_server(name, argvs[name]) for name in names]
    table: dict[tuple[str, str, int], list[float]] = {}
    index = 0
    try:
        for rep in range(args.reps):
            order = servers if rep % 2 == 0 else servers[::-1]
            for shared in (False, True):
                condition = "shared" if shared else "quiet"
                for c in args.concurrency:
                    for p in order:
                        n = max(args.requests, 2 * c)
                        if shared:
                            with Competitor():
                                r = trio.run(run_load, p.base, c, n, args.max_tokens, "m", 0.2, index)
                        else:
                            r = trio.run(run_load, p.base, c, n, args.max_tokens, "m", 0.2, index)
                        index += n + 1
                        table.setdefault((p.name, condition, c), []).append(r["tok_s"])
                        print(f"  {p.name:12s} {condition:6s} c={c}: {r['tok_s']:.1f} tok/s", flush=True)
    finally:
        for p in servers:
            p.stop()

    med = {k: statistics.median(v) for k, v in table.items()}
    lines = [
        f"Machine: {cpu_name()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}. {Path(args.model).name}, both servers "
        f"with `-np {args.parallel} -c {args.ctx} -t {args.threads}`, {args.max_tokens}-token answers; shared: one other "
        f"process spinning one thread at normal priority, started and stopped by the bench; medians of {args.reps} "
        "interleaved repetitions.",
        "",
        "| clients | quiet: llama-server / chimera tok/s | chimera / llama-server | shared: llama-server / chimera tok/s "
        "| chimera / llama-server | chimera shared / quiet |",
        "|---|---|---|---|---|---|",
    ]
    for c in args.concurrency:
        q = [med[(n, "quiet", c)] for n in names]
        s = [med[(n, "shared", c)] for n in names]
        lines.append(f"| {c} | {q[0]:.1f} / {q[1]:.1f} | {q[1] / q[0]:.2f} | {s[0]:.1f} / {s[1]:.1f} | {s[1] / s[0]:.2f} | "
                     f"{s[1] / q[1]:.2f} |")
    publish("\n".join(lines), args.write, "bench:shared-cpu", "A shared CPU")


if __name__ == "__main__":
    main()
