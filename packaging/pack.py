"""Wraps the one-folder build into the one file users run: launcher + payload + trailer.

    python packaging/pack.py build/onedir/chimera dist/chimera [--backend cpu]

The launcher (packaging/launcher/launcher.c, compiled here with zlib linked in statically) unpacks
the payload once into a runtime directory named after the payload's SHA-256 and exec()s the program
inside it on every run (see the launcher's header comment for the format and the checks).

The payload is deterministic: entries in sorted order, no timestamps or owners, modes normalized to
0755/0644, a fixed zlib level; the same folder always gives the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAGIC = b"CHIMERA-LAUNCH-1"
MANIFEST = ".chimera-runtime/manifest"
LEVEL = 6


def build_launcher(out: Path) -> Path:
    cc = os.environ.get("CC", "cc")
    src = HERE / "launcher" / "launcher.c"
    base = [cc, "-O2", "-Wall", "-Wextra", "-Wno-format-truncation", "-o", str(out), str(src)]
    for libs in (["-l:libz.a"], ["-lz"]):  # zlib linked in statically where the static library exists
        if subprocess.run(base + libs, capture_output=True).returncode == 0:
            break
    else:
        subprocess.run(base + ["-lz"], check=True)
    subprocess.run(["strip", "--strip-all", str(out)], check=False)
    return out


def entries(root: Path) -> list[tuple[str, Path]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            out.append((p.relative_to(root).as_posix(), p))
    return sorted(out)


def file_mode(p: Path) -> int:
    return 0o755 if os.stat(p).st_mode & stat.S_IXUSR else 0o644


def write_payload(root: Path, out, entry: str) -> tuple[int, str]:
    """Writes the compressed payload to `out`; returns (size, sha256 hex)."""
    z = zlib.compressobj(LEVEL, zlib.DEFLATED, 15, 9)
    sha = hashlib.sha256()
    size = 0

    def emit(data: bytes) -> None:
        nonlocal size
        c = z.compress(data)
        if c:
            out.write(c)
            sha.update(c)
            size += len(c)

    def header(kind: bytes, path: str, mode: int, n: int) -> None:
        raw = path.encode()
        emit(kind + struct.pack("<H", len(raw)) + raw + struct.pack("<IQ", mode, n))

    manifest = []
    emit(b"CHPK1\n")
    for rel, p in entries(root):
        if p.is_symlink():
            target = os.readlink(p).encode()
            header(b"l", rel, 0o777, len(target))
            emit(target)
        elif p.is_dir():
            header(b"d", rel, 0o755, 0)
        else:
            data = p.read_bytes()
            header(b"f", rel, file_mode(p), len(data))
            emit(data)
            manifest.append(f"{hashlib.sha256(data).hexdigest()} {len(data)} {rel}\n")
    if not (root / entry).is_file():
        raise SystemExit(f"{root / entry} is missing")
    mdata = "".join(manifest).encode()
    header(b"d", ".chimera-runtime", 0o755, 0)
    header(b"f", MANIFEST, 0o644, len(mdata))
    emit(mdata)
    emit(b"e")
    tail = z.flush()
    out.write(tail)
    sha.update(tail)
    size += len(tail)
    return size, sha.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onedir", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--entry", default="chimera", help="the program inside the folder")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parent / "app"))
    from chimera import __version__

    args.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        launcher = build_launcher(Path(td) / "launcher")
        tmp = args.output.with_name(args.output.name + ".tmp")
        with open(tmp, "wb") as out:
            out.write(launcher.read_bytes())
            offset = out.tell()
            size, sha = write_payload(args.onedir, out, args.entry)
            name = f"{__version__}-{args.backend}-{sha[:16]}".encode()
            trailer = MAGIC + struct.pack("<QQ", offset, size) + sha.encode()
            trailer += name.ljust(96, b"\0") + args.entry.encode().ljust(64, b"\0")
            assert len(trailer) == 256
            out.write(trailer)
        os.chmod(tmp, 0o755)
        shutil.move(tmp, args.output)
    print(f"{args.output}: {args.output.stat().st_size / 1e6:.1f} MB, payload sha256 {sha}, runtime {name.decode()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
