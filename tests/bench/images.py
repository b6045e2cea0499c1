"""Image generation: chimera over HTTP against a direct stable-diffusion-cpp-python call, in one run.

The anchor is a separate process that loads the same model with the same threads and calls
`StableDiffusion.generate_image` directly; chimera is a server with one image worker. Every
repetition times the same request (model, size, steps, threads, seed) on each, alternating the
order, so drift on a shared machine hits both alike; medians are reported. Then throughput with
1 vs 2 workers: 4 concurrent clients (by default 1 worker x 2 threads against 2 workers x 1 thread,
the same cores).

    python tests/bench/images.py [--sd-dir DIR] [--size 128] [--steps 8] [--threads 2] [--threads-two 1] [--reps 9]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from run import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

ANCHOR = r"""
import json, os, sys, time, ctypes
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # the binding prints to stdout; keep the answers apart, as chimera's worker does
sys.stdout = sys.stderr
from stable_diffusion_cpp import StableDiffusion, stable_diffusion_cpp as lib
@lib.sd_log_callback
def quiet(level, text, data):
    pass
lib.sd_set_log_callback(quiet, ctypes.c_void_p(0))
cfg = json.loads(sys.argv[1])
sd = StableDiffusion(model_path=cfg["model"], taesd_path=cfg["taesd"], n_threads=cfg["threads"], verbose=True)
print("ready", file=out, flush=True)
for line in sys.stdin:
    t0 = time.perf_counter()
    sd.generate_image(prompt="a cat", width=cfg["size"], height=cfg["size"], sample_steps=cfg["steps"],
                      cfg_scale=1.0, seed=1, progress_callback=lambda *a: None)
    print(time.perf_counter() - t0, file=out, flush=True)
"""


class Anchor:
    def __init__(self, cfg: dict[str, object]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", ANCHOR, json.dumps(cfg)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def once(self) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        t0 = time.perf_counter()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()
        return time.perf_counter() - t0  # the call plus a pipe round trip, as the server is timed

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Chimera:
    def __init__(self, sd: Path, threads: int, workers: int) -> None:
        self.overheads: list[float] = []
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(f"/tmp/bench-images-{workers}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chimera", "serve", "--port", str(self.port), "-t", "1",
             "--sd-model", str(sd / "tiny-flux2-klein.ckpt"), "--sd-taesd", str(sd / "tiny-taef2.ckpt"),
             "--sd-threads", str(threads), "--sd-workers", str(workers)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("chimera did not become ready; see " + self.log.name)

    def once(self, size: int, steps: int, record: bool = True) -> float:
        t0 = time.perf_counter()
        r = httpx.post(self.base + "/v1/images/generations", timeout=600, json={
            "prompt": "a cat", "size": f"{size}x{size}", "steps": steps, "cfg_scale": 1.0, "seed": 1})
        r.raise_for_status()
        took = time.perf_counter() - t0
        engine = float(r.headers["Server-Timing"].split("dur=")[1]) / 1000
        if record:  # HTTP, JSON, pipes, PNG + base64: all but the engine call (no queueing)
            self.overheads.append(took - engine)
        return took

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def throughput(c: Chimera, clients: int, per_client: int, size: int, steps: int) -> float:
    def client() -> None:
        for _ in range(per_client):
            c.once(size, steps, record=False)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * per_client / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sd-dir", type=Path, default=None, help="default: the tiny set tests/models generates")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--threads-two", type=int, default=1, help="threads per worker of the 2-worker server")
    a = ap.parse_args()
    sd = a.sd_dir
    if sd is None:
        sys.path.insert(0, str(REPO / "tests"))
        from models import tiny_sd_set

        sd = tiny_sd_set()
    cfg = {"model": str(sd / "tiny-flux2-klein.ckpt"), "taesd": str(sd / "tiny-taef2.ckpt"), "threads": a.threads,
           "size": a.size, "steps": a.steps}
    anchor, one, two = Anchor(cfg), Chimera(sd, a.threads, 1), Chimera(sd, a.threads_two, 2)
    direct: list[float] = []
    http: list[float] = []
    ratios: list[float] = []
    tp: dict[int, list[float]] = {1: [], 2: []}
    try:
        anchor.once(), one.once(a.size, a.steps), two.once(a.size, a.steps)  # warm all
        for rep in range(a.reps):
            pair = [("direct", anchor.once), ("http", lambda: one.once(a.size, a.steps))]
            for name, fn in pair if rep % 2 == 0 else pair[::-1]:
                (direct if name == "direct" else http).append(fn())
            ratios.append(direct[-1] / http[-1])
            pools = [(1, one), (2, two)]
            for n, server in pools if rep % 2 == 0 else pools[::-1]:
                tp[n].append(throughput(server, 4, 1, a.size, a.steps))
            print(f"  rep {rep}: direct {direct[-1]:.3f} s, chimera HTTP {http[-1]:.3f} s (ratio {ratios[-1]:.3f}); "
                  f"4 clients: 1 worker {tp[1][-1]:.2f} img/s, 2 workers {tp[2][-1]:.2f} img/s", flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not leave servers behind
        for p in (anchor.proc, one.proc, two.proc):
            p.terminate()
        for p in (anchor.proc, one.proc, two.proc):
            p.wait(60)
    med = statistics.median
    print(f"\nMachine: {platform.machine()}, {psutil.cpu_count(logical=True)} cores; model tiny-flux2-klein (synthetic), "
          f"{a.size}x{a.size}, {a.steps} steps, {a.threads} threads per worker, {a.reps} interleaved reps")
    print(f"time per image (median): direct {med(direct):.3f} s, chimera HTTP {med(http):.3f} s; "
          f"median of the per-rep ratios (direct/HTTP) {med(ratios):.3f}; ratio of medians {med(direct) / med(http):.3f}")
    print(f"fastest of the reps: direct {min(direct):.3f} s, chimera HTTP {min(http):.3f} s, ratio {min(direct) / min(http):.3f}")
    print(f"chimera's time outside the engine call, per request: median {1000 * med(one.overheads):.1f} ms")
    print(f"throughput, 4 concurrent clients (median): 1 worker x {a.threads} threads {med(tp[1]):.2f} img/s, "
          f"2 workers x {a.threads_two} threads {med(tp[2]):.2f} img/s ({med(tp[2]) / med(tp[1]):.2f}x)")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the servers
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    main()
