"""Runs the executable's model load and a generation on emulated older x86-64 CPUs (qemu-user).

    python packaging/cpucheck.py dist/chimera [--cpu Nehalem --cpu Haswell-noTSX ...] [--model M.gguf]

The one file unpacks itself natively first (into a temporary runtime directory); then the program
inside it, the same bytes every user runs, is started as `qemu-x86_64 -cpu MODEL <runtime>/chimera
serve -m MODEL`. (qemu-user emulates one process and does not follow exec() into a new program,
so the launcher itself is not what runs under qemu; it contains no vector code either way.)
PyInstaller's bootloader re-executes itself once on Linux to put its library folder on
LD_LIBRARY_PATH; the emulated run is given the environment of that second execution (the
variables below), so that Python, the app and llama.cpp all run under the emulated CPU. Each run
answers a greedy `/v1/completions` of a few tokens, which must equal the native run's text, and
reports the CPU features of the ggml CPU variant that was loaded.

What must hold: under every emulated CPU the executable loads the model, generates, and exits
with 0; the ggml CPU variant it picks has no instruction set the emulated CPU lacks; and its greedy
text equals what chimera from the virtualenv (`--venv-python`, run the same way under the same
emulated CPU) generates. The text may differ from the native run's: each CPU variant computes the
quantized dot products with different instructions and rounding, so near-ties can break the other
way; the top alternatives of the first differing token are printed to show such a near-tie.
Needs `qemu-user` (`apt-get install qemu-user`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, body: dict | None = None, timeout: float = 600) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def restarted_env(prog: Path, env: dict[str, str]) -> dict[str, str]:
    """The environment PyInstaller's bootloader gives its own second execution (PyInstaller 6)."""
    return env | {"LD_LIBRARY_PATH": str(prog.parent / "_internal"), "_PYI_ARCHIVE_FILE": str(prog),
                  "_PYI_PARENT_PROCESS_LEVEL": "-1", "_PYI_LINUX_PROCESS_NAME": prog.name}


def run_one(prefix: list[str], prog: Path, model: Path, env: dict[str, str], prompt: str, n: int) -> dict:
    if prefix:
        env = restarted_env(prog, env)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    log = tempfile.NamedTemporaryFile(prefix="chimera-cpucheck-", suffix=".log", delete=False)
    cmd = [str(prog)] if prog.name != "python" and not prog.name.startswith("python3") else [str(prog), "-m", "chimera"]
    proc = subprocess.Popen([*prefix, *cmd, "serve", "-m", str(model), "--port", str(port), "-np", "1",
                             "-c", "512", "-t", "2"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode}: {Path(log.name).read_text()[-2000:]}")
            try:
                if get(base + "/health", timeout=5).get("status") == "ok":
                    break
            except Exception:  # noqa: BLE001 - still loading
                pass
            if time.monotonic() - t0 > 1200:
                raise RuntimeError("not ready after 20 minutes")
            time.sleep(1)
        ready = time.monotonic() - t0
        out = get(base + "/v1/completions", {"prompt": prompt, "max_tokens": n, "temperature": 0, "logprobs": 3})
        gen = time.monotonic() - t0 - ready
        info = get(base + "/v1/chimera/info")["llama_cpp"]
        get(base + "/v1/chimera/shutdown", {})
        rc = proc.wait(300)
        lp = out["choices"][0].get("logprobs") or {}
        return {"text": out["choices"][0]["text"], "tokens": lp.get("tokens"),
                "top": [{k: round(v, 3) for k, v in t.items()} for t in lp.get("top_logprobs") or []], "ready_s": round(ready, 1), "generate_s": round(gen, 1),
                "cpu_features": info["cpu_features"], "exit": rc}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exe", type=Path)
    ap.add_argument("--cpu", action="append", default=None, help="qemu CPU model (default: Nehalem, Haswell-noTSX)")
    ap.add_argument("--model", type=Path, default=Path.home() / ".cache/chimera/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("--venv-python", type=Path, default=None, help="also run chimera from this virtualenv's Python under each CPU")
    args = ap.parse_args()
    qemu = shutil.which("qemu-x86_64")
    if not qemu:
        print("qemu-x86_64 not found (apt-get install qemu-user)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="chimera-cpucheck-") as td:
        env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", td), "LANG": "C.UTF-8",
               "CHIMERA_RUNTIME_DIR": td}
        subprocess.run([str(args.exe.resolve()), "--version"], env=env, check=True, capture_output=True)
        [runtime] = [p for p in Path(td).iterdir() if p.is_dir()]
        prog = runtime / "chimera"
        native = run_one([], prog, args.model, env, args.prompt, args.n)
        show("native", native, None)
        ok = True
        for cpu in args.cpu or ["Nehalem", "Haswell-noTSX"]:
            try:
                r = run_one([qemu, "-cpu", cpu], prog, args.model, env, args.prompt, args.n)
                ok &= r["exit"] == 0 and len(r["tokens"] or []) == args.n
                ok &= not (cpu.startswith("Nehalem") and "AVX" in r["cpu_features"])
                ok &= not (cpu.startswith("Haswell") and "AVX512" in r["cpu_features"])
                show(f"{cpu} (frozen)", r, native)
                if args.venv_python:
                    v = run_one([qemu, "-cpu", cpu], args.venv_python, args.model,
                                dict(os.environ, CHIMERA_MODELS_CACHE=str(args.model.parent)), args.prompt, args.n)
                    show(f"{cpu} (virtualenv)", v, native)
                    same = v["text"] == r["text"] and v["cpu_features"] == r["cpu_features"]
                    print(f"  frozen and virtualenv agree under {cpu}: {same}")
                    ok &= same
            except RuntimeError as e:
                print(f"{cpu}: FAILED {e}")
                ok = False
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


def show(label: str, r: dict, native: dict | None) -> None:
    print(f"{label}: {r['text']!r} (ready {r['ready_s']} s, {len(r['tokens'] or [])} tokens in {r['generate_s']} s, "
          f"exit {r['exit']}); CPU variant features: {' '.join(r['cpu_features'])}")
    if native and r["tokens"] != native["tokens"]:
        i = next(i for i, (a, b) in enumerate(zip(r["tokens"], native["tokens"])) if a != b)
        print(f"  differs from native at token {i}: {r['tokens'][i]!r} vs {native['tokens'][i]!r}; "
              f"top-3 logprobs here {r['top'][i]}, native {native['top'][i]}")


if __name__ == "__main__":
    sys.exit(main())
