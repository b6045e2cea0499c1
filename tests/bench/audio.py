"""Speech-to-text benchmark: real-time factor through HTTP against a direct pywhispercpp call on
the same audio, model and threads (interleaved repetitions, medians), and throughput with one
worker of 2 threads against two workers of 1 thread, under 2 concurrent clients."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))


def direct_once(model: object, audio: object) -> float:
    t0 = time.perf_counter()
    model.transcribe(audio, language="en", no_context=True, print_progress=False, print_realtime=False)  # type: ignore[attr-defined]
    return time.perf_counter() - t0


def http_once(base: str, data: bytes) -> float:
    t0 = time.perf_counter()
    r = httpx.post(base + "/v1/audio/transcriptions", files={"file": ("jfk.wav", data)}, timeout=300)
    r.raise_for_status()
    return time.perf_counter() - t0


def throughput(base: str, data: bytes, requests: int, clients: int) -> float:
    done = []

    def client(n: int) -> None:
        for _ in range(n):
            http_once(base, data)
            done.append(1)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(requests // clients,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(done) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--requests", type=int, default=12)
    args = ap.parse_args()
    from pywhispercpp.model import Model

    from chimera.audio.decode import decode
    from chimera.models import prepare

    from conftest import Server

    model_path = prepare("whisper")
    wav = model_path.parent / "jfk.wav"
    data = wav.read_bytes()
    audio = decode(data, 3600)
    seconds = len(audio) / 16000
    direct = Model(str(model_path), n_threads=args.threads, print_progress=False, print_realtime=False,
                   redirect_whispercpp_logs_to=None)
    one = Server("--whisper-model", str(model_path), "--whisper-threads", str(args.threads))
    one.wait_ready()
    try:
        http_once(one.base, data)
        direct_once(direct, audio)
        d, h = [], []
        for _ in range(args.reps):  # interleaved, so drift hits both sides alike
            d.append(direct_once(direct, audio))
            h.append(http_once(one.base, data))
        tp_one = throughput(one.base, data, args.requests, 2)
    finally:
        one.stop()
    del direct
    two = Server("--whisper-model", str(model_path), "--whisper-workers", "2", "--whisper-threads", str(max(1, args.threads // 2)))
    two.wait_ready()
    try:
        http_once(two.base, data)
        tp_two = throughput(two.base, data, args.requests, 2)
    finally:
        two.stop()
    dm, hm = statistics.median(d), statistics.median(h)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {model_path.name}, jfk.wav ({seconds:.1f} s), "
          f"{args.threads} threads, {args.reps} interleaved reps")
    print("| path | median s | real-time factor |")
    print("|---|---|---|")
    print(f"| direct pywhispercpp (decoded audio) | {dm:.3f} | {dm / seconds:.4f} |")
    print(f"| chimera HTTP (upload + decode + transcribe) | {hm:.3f} | {hm / seconds:.4f} |")
    print(f"ratio direct/HTTP (speed, 1.0 = equal): {dm / hm:.3f}")
    print(f"throughput, 2 clients, {args.requests} requests: 1 worker x {args.threads} threads {tp_one:.2f} req/s; "
          f"2 workers x {max(1, args.threads // 2)} thread(s) {tp_two:.2f} req/s")


if __name__ == "__main__":
    main()
