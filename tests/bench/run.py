"""`make bench`: chimera against llama-server (same llama.cpp, same flags, same load), in one run.

Prints tok/s and TTFT p50/p95 for 1 / 4 / 8 concurrent streaming clients, the chimera/llama-server
ratios, resident memory after load, the engine's Python time per step, and a prefix-reuse case.
With --write FILE it replaces the table between the bench markers in that file.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psutil
import trio

sys.path.insert(0, str(Path(__file__).parent))
from load import run_load  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    def __init__(self, name: str, argv: list[str], port: int, ready: Callable[[], bool] | None = None) -> None:
        """`ready`: how to tell the process is up (default: /health answers 200)."""
        self.name = name
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(f"/tmp/bench-{name}.log", "w")
        # the anchor's build tree is gone: its shared libraries sit beside the binary
        env = dict(os.environ, LD_LIBRARY_PATH=str(Path(argv[0]).parent))
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited early; see /tmp/bench-{name}.log")
            if (ready or self._healthy)():
                return
            time.sleep(0.2)
        raise SystemExit(f"{name} did not become ready")

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.base + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def rss_mb(self) -> float:
        p = psutil.Process(self.proc.pid)
        return sum(c.memory_info().rss for c in [p, *p.children(recursive=True)]) / 2**20

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def ttft_once(base: str, prompt: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with httpx.stream("POST", base + "/v1/chat/completions", timeout=600, json={
        "messages": [{"role": "user", "content": prompt}], "max_tokens": 2, "stream": True,
        "stream_options": {"include_usage": True}, "temperature": 0,
    }) as r:
        first = 0.0
        cached = -1
        for line in r.iter_lines():
            if line.startswith("data: {") and not first and '"content"' in line and '"content":""' not in line:
                first = time.perf_counter() - t0
            m = re.search(r'"cached_tokens":\s*(\d+)', line)
            if m:
                cached = int(m.group(1))
    return first or (time.perf_counter() - t0), cached


def long_prompt(tokens: int) -> str:
    words = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar "
             "papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()
    return " ".join(words[(i * 7) % len(words)] for i in range(tokens))


def step_stats(base: str) -> dict[str, float]:
    text = httpx.get(base + "/metrics").text
    def val(name: str) -> float:
        m = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0
    steps = val("chimera_llm_step_seconds_count")
    return {
        "steps": steps,
        "step_ms": 1000 * val("chimera_llm_step_seconds_sum") / max(steps, 1),
        "decode_ms": 1000 * val("chimera_llm_decode_seconds_total") / max(steps, 1),
        "python_ms": 1000 * (val("chimera_llm_loop_seconds_total") - val("chimera_llm_decode_seconds_total")) / max(steps, 1),
    }


def start_server(name: str, argv_for_port: Any) -> Proc:
    port = free_port()
    return Proc(name, argv_for_port(port), port)


def prompt_of_tokens(base: str, n_tokens: int) -> str:
    """A prompt whose content is exactly n_tokens tokens for this model (via /tokenize)."""
    text = long_prompt(n_tokens * 2)
    toks = httpx.post(base + "/tokenize", json={"content": text}, timeout=60).json()["tokens"][:n_tokens]
    return str(httpx.post(base + "/detokenize", json={"tokens": toks}, timeout=60).json()["content"])


def measure(servers: list[Proc], args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved: every repetition runs each concurrency on each server in turn (the order
    alternating), so drift on a shared machine hits both alike; medians are reported."""
    runs: dict[str, dict[int, list[dict[str, float]]]] = {p.name: {c: [] for c in args.concurrency} for p in servers}
    next_index = 0
    for rep in range(args.reps):
        for c in args.concurrency:
            order = servers if rep % 2 == 0 else servers[::-1]
            for p in order:
                n = max(args.min_requests, args.rounds * c)
                res = trio.run(partial(run_load, p.base, c, n, args.max_tokens, first_index=next_index))
                next_index += n
                runs[p.name][c].append(res)
                print(f"  rep {rep} {p.name:12s} c={c}: {res['tok_s']:.1f} tok/s, TTFT p50 {res['ttft_p50']*1000:.0f} ms",
                      flush=True)
    out: dict[str, Any] = {}
    for p in servers:
        loads = []
        for c in args.concurrency:
            rs = runs[p.name][c]
            loads.append({
                "concurrency": c,
                "runs": [r["tok_s"] for r in rs],
                "tok_s": statistics.median(r["tok_s"] for r in rs),
                "ttft_p50": statistics.median(r["ttft_p50"] for r in rs),
                "ttft_p95": statistics.median(r["ttft_p95"] for r in rs),
            })
        prompt = prompt_of_tokens(servers[-1].base, args.prefix_tokens)
        first, _ = ttft_once(p.base, prompt)
        second, cached = ttft_once(p.base, prompt)
        out[p.name] = {"loads": loads, "rss_mb": p.rss_mb(), "prefix": {"first": first, "second": second, "cached": cached}}
        if p.name == "chimera":
            out[p.name]["steps"] = step_stats(p.base)
    return out


