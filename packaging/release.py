"""Builds the release archive of the one-file executable for this platform.

    python packaging/release.py [--backend cpu]      (after `make binary`; `make release` runs both)

→ dist/chimera-<version>-<os>-<arch>[-<backend>].tar.gz (+ .sha256 beside it), holding:

    chimera-<version>-<os>-<arch>/
        chimera            the executable (dist/chimera)
        README.txt         what it is, how to run it, where it unpacks itself
        LICENSES/          the license texts of every bundled component, and INDEX.txt
        SHA256SUMS         SHA-256 of every other file in the folder

Which components are bundled is read from PyInstaller's own record of what it collected
(build/pyinstaller/chimera/Analysis-00.toc): each collected file is traced to its origin, a Python
distribution (license files from its .dist-info), the Python installation (its LICENSE), or a
system package (its copyright file, found with `dpkg -S`). The native engines' texts come from
their source archives in the wheel cache (~/.cache/chimera/sdist/). The archive is deterministic:
sorted entries, fixed owner, modes and timestamps (SOURCE_DATE_EPOCH, else the commit's time), and
gzip without a timestamp.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path
from typing import Iterable

REPO = Path(__file__).resolve().parents[1]
TOC = REPO / "build" / "pyinstaller" / "chimera" / "Analysis-00.toc"
CACHE = Path(os.environ.get("CHIMERA_CACHE", Path.home() / ".cache" / "chimera"))
LICENSE_NAME = re.compile(r"(^|/)(LICEN[CS]E|COPYING|NOTICE|AUTHORS|COPYRIGHT)[^/]*$", re.I)

README = """\
chimera {version} ({platform}, {backend})
{underline}

A download-and-run local AI server: an OpenAI- and Anthropic-compatible HTTP API on your own
machine, over llama.cpp, whisper.cpp and stable-diffusion.cpp. One file; nothing else to install.

    ./chimera serve                      # the default model (prepared on first use), on 127.0.0.1:8080
    ./chimera serve -m model.gguf        # your own GGUF model
    ./chimera serve --help               # every flag
    ./chimera --version

Then point any OpenAI client at http://127.0.0.1:8080/v1 .

First start: the executable unpacks itself once (about 290 MB, a second or two) into
~/.cache/chimera/runtime/<version>-<checksum>/ and starts from there on every later run. Set
CHIMERA_RUNTIME_DIR to put it elsewhere; delete old folders there after upgrading.
CHIMERA_RUNTIME_VERIFY=1 checks every unpacked file's SHA-256 before starting.

Requirements: Linux on x86-64 with glibc {glibc} or newer; any x86-64 CPU with SSE4.2 (2008 or
later; llama.cpp picks the fastest kernels for your CPU at run time; speech-to-text and image
generation need AVX2). {gpu}

Check the download: sha256sum -c SHA256SUMS
Licenses of chimera and of every bundled component: LICENSES/ (start with LICENSES/INDEX.txt).
"""

GPU_NOTE = {
    "cpu": "No GPU library is needed or used.",
    "cuda": "This build uses NVIDIA GPUs through CUDA: it needs the NVIDIA driver (libcuda.so.1); "
            "the CUDA runtime libraries are bundled. Without a GPU it runs on the CPU.",
    "vulkan": "This build uses GPUs through Vulkan: it needs the system's Vulkan loader "
              "(libvulkan.so.1) and a Vulkan driver. Without them it runs on the CPU.",
}

MIT = """MIT License

Copyright (c) the chimera authors

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""

SQLITE = """SQLite is in the public domain (https://sqlite.org/copyright.html). It is bundled twice:
compiled into apsw's extension module (the database chimera uses) and as libsqlite3 for Python's
sqlite3 module. "The author disclaims copyright to this source code. In place of a legal notice,
here is a blessing: May you do good and not evil. May you find forgiveness for yourself and forgive
others. May you share freely, never taking more than you give."
"""

# Native engine texts from the source archives the wheels were built from (native/versions.env).
SDIST_LICENSES = {
    "llama_cpp_python-*.tar.gz": [
        ("*/LICENSE.md", "llama-cpp-python.LICENSE.md"),
        ("*/vendor/llama.cpp/LICENSE", "llama.cpp.LICENSE"),
        ("*/vendor/llama.cpp/ggml/LICENSE", "llama.cpp-ggml.LICENSE"),
        ("*/vendor/llama.cpp/licenses/*", "llama.cpp-third-party/"),
        ("*/vendor/llama.cpp/vendor/*/LICENSE*", "llama.cpp-third-party/"),
        ("*/vendor/llama.cpp/vendor/*/*/LICENSE*", "llama.cpp-third-party/"),
    ],
    "stable_diffusion_cpp_python-*.tar.gz": [
        ("*/LICENSE", "stable-diffusion-cpp-python.LICENSE"),
        ("*/vendor/stable-diffusion.cpp/LICENSE", "stable-diffusion.cpp.LICENSE"),
        ("*/vendor/stable-diffusion.cpp/ggml/LICENSE", "stable-diffusion.cpp-ggml.LICENSE"),
        ("*/vendor/stable-diffusion.cpp/thirdparty/LICENSE*", "stable-diffusion.cpp-third-party/"),
        ("*/vendor/stable-diffusion.cpp/thirdparty/*/LICENSE*", "stable-diffusion.cpp-third-party/"),
        ("*/vendor/stable-diffusion.cpp/thirdparty/*/COPYING*", "stable-diffusion.cpp-third-party/"),
    ],
    "pywhispercpp-*.tar.gz": [
        ("*/whisper.cpp/LICENSE", "whisper.cpp.LICENSE"),
        ("*/whisper.cpp/ggml/LICENSE", "whisper.cpp-ggml.LICENSE"),
    ],
}


