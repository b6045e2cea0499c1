"""Audits which shared libraries the executable loads: every one must come from the bundle, except
an explicit list of system libraries.

    python packaging/audit.py dist/chimera [--models-cache DIR] [--allow-gpu]

Two checks, against a fresh runtime directory unpacked by the executable itself:

1. **At run time** (the one that matters): the executable runs with `LD_DEBUG=libs` (inherited by
   its worker and probe processes, one log per process) while it serves the features that load
   native code: `--version`, `serve` with the default LLM, a completion, chat persistence (apsw,
   sqlite-vec), `GET /v1/chimera/info` (its probe process loads whisper.cpp and
   stable-diffusion.cpp), a transcription in the audio worker (whisper.cpp, PyAV/FFmpeg), and an
   embeddings server. Every library the dynamic linker initialised is classified.
2. **Statically**: `ldd` on every ELF file of the bundle; every dependency must resolve, inside the
   bundle or to an allowed system library.

Allowed from the system (the policy):
- glibc itself (`ld-linux`, `libc`, `libm`, `libmvec`, `libdl`, `libpthread`, `librt`,
  `libutil`, `libresolv`, `libanl`, `libnss_*`): it cannot be bundled (it must match the kernel
  interface and the dynamic linker that runs the program); the build machine's glibc version is
  therefore the oldest the executable runs on (see packaging/README.md);
- `libz.so.1`: linked by PyInstaller's prebuilt bootloader (the program that starts Python); every
  Linux distribution has it;
- with `--allow-gpu` (CUDA / Vulkan builds): the GPU driver (`libcuda.so.1`, `libnvidia-*`) and
  the Vulkan loader (`libvulkan.so.1`) with its drivers, which must be the user's own.
Everything else, including libstdc++, libgcc_s and libgomp, comes from the bundle: the engines are
built with this machine's GCC and need its GLIBCXX version, which older distributions lack.

Exit status 0 when everything is allowed; the report is printed either way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

GLIBC = re.compile(
    r"^(ld-linux[-\w.]*\.so\.\d+|linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libmvec\.so\.1|libdl\.so\.2|"
    r"libpthread\.so\.0|librt\.so\.1|libutil\.so\.1|libresolv\.so\.2|libanl\.so\.1|libnss_\w+\.so\.2)$"
)
BOOTLOADER = {"libz.so.1"}
GPU = re.compile(r"^(libcuda\.so[.\d]*|libnvidia-[-\w.]+\.so[.\d]*|libvulkan\.so\.1|libGLX?_?\w*\.so[.\d]*)$")


def classify(path: str, runtime: Path, allow_gpu: bool) -> str:
    p = Path(path)
    try:
        if p.resolve().is_relative_to(runtime.resolve()) or p.is_relative_to(runtime):
            return "bundle"
    except OSError:
        pass
    name = p.name
    if GLIBC.match(name):
        return "system: glibc"
    if name in BOOTLOADER:
        return "system: bootloader"
    if allow_gpu and GPU.match(name):
        return "system: gpu driver"
    return "NOT ALLOWED"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: bytes | None = None, ctype: str = "application/json", timeout: float = 120) -> bytes:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": ctype} if body else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def wait_health(base: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if json.loads(http("GET", base + "/health", timeout=2)).get("status") == "ok":
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become healthy")


def multipart(field: str, path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def serve(exe: Path, env: dict[str, str], args: list[str], work) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_health(base, proc)
        work(base)
        http("POST", base + "/v1/chimera/shutdown", b"{}")
        rc = proc.wait(60)
        if rc != 0:
            raise SystemExit(f"server exited with {rc}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def exercise(exe: Path, env: dict[str, str], models: Path, tmp: Path) -> None:
    subprocess.run([str(exe), "--version"], env=env, check=True, capture_output=True)
    subprocess.run([str(exe), "serve", "--help"], env=env, check=True, capture_output=True)
    whisper = models / "ggml-tiny.en.bin"
    jfk = models / "jfk.wav"

    def llm(base: str) -> None:
        http("POST", base + "/v1/completions", json.dumps({"prompt": "Once upon", "max_tokens": 4}).encode())
        http("POST", base + "/v1/chat/completions",
             json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}).encode())
        http("GET", base + "/v1/chimera/info")
        if whisper.exists() and jfk.exists():
            body, ctype = multipart("file", jfk)
            http("POST", base + "/v1/audio/transcriptions", body, ctype)

    args = ["--persist-chats", "--chat-db", str(tmp / "chats.db")]
    if whisper.exists():
        args += ["--whisper-model", str(whisper)]
    serve(exe, env, args, llm)
    embed = models / "all-MiniLM-L6-v2-f16.gguf"
    if embed.exists():
        serve(exe, env, ["-m", str(embed), "--embeddings"],
              lambda base: http("POST", base + "/v1/embeddings", json.dumps({"input": "hello"}).encode()))


def runtime_dirs(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.is_dir() and ".tmp." not in p.name and ".stale." not in p.name]


def static_check(runtime: Path, allow_gpu: bool) -> list[str]:
    problems = []
    for p in sorted(runtime.rglob("*")):
        if p.is_symlink() or not p.is_file():
            continue
        with open(p, "rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
        out = subprocess.run(["ldd", str(p)], capture_output=True, text=True,
                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                  "LD_LIBRARY_PATH": str(runtime / "_internal")}).stdout
        for line in out.splitlines():
            line = line.strip()
            if "not found" in line:
                problems.append(f"{p.relative_to(runtime)}: {line}")
            m = re.match(r"\S+ => (/\S+)", line) or re.match(r"(/\S+) \(0x", line)
            if m and classify(m.group(1), runtime, allow_gpu) == "NOT ALLOWED":
                problems.append(f"{p.relative_to(runtime)}: {line}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exe", type=Path)
    ap.add_argument("--models-cache", type=Path, default=None, help="prepared default models (default: ask the executable)")
    ap.add_argument("--allow-gpu", action="store_true", help="allow the GPU driver and Vulkan loader from the system")
    ap.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    args = ap.parse_args()
    exe = args.exe.resolve()
    with tempfile.TemporaryDirectory(prefix="chimera-audit-") as td:
        tmp = Path(td)
        (tmp / "runtime").mkdir()
        (tmp / "ld").mkdir()
        # a clean environment: no virtualenv, no Python variables, a fresh runtime directory
        env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", td), "LANG": "C.UTF-8",
               "CHIMERA_RUNTIME_DIR": str(tmp / "runtime")}
        models = args.models_cache or Path(subprocess.run([str(exe), "models", "path"], env=env, check=True,
                                                        capture_output=True, text=True).stdout.strip())
        env.update(LD_DEBUG="libs", LD_DEBUG_OUTPUT=str(tmp / "ld" / "ld"))
        exercise(exe, env, models, tmp)
        [runtime] = runtime_dirs(tmp / "runtime")
        loaded: dict[str, set[str]] = {}
        processes = 0
        for log in (tmp / "ld").iterdir():
            processes += 1
            for line in log.read_text(errors="replace").splitlines():
                m = re.search(r"calling init: (\S+)", line)
                if m:
                    loaded.setdefault(m.group(1), set()).add(log.name)
        report: dict[str, list[str]] = {}
        for path in sorted(loaded):
            report.setdefault(classify(path, runtime, args.allow_gpu), []).append(path)
        problems = [f"loaded at run time: {p}" for p in report.get("NOT ALLOWED", [])]
        static = static_check(runtime, args.allow_gpu)
        problems += [f"ldd: {p}" for p in static]
        bundle_files = sum(1 for p in runtime.rglob("*") if p.is_file())
        print(f"audit of {args.exe}: {processes} processes traced, {len(loaded)} libraries loaded, "
              f"{len(report.get('bundle', []))} from the bundle ({bundle_files} files unpacked)")
        for kind in sorted(report):
            if kind == "bundle":
                continue
            print(f"  {kind}: " + ", ".join(sorted({Path(p).name for p in report[kind]})))
        if args.json:
            args.json.write_text(json.dumps({"loaded": {k: [str(Path(p).relative_to(runtime)) if k == "bundle" else p
                                                             for p in v] for k, v in report.items()},
                                             "problems": problems}, indent=1))
        if problems:
            print("PROBLEMS:")
            for p in problems:
                print("  " + p)
            return 1
        print("ok: every library loaded comes from the bundle or is an allowed system library")
        shutil.rmtree(tmp / "ld", ignore_errors=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