def gpu_name(args: argparse.Namespace) -> str:
    if args.backend != "cuda":
        return f", {args.backend}" if args.backend != "cpu" else ""
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=30).stdout.strip().splitlines()
    except (OSError, subprocess.TimeoutExpired):
        names = []
    return f", GPU {names[0]} (CUDA, `-ngl {args.gpu_layers}`)" if names else ", CUDA"


def table(ls: dict[str, Any], ch: dict[str, Any], args: argparse.Namespace) -> str:
    cpu = cpu_name()
    lines = [
        f"Machine: {cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB{gpu_name(args)}; "
        f"{time.strftime('%Y-%m-%d')}. Model: {Path(args.model).name}; `-np {args.parallel} -c {args.ctx} -t {args.threads}`; "
        f"streaming chat, {args.max_tokens} tokens per request, `ignore_eos`, distinct prompts, clients starting 0.2 s "
        f"apart; the load generator runs on the same machine. Medians of {args.reps} interleaved repetitions "
        f"(in each, the two servers run back to back, in alternating order).",
        "",
        "| clients | llama-server tok/s | chimera tok/s | ratio of medians | ratio, median of paired runs | llama-server TTFT p50 / p95 (ms) | chimera TTFT p50 / p95 (ms) | TTFT p50 ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a, b in zip(ls["loads"], ch["loads"]):
        # each repetition runs the two servers back to back: the ratio within a pair sees the
        # least drift, so the median of those ratios is the steadier estimate
        paired = statistics.median(y / x for x, y in zip(a["runs"], b["runs"]))
        lines.append(
            f"| {a['concurrency']} | {a['tok_s']:.1f} | {b['tok_s']:.1f} | {b['tok_s'] / a['tok_s']:.3f} | {paired:.3f} | "
            f"{a['ttft_p50']*1000:.0f} / {a['ttft_p95']*1000:.0f} | {b['ttft_p50']*1000:.0f} / {b['ttft_p95']*1000:.0f} | "
            f"{b['ttft_p50'] / a['ttft_p50']:.2f} |"
        )
    st = ch.get("steps", {})
    lines += [
        "",
        f"- Resident memory after the load: llama-server {ls['rss_mb']:.0f} MB, chimera {ch['rss_mb']:.0f} MB "
        f"({ch['rss_mb'] - ls['rss_mb']:+.0f} MB; llama-server's includes its host-memory prompt cache).",
        f"- chimera engine, mean per step over the run: {st.get('step_ms', 0):.2f} ms in the step, of which "
        f"{st.get('decode_ms', 0):.2f} ms in llama_decode; Python time per step (everything but the decode, "
        f"thread hand-off included): {st.get('python_ms', 0):.2f} ms.",
        f"- Prefix reuse, a {args.prefix_tokens}-token prompt sent twice: llama-server TTFT {ls['prefix']['first']*1000:.0f} → "
        f"{ls['prefix']['second']*1000:.0f} ms; chimera {ch['prefix']['first']*1000:.0f} → {ch['prefix']['second']*1000:.0f} ms "
        f"({100 * ch['prefix']['second'] / ch['prefix']['first']:.0f}% of the first; {ch['prefix']['cached']} tokens from cache).",
    ]
    return "\n".join(lines)


def build_tool(backend: str, tool: str) -> str:
    """llama-server or llama-batched-bench from the same llama.cpp and flags as chimera's wheel."""
    out = subprocess.run([str(REPO / "native/build-llama-server.sh"), backend, tool], check=True,
                         capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def batched_bench(args: argparse.Namespace) -> list[tuple[int, float]]:
    """Generation tok/s of llama.cpp's own batched loop, with no server around it, for each
    concurrency: the most any server could get out of the engine."""
    exe = build_tool(args.backend, "llama-batched-bench")
    argv = [exe, "-m", args.model, "-c", str(args.ctx), "-b", "2048", "-ub", "512", "-t", str(args.threads),
            "-npp", "64", "-ntg", str(args.max_tokens), "-npl", ",".join(str(c) for c in args.concurrency)]
    if args.backend != "cpu":
        argv += ["-ngl", str(args.gpu_layers)]
    env = dict(os.environ, LD_LIBRARY_PATH=str(Path(exe).parent))
    text = subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout
    rows = []
    for line in text.splitlines():  # |    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s | ...
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and cells[0].isdigit():
            rows.append((int(cells[2]), float(cells[7])))
    print(f"llama-batched-bench: {rows}", flush=True)
    return rows


def add_server_args(ap: argparse.ArgumentParser) -> None:
    """The flags both servers are started with, the same for each."""
    ap.add_argument("--model", default=None, help="default: the prepared SmolLM2")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=8 * 2560)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--backend", choices=["cpu", "cuda", "vulkan"], default="cpu",
                    help="the anchor's build; chimera runs from this environment (make setup BACKEND=...)")
    ap.add_argument("--gpu-layers", type=int, default=999, help="-ngl for both servers when the backend is a GPU")