def toc_sources() -> list[tuple[str, str, str]]:
    """(dest, source path, typecode) of everything PyInstaller collected."""
    import ast

    if not TOC.exists():
        raise SystemExit(f"{TOC} is missing: run `make binary` first")
    out = []

    def walk(x: object) -> None:
        if isinstance(x, tuple) and len(x) == 3 and all(isinstance(v, str) for v in x) and \
                x[2] in ("PYMODULE", "EXTENSION", "BINARY", "DATA", "PYSOURCE"):
            out.append(x)  # type: ignore[arg-type]
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(ast.literal_eval(TOC.read_text()))
    return out


def file_owners() -> dict[str, importlib.metadata.Distribution]:
    owners = {}
    for dist in importlib.metadata.distributions():
        for f in dist.files or []:
            owners[str(Path(dist.locate_file(f)).resolve())] = dist
    return owners


def dpkg_package(path: str) -> str | None:
    for p in dict.fromkeys([path, os.path.realpath(path), path.replace("/usr/lib/", "/lib/"),
                            os.path.realpath(path).replace("/usr/lib/", "/lib/")]):
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout:
            return r.stdout.split(":", 1)[0].strip()
    return None


def dist_license_files(dist: importlib.metadata.Distribution) -> list[tuple[str, bytes]]:
    found = []
    for f in dist.files or []:
        s = str(f)
        if ".dist-info/" in s and (LICENSE_NAME.search(s) or "/licenses/" in s) and not s.endswith((".pyc", ".py")):
            p = Path(dist.locate_file(f))
            if p.is_file():
                found.append((s.split(".dist-info/", 1)[1], p.read_bytes()))
    return found


def sdist_texts(lic: Path) -> list[str]:
    import fnmatch

    notes = []
    if not list((CACHE / "sdist").glob("pywhispercpp-*.tar.gz")):
        # whisper.cpp's texts: the binding's wheel carries only its own; fetch its source archive
        # once (the exact file chimera's model preparation uses, checked against its SHA-256)
        from chimera.models import WHISPER_HEADER, _fetch

        try:
            _fetch(WHISPER_HEADER, CACHE / "sdist")
        except Exception as e:  # noqa: BLE001 - reported in INDEX.txt
            notes.append(f"{WHISPER_HEADER.filename}: could not be fetched ({e})")
    for pattern, rules in SDIST_LICENSES.items():
        archives = sorted((CACHE / "sdist").glob(pattern))
        if not archives:
            notes.append(f"{pattern}: source archive not in {CACHE / 'sdist'}; texts not copied")
            continue
        with tarfile.open(archives[-1]) as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            for glob, target in rules:
                for m in members:
                    if fnmatch.fnmatch(m.name, glob):
                        data = tar.extractfile(m).read()  # type: ignore[union-attr]
                        dest = lic / "engines" / (target + m.name.split("/vendor/")[-1].replace("/", "_")
                                                  if target.endswith("/") else target)
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(data)
        notes.append(f"{archives[-1].name}: license texts copied to engines/")
    return notes


