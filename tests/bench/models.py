"""`make bench`, models on demand: chimera against llama-server's router (the same vendored
llama.cpp, the same models folder, the same client), in one run.

- cold start: from the first request for an unloaded model to its first token;
- switching: requests alternating between two models, with `--models-max 1` (every request a
  load) and with both resident;
- the tok/s of a busy model during one load of another model, as a ratio of its tok/s
  undisturbed, and how long that load takes;
- resident memory (the server and its children) after a load and unload, against before.

Both servers run at once and the measurements alternate between them, so drift on a shared
machine hits both alike; medians are reported. With --write FILE the section between the
`bench:models` markers in that file is replaced.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).parent))
from load import prompt_for  # noqa: E402
from run import Proc, build_tool, cpu_name, free_port, publish  # noqa: E402

A, B = "smollm", "gemma"


def folder() -> Path:
    """A models folder with two chat models of different architectures (links to the prepared files)."""
    from chimera.models import prepare

    d = Path(tempfile.mkdtemp(prefix="chimera-bench-models-"))
    (d / f"{A}.gguf").symlink_to(prepare("llm"))
    (d / f"{B}.gguf").symlink_to(prepare("gemma"))
    return d


def argv(name: str, models: Path, models_max: int, args: argparse.Namespace) -> Any:
    common = ["--models-dir", str(models), "--models-max", str(models_max), "-np", str(args.parallel),
              "-c", str(args.ctx), "-t", str(args.threads), "--host", "127.0.0.1"]
    if name == "llama-server":
        exe = build_tool("cpu", "llama-server")
        return lambda port: [exe, *common, "--port", str(port), "--no-webui"]
    return lambda port: [sys.executable, "-m", "chimera", "serve", *common, "--port", str(port)]


def status(base: str, model: str) -> str:
    for m in httpx.get(base + "/models", timeout=30).json()["data"]:
        if m["id"] == model:
            st = m.get("status")
            return str(st.get("value") if isinstance(st, dict) else st)
    raise SystemExit(f"{model} is not listed by {base}/models")


def wait_status(base: str, model: str, want: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while status(base, model) != want:
        if time.monotonic() > deadline:
            raise SystemExit(f"{base}: {model} did not become {want}")
        time.sleep(0.05)


def unload(base: str, model: str) -> None:
    if status(base, model) != "unloaded":
        httpx.post(base + "/models/unload", json={"model": model}, timeout=120)
        wait_status(base, model, "unloaded")


def load(base: str, model: str) -> None:
    if status(base, model) != "loaded":
        httpx.post(base + "/models/load", json={"model": model}, timeout=300)
        wait_status(base, model, "loaded")


def first_token(base: str, model: str, i: int, max_tokens: int = 2) -> tuple[float, float]:
    """(seconds to the first content token, seconds to the end) of one streaming request."""
    t0 = time.perf_counter()
    first = 0.0
    body = {"model": model, "stream": True, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "messages": [{"role": "user", "content": f"Request {i}: name a colour."}]}
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not first and line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
                first = time.perf_counter() - t0
    end = time.perf_counter() - t0
    return first or end, end


def rss_mb(p: Proc) -> float:
    return p.rss_mb()


def cold_starts(servers: list[Proc], reps: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {p.name: [] for p in servers}
    for rep in range(reps):
        for p in (servers if rep % 2 == 0 else servers[::-1]):
            unload(p.base, A)
            time.sleep(0.5)
            out[p.name].append(first_token(p.base, A, rep)[0])
    return out


def switching(servers: list[Proc], rounds: int) -> dict[str, list[float]]:
    """Seconds per request (8 tokens, to the end) alternating A, B, A, B, ..."""
    out: dict[str, list[float]] = {p.name: [] for p in servers}
    for rep in range(rounds):
        for p in (servers if rep % 2 == 0 else servers[::-1]):
            for k, model in enumerate((A, B, A, B)):
                out[p.name].append(first_token(p.base, model, 1000 + rep * 4 + k, max_tokens=8)[1])
    return out


async def _busy_while_loading(base: str, max_tokens: int, first_index: int, disturb: bool,
                              window: float) -> tuple[float, float]:
    """(tok/s of 2 clients streaming from A over the measured span, the span in s). Undisturbed,
    the span is `window` seconds; disturbed, it is one load of B: from the load request until the
    server lists B as loaded (llama-server's router answers /models/load before the model is up,
    so both servers are polled the same way)."""
    stamps: list[float] = []
    counter = itertools.count(first_index)

    async def client(c: httpx.AsyncClient, k: int) -> None:
        await trio.sleep(0.2 * k)
        while True:
            i = next(counter)
            body = {"model": A, "stream": True, "max_tokens": max_tokens, "temperature": 0.8, "seed": i,
                    "ignore_eos": True, "messages": [{"role": "user", "content": prompt_for(i)}]}
            async with c.stream("POST", base + "/v1/chat/completions", json=body) as r:
                r.raise_for_status()
                async for line in r.aiter_lines():
                    if '"content":"' in line and '"content":""' not in line:
                        stamps.append(time.perf_counter())

    async def until_loaded(c: httpx.AsyncClient) -> None:
        while True:
            listing = (await c.get(base + "/models")).json()["data"]
            st = next(m["status"] for m in listing if m["id"] == B)
            value = st.get("value") if isinstance(st, dict) else st
            if value == "loaded":
                return
            if value == "failed":
                raise SystemExit(f"{base}: {B} failed to load: {st}")
            await trio.sleep(0.05)

    limits = httpx.Limits(max_connections=6, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=600, limits=limits) as c:
        async with trio.open_nursery() as n:
            for k in range(2):
                n.start_soon(client, c, k)
            await trio.sleep(3)  # both streams running
            t0 = time.perf_counter()
            if disturb:
                with trio.fail_after(300):
                    await c.post(base + "/models/load", json={"model": B})
                    await until_loaded(c)
            else:
                await trio.sleep(window)
            t1 = time.perf_counter()
            n.cancel_scope.cancel()
    return sum(t0 <= s <= t1 for s in stamps) / (t1 - t0), t1 - t0


def during_loads(servers: list[Proc], reps: int, max_tokens: int, window: float) -> dict[str, dict[str, list[float]]]:
    """Per server: the busy model's tok/s alone and during one load of the other model, and how
    long that load took."""
    out: dict[str, dict[str, list[float]]] = {p.name: {"alone": [], "loading": [], "load_s": []} for p in servers}
    index = 50_000
    for rep in range(reps):
        for p in (servers if rep % 2 == 0 else servers[::-1]):
            load(p.base, A)
            for disturb in (False, True):
                unload(p.base, B)
                tok_s, span = trio.run(partial(_busy_while_loading, p.base, max_tokens, index, disturb, window))
                index += 1000
                out[p.name]["loading" if disturb else "alone"].append(tok_s)
                if disturb:
                    out[p.name]["load_s"].append(span)
                print(f"  {p.name:12s} tok/s of {A} {'while ' + B + ' loads' if disturb else 'alone'}: {tok_s:.1f}"
                      + (f" (the load took {span:.2f} s)" if disturb else ""), flush=True)
    return out


def memory(servers: list[Proc]) -> dict[str, tuple[float, float, float]]:
    """(before the first load, loaded, after the unload) resident MB of each server and its children."""
    out = {}
    for p in servers:
        unload(p.base, A)
        unload(p.base, B)
        time.sleep(1)
        before = rss_mb(p)
        first_token(p.base, A, 90_000, max_tokens=8)
        loaded = rss_mb(p)
        unload(p.base, A)
        time.sleep(1)
        out[p.name] = (before, loaded, rss_mb(p))
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--window", type=float, default=8.0, help="seconds of the busy model's undisturbed tok/s measurement")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--write", default=None)
    args = ap.parse_args()
    models = folder()
    names = ("llama-server", "chimera")

    def start(models_max: int) -> list[Proc]:
        out = []
        for name in names:
            port = free_port()
            out.append(Proc(f"{name}-router{models_max}", argv(name, models, models_max, args)(port), port))
            out[-1].name = name
        return out

    servers = start(2)
    try:
        mem = memory(servers)
        print(f"memory: {mem}", flush=True)
        cold = cold_starts(servers, args.reps)
        print(f"cold start: { {k: [round(x, 3) for x in v] for k, v in cold.items()} }", flush=True)
        for p in servers:
            load(p.base, A)
            load(p.base, B)
        resident = switching(servers, max(2, args.reps // 2))
        print(f"switching, both resident: { {k: round(med(v), 3) for k, v in resident.items()} }", flush=True)
        busy = during_loads(servers, max(3, args.reps // 2), args.max_tokens, args.window)
    finally:
        for p in servers:
            p.stop()
    servers = start(1)
    try:
        swap = switching(servers, max(2, args.reps // 2))
        print(f"switching, --models-max 1: { {k: round(med(v), 3) for k, v in swap.items()} }", flush=True)
    finally:
        for p in servers:
            p.stop()

    ls, ch = "llama-server", "chimera"
    cpu = cpu_name()
    ratio_busy = {n: med([b / a for a, b in zip(busy[n]["alone"], busy[n]["loading"])]) for n in names}
    lines = [
        f"Machine: {cpu}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}. Models: SmolLM2-135M-Instruct Q4_1 "
        f"(`{A}`) and Gemma 3 270M Q4_K_M (`{B}`) in one `--models-dir`; both servers with `-np {args.parallel} "
        f"-c {args.ctx} -t {args.threads}`, running at once, measurements alternating between them; medians. "
        "llama-server's router runs each model as a child `llama-server` process; chimera runs every "
        "model in its one process, each a task of one nursery, and loads at nice +10.",
        "",
        "| measure | llama-server router | chimera | chimera / llama-server |",
        "|---|---|---|---|",
        f"| cold start: first token of an unloaded model (s), {args.reps} runs | {med(cold[ls]):.3f} | {med(cold[ch]):.3f} | "
        f"{med(cold[ch]) / med(cold[ls]):.2f} |",
        f"| switching A, B, A, B with `--models-max 1` (s per 8-token request, each a load) | {med(swap[ls]):.3f} | "
        f"{med(swap[ch]):.3f} | {med(swap[ch]) / med(swap[ls]):.2f} |",
        f"| switching A, B, A, B, both resident (s per 8-token request) | {med(resident[ls]):.3f} | "
        f"{med(resident[ch]):.3f} | {med(resident[ch]) / med(resident[ls]):.2f} |",
        f"| tok/s of `{A}` (2 streams of {args.max_tokens}-token answers), {args.window:.0f} s undisturbed | "
        f"{med(busy[ls]['alone']):.1f} | {med(busy[ch]['alone']):.1f} | {med(busy[ch]['alone']) / med(busy[ls]['alone']):.2f} |",
        f"| the same during one load of `{B}` (from the load request until it is listed as loaded) | "
        f"{med(busy[ls]['loading']):.1f} | {med(busy[ch]['loading']):.1f} | "
        f"{med(busy[ch]['loading']) / med(busy[ls]['loading']):.2f} |",
        f"| busy model's tok/s during the load / undisturbed (median of paired runs) | {ratio_busy[ls]:.2f} | "
        f"{ratio_busy[ch]:.2f} | |",
        f"| seconds that load of `{B}` took while `{A}` streamed | {med(busy[ls]['load_s']):.2f} | "
        f"{med(busy[ch]['load_s']):.2f} | {med(busy[ch]['load_s']) / med(busy[ls]['load_s']):.2f} |",
        f"| resident MB (server and children): before the first load → `{A}` loaded → after its unload | "
        f"{mem[ls][0]:.0f} → {mem[ls][1]:.0f} → {mem[ls][2]:.0f} | {mem[ch][0]:.0f} → {mem[ch][1]:.0f} → {mem[ch][2]:.0f} | "
        f"after − before: {mem[ls][2] - mem[ls][0]:+.0f} / {mem[ch][2] - mem[ch][0]:+.0f} MB |",
    ]
    md = "\n".join(lines)
    publish(md, args.write, "bench:models")


if __name__ == "__main__":
    main()