def server_argvs(args: argparse.Namespace, names: tuple[str, ...] = ("llama-server", "chimera")) -> dict[str, Any]:
    """name → (port → argv) for each server, on the same model and flags (fills in args.model)."""
    if args.model is None:
        from chimera.models import prepare

        args.model = str(prepare("llm"))
    common = ["-m", args.model, "-np", str(args.parallel), "-c", str(args.ctx), "-t", str(args.threads),
              "-b", "2048", "-ub", "512", "--host", "127.0.0.1"]
    if args.backend != "cpu":
        common += ["-ngl", str(args.gpu_layers)]
    out: dict[str, Any] = {}
    if "llama-server" in names:
        server_bin = build_tool(args.backend, "llama-server")
        print(f"llama-server: {server_bin}", flush=True)
        out["llama-server"] = lambda port: [server_bin, *common, "--port", str(port), "--no-webui"]
    if "chimera" in names:
        out["chimera"] = lambda port: [sys.executable, "-m", "chimera", "serve", *common, "--port", str(port)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    add_server_args(ap)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--rounds", type=int, default=3, help="requests per client")
    ap.add_argument("--min-requests", type=int, default=16)
    ap.add_argument("--prefix-tokens", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=7, help="interleaved repetitions (medians are reported)")
    ap.add_argument("--write", default=None, help="markdown file whose bench section is replaced")
    ap.add_argument("--batched-bench", action="store_true", help="also run llama-batched-bench as the engine's limit")
    args = ap.parse_args()
    argvs = server_argvs(args)
    engine_limit = batched_bench(args) if args.batched_bench else None
    servers = [start_server(name, argvs[name]) for name in ("llama-server", "chimera")]
    try:
        res = measure(servers, args)
    finally:
        for p in servers:
            p.stop()
    ls, ch = res["llama-server"], res["chimera"]
    md = table(ls, ch, args)
    if engine_limit:
        md += "\n- The engine's own limit (`llama-batched-bench`, the same model and flags, " \
              f"{args.max_tokens} tokens generated per sequence): " + \
              ", ".join(f"{n} sequences {tg:.0f} tok/s" for n, tg in engine_limit) + "."
    print("\n" + md)
    if args.write:
        write_section(Path(args.write), f"bench:{args.backend}", md)


def cpu_name() -> str:
    return next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.processor())


def publish(md: str, write: str | None, tag: str, heading: str | None = None) -> None:
    """Print a benchmark's table, and with --write put it into that file's section."""
    print("\n" + md)
    if write:
        write_section(Path(write), tag, md, heading)


def write_section(path: Path, tag: str, md: str, heading: str | None = None) -> None:
    """Put `md` between the file's `<!-- tag:start -->` and `<!-- tag:end -->` markers (added at
    the end, under `heading`, the first time)."""
    text = path.read_text() if path.exists() else ""
    if f"<!-- {tag}:start -->" not in text:
        text += (f"\n## {heading}\n" if heading else "") + f"\n<!-- {tag}:start -->\n<!-- {tag}:end -->\n"
    path.write_text(re.sub(rf"(<!-- {tag}:start -->\n).*?(<!-- {tag}:end -->)", lambda m: m.group(1) + md + "\n" + m.group(2),
                           text, flags=re.S))


if __name__ == "__main__":
    main()