def collect_licenses(lic: Path, backend: str) -> list[str]:
    index: list[str] = []
    owners = file_owners()
    dists: dict[str, importlib.metadata.Distribution] = {}
    debs: dict[str, set[str]] = {}
    python_files = 0
    base = Path(sys.base_prefix).resolve()
    onedir = REPO / "build" / "onedir" / "chimera" / "_internal"
    for dest, src, typecode in toc_sources():
        if typecode in ("BINARY", "EXTENSION", "DATA") and not os.path.lexists(onedir / dest):
            continue  # dropped by chimera.spec after the analysis (e.g. system-only libraries)
        real = str(Path(src).resolve()) if os.path.exists(src) else src
        if real in owners:
            d = owners[real]
            dists[d.metadata["Name"]] = d
        elif Path(real).is_relative_to(base):
            python_files += 1
        elif real.startswith(("/usr/", "/lib")):
            pkg = dpkg_package(src)
            debs.setdefault(pkg or "(unknown package)", set()).add(Path(dest).name)
        elif Path(real).is_relative_to(REPO):
            pass  # chimera's own files and packaging/
    (lic / "chimera.LICENSE").write_text(MIT)
    index.append("chimera                          MIT                      chimera.LICENSE")
    # Python itself
    py_lic = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    if py_lic.exists():
        shutil.copy(py_lic, lic / "Python.LICENSE.txt")
        index.append(f"Python {platform.python_version():<25} PSF-2.0 (and others)     Python.LICENSE.txt "
                     f"({python_files} files: the interpreter and its standard library)")
    # Python distributions
    for name in sorted(dists, key=str.lower):
        d = dists[name]
        files = dist_license_files(d)
        meta = d.metadata.get("License-Expression") or d.metadata.get("License") or ""
        meta = meta.splitlines()[0][:60] if meta else ""
        if not meta:
            meta = "; ".join(c.split(" :: ")[-1] for c in d.metadata.get_all("Classifier") or [] if c.startswith("License"))
        folder = lic / "python" / f"{name}-{d.version}"
        for rel, data in files:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        if not files:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "LICENSE-METADATA.txt").write_text(f"{name} {d.version}: no license file in the distribution; "
                                                         f"its metadata says: {meta or 'nothing'}\n")
        index.append(f"{name + ' ' + d.version:<32} {meta[:24]:<24} python/{name}-{d.version}/")
    # libraries from the build machine's system (Debian packages)
    for pkg in sorted(debs):
        folder = lic / "system" / pkg
        folder.mkdir(parents=True, exist_ok=True)
        copyright_ = Path("/usr/share/doc") / pkg.split(":")[0] / "copyright"
        if copyright_.exists():
            shutil.copy(copyright_, folder / "copyright")
        index.append(f"{pkg:<32} {'see copyright':<24} system/{pkg}/ ({', '.join(sorted(debs[pkg]))})")
    # the native engines, from their sources
    notes = sdist_texts(lic)
    index.append("llama.cpp, ggml, whisper.cpp, stable-diffusion.cpp and their vendored code: engines/")
    index.extend("  " + n for n in notes)
    (lic / "SQLite.txt").write_text(SQLITE)
    index.append("SQLite                           public domain            SQLite.txt")
    return index


def deterministic_tar(src: Path, out: Path, mtime: int) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(p: Path) -> None:
            info = tar.gettarinfo(str(p), arcname=str(p.relative_to(src.parent)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = mtime
            info.mode = 0o755 if (p.is_dir() or os.access(p, os.X_OK)) else 0o644
            if p.is_file():
                with open(p, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
        add(src)
        for p in sorted(src.rglob("*")):
            add(p)
    with open(out, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as gz:
        gz.write(buf.getvalue())


def sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def glibc_floor(files: Iterable[Path]) -> str:
    """Highest GLIBC_x.y symbol version any bundled ELF file needs."""
    best = (2, 0)
    for p in files:
        try:
            with open(p, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        if not data.startswith(b"\x7fELF"):
            continue
        for m in re.finditer(rb"GLIBC_(\d+)\.(\d+)", data):
            best = max(best, (int(m.group(1)), int(m.group(2))))
    return f"{best[0]}.{best[1]}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--exe", type=Path, default=REPO / "dist" / "chimera")
    ap.add_argument("--out-dir", type=Path, default=REPO / "dist")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "app"))
    from chimera import __version__

    system = platform.system().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
    name = f"chimera-{__version__}-{system}-{machine}" + ("" if args.backend == "cpu" else f"-{args.backend}")
    epoch = os.environ.get("SOURCE_DATE_EPOCH") or subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True).stdout.strip() or "315532800"
    stage = REPO / "build" / "release" / name
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "LICENSES").mkdir(parents=True)
    shutil.copy(args.exe, stage / "chimera")
    os.chmod(stage / "chimera", 0o755)
    index = collect_licenses(stage / "LICENSES", args.backend)
    (stage / "LICENSES" / "INDEX.txt").write_text(
        "Components bundled in the chimera executable, and where their license texts are.\n"
        "Origin of each file: PyInstaller's record of what it collected.\n\n" + "\n".join(index) + "\n")
    onedir = REPO / "build" / "onedir" / "chimera"
    glibc = glibc_floor(p for p in onedir.rglob("*") if p.is_file() and not p.is_symlink())
    title = f"chimera {__version__} ({system}-{machine}, {args.backend})"
    (stage / "README.txt").write_text(README.format(version=__version__, platform=f"{system}-{machine}",
                                                    backend=args.backend, underline="=" * len(title),
                                                    glibc=glibc, gpu=GPU_NOTE.get(args.backend, "")))
    files = sorted(p for p in stage.rglob("*") if p.is_file())
    (stage / "SHA256SUMS").write_text("".join(f"{sha256(p)}  {p.relative_to(stage)}\n" for p in files))
    out = args.out_dir / f"{name}.tar.gz"
    deterministic_tar(stage, out, int(epoch))
    digest = sha256(out)
    (args.out_dir / f"{name}.tar.gz.sha256").write_text(f"{digest}  {out.name}\n")
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB, sha256 {digest}")
    print(f"  {len(files)} files, {len(index)} license entries, needs glibc {glibc}+")
    return 0


if __name__ == "__main__":
    sys.exit(main())
