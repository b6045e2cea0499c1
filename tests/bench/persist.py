"""Chat throughput with --persist-chats against without, 8 streaming clients, interleaved."""

from __future__ import annotations

import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from load import run_load  # noqa: E402
from run import Proc, free_port  # noqa: E402


def main() -> None:
    from chimera.models import prepare

    model = str(prepare("llm"))
    db = Path(tempfile.mkdtemp()) / "bench-chats.db"
    common = ["-m", model, "-np", "8", "-c", "8192"]
    servers = []
    for name, extra in (("plain", []), ("persist", ["--persist-chats", "--chat-db", str(db)])):
        port = free_port()
        servers.append(Proc(name, [sys.executable, "-m", "chimera", "serve", *common, *extra, "--port", str(port)], port))
    results: dict[str, list[float]] = {"plain": [], "persist": []}
    index = 0
    try:
        for rep in range(int(sys.argv[1]) if len(sys.argv) > 1 else 4):
            for p in (servers if rep % 2 == 0 else servers[::-1]):
                res = trio.run(partial(run_load, p.base, 8, 24, 64, first_index=index))
                index += 24
                results[p.name].append(res["tok_s"])
                print(f"  rep {rep} {p.name:8s}: {res['tok_s']:.1f} tok/s", flush=True)
    finally:
        for p in servers:
            p.stop()
    plain, persist = statistics.median(results["plain"]), statistics.median(results["persist"])
    print(f"\n8 clients, median of {len(results['plain'])}: without {plain:.1f} tok/s, with --persist-chats "
          f"{persist:.1f} tok/s, ratio {persist / plain:.3f}")


if __name__ == "__main__":
    main()
