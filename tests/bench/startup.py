"""Size and start-up time of the one-file executable, against running from the virtualenv.

    python tests/bench/startup.py [--exe dist/chimera] [--onefile build/onefile/chimera] [--reps 5]

Sizes: the file, the unpacked folder, and every bundled library (from build/onedir/chimera, the
folder the payload holds), grouped by component.

Times (wall clock, median of --reps, each a new process):
- `--version`, `serve --help`, and `serve` (the default model) until `GET /health` answers 200;
- for the executable: *first run* (an empty runtime directory: the one-time unpack included),
  *warm* (runtime directory present, files in the page cache) and *cold* (runtime directory
  present, page cache dropped with `echo 3 > /proc/sys/vm/drop_caches`, which needs root; skipped
  otherwise);
- the same warm/cold numbers for `.venv/bin/chimera`;
- with --onefile, PyInstaller's own one-file mode (it unpacks everything on every run).
Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def serve_until_healthy(cmd: list[str], env: dict[str, str], models: Path) -> float:
    port = free_port()
    t = time.perf_counter()
    proc = subprocess.Popen([*cmd, "serve", "--port", str(port), "--models-dir", str(models)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        elapsed = time.perf_counter() - t
                        break
            except Exception:  # noqa: BLE001 - not listening or still loading
                pass
            time.sleep(0.01)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chimera/shutdown", data=b"{}", method="POST")
        urllib.request.urlopen(req, timeout=10).read()
        proc.wait(60)
        return elapsed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def med(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f}" if xs else "–"


COMPONENTS = [
    ("llama.cpp (llama_cpp/lib: libllama, libggml*, libmtmd, 14 CPU variants)", ("llama_cpp/",)),
    ("whisper.cpp (pywhispercpp.libs, _pywhispercpp)", ("pywhispercpp.libs/", "_pywhispercpp", "libwhisper", "libggml-684", "libggml-base-319", "libggml-cpu-670", "libgomp-e98")),
    ("stable-diffusion.cpp (libstable-diffusion)", ("stable_diffusion_cpp/",)),
    ("FFmpeg and codecs (PyAV: av, av.libs)", ("av/", "av.libs/")),
    ("NumPy + OpenBLAS (numpy, numpy.libs)", ("numpy/", "numpy.libs/")),
    ("Pillow (PIL, pillow.libs)", ("PIL/", "pillow.libs/")),
    ("Python (libpython, lib-dynload, base_library.zip, the PYZ in the program)", ("libpython", "python3.", "base_library.zip", "chimera")),
    ("SQLite: apsw, sqlite-vec, libsqlite3", ("apsw/", "sqlite_vec/", "libsqlite3")),
    ("pydantic-core", ("pydantic_core/",)),
    ("C/C++ runtime (libstdc++, libgcc_s, libgomp)", ("libstdc++", "libgcc_s", "libgomp.so")),
    ("OpenSSL (libssl, libcrypto)", ("libssl", "libcrypto")),
]


def sizes(onedir: Path) -> tuple[list[tuple[str, int, int]], list[tuple[str, int]], int]:
    files = {}
    for p in onedir.rglob("*"):
        if p.is_file() and not p.is_symlink():
            files[p.relative_to(onedir).as_posix()] = p
    groups: dict[str, list[int]] = {}
    for rel, p in files.items():
        key = rel.removeprefix("_internal/")
        name = next((n for n, prefixes in COMPONENTS if any(key.startswith(x) or x in key for x in prefixes)), "other")
        data = p.read_bytes()
        g = groups.setdefault(name, [0, 0])
        g[0] += len(data)
        g[1] += len(zlib.compress(data, 6))
    order = [n for n, _ in COMPONENTS] + ["other"]
    rows = [(n, groups[n][0], groups[n][1]) for n in order if n in groups]
    libs = sorted(((rel.removeprefix("_internal/"), p.stat().st_size) for rel, p in files.items()
                   if ".so" in p.name or p.name.endswith(".dylib")), key=lambda x: -x[1])
    return rows, libs, sum(p.stat().st_size for p in files.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exe", type=Path, default=REPO / "dist" / "chimera")
    ap.add_argument("--onedir", type=Path, default=REPO / "build" / "onedir" / "chimera")
    ap.add_argument("--onefile", type=Path, default=None, help="a PyInstaller one-file build, for comparison")
    ap.add_argument("--venv", type=Path, default=REPO / ".venv")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cold-reps", type=int, default=3)
    ap.add_argument("--models-dir", type=Path, default=Path.home() / ".cache" / "chimera" / "models")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    exe = args.exe.resolve()
    clean = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    venv_env = clean | {"PATH": f"{args.venv / 'bin'}:/usr/bin:/bin"}
    can_drop = drop_caches()
    res: dict[str, dict[str, list[float]]] = {}

    def add(key: str, col: str, v: float) -> None:
        res.setdefault(key, {}).setdefault(col, []).append(v)

    with tempfile.TemporaryDirectory(prefix="chimera-startup-") as td:
        runtime = Path(td) / "runtime"
        env = clean | {"CHIMERA_RUNTIME_DIR": str(runtime)}
        for _ in range(args.reps):  # first run: the one-time unpack
            shutil.rmtree(runtime, ignore_errors=True)
            add("binary --version", "first run", timed([str(exe), "--version"], env))
        targets = {
            "binary": ([str(exe)], env),
            "virtualenv": ([str(args.venv / "bin" / "chimera")], venv_env),
        }
        if args.onefile:
            targets["PyInstaller one-file"] = ([str(args.onefile.resolve())], clean | {"TMPDIR": td})
        for label, (cmd, e) in targets.items():
            for what, extra in (("--version", ["--version"]), ("serve --help", ["serve", "--help"])):
                timed(cmd + extra, e)  # fill the page cache
                for _ in range(args.reps):
                    add(f"{label} {what}", "warm", timed(cmd + extra, e))
                for _ in range(args.cold_reps if can_drop else 0):
                    drop_caches()
                    add(f"{label} {what}", "cold", timed(cmd + extra, e))
            serve_until_healthy(cmd, e, args.models_dir)
            for _ in range(max(3, args.reps // 2)):
                add(f"{label} serve → /health 200", "warm", serve_until_healthy(cmd, e, args.models_dir))
            for _ in range(args.cold_reps if can_drop else 0):
                drop_caches()
                add(f"{label} serve → /health 200", "cold", serve_until_healthy(cmd, e, args.models_dir))
        shutil.rmtree(runtime, ignore_errors=True)
        add("binary serve → /health 200", "first run", serve_until_healthy([str(exe)], env, args.models_dir))

    rows, libs, unpacked = sizes(args.onedir)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    out = []
    out.append(f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
               f"{time.strftime('%Y-%m-%d')}. Medians; warm = files in the page cache; cold = page cache "
               f"dropped before each run{'' if can_drop else ' (not possible here: no root)'}; first run = "
               f"empty runtime directory (the one-time unpack included). The default model is "
               f"SmolLM2-135M-Instruct Q4_1.\n")
    out.append("| command | first run (s) | warm (s) | cold (s) |")
    out.append("|---|---|---|---|")
    for key in res:
        r = res[key]
        out.append(f"| `{key}` | {med(r.get('first run', []))} | {med(r.get('warm', []))} | {med(r.get('cold', []))} |")
    out.append("")
    out.append(f"Size: `dist/chimera` {exe.stat().st_size / 1e6:.1f} MB (launcher {launcher_size(exe) / 1e3:.0f} kB + "
               f"zlib payload); unpacked {unpacked / 1e6:.1f} MB in {sum(1 for _ in args.onedir.rglob('*'))} entries.\n")
    out.append("| component | unpacked MB | compressed MB (zlib -6, per file) |")
    out.append("|---|---|---|")
    for name, raw, comp in rows:
        out.append(f"| {name} | {raw / 1e6:.1f} | {comp / 1e6:.1f} |")
    out.append("")
    out.append("Largest bundled libraries (unpacked MB): " + ", ".join(f"`{n}` {s / 1e6:.1f}" for n, s in libs[:16]) + ".")
    text = "\n".join(out)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"times": res, "components": rows, "libraries": libs}, indent=1))
    return 0


def launcher_size(exe: Path) -> int:
    import struct

    with open(exe, "rb") as fh:
        fh.seek(-256, os.SEEK_END)
        t = fh.read(256)
    return struct.unpack("<Q", t[16:24])[0] if t.startswith(b"CHIMERA-LAUNCH-1") else 0


if __name__ == "__main__":
    sys.exit(main())
