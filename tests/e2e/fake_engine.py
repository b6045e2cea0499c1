"""A stand-in for `docker` / `podman` in the tools tests: it logs each command line (one JSON
array a line to $FAKE_ENGINE_LOG) and runs what a container would run, on this machine.

    exec [-i] ID CMD...                            runs CMD (stdin only with -i)
    run --rm -i --cidfile FILE IMAGE sh            writes an id to FILE, then holds until stdin ends
"""

from __future__ import annotations

import json
import os
import sys

CONTAINER_ID = "fakecid0123456789"


def log(entry: list[str]) -> None:
    with open(os.environ["FAKE_ENGINE_LOG"], "a") as f:
        f.write(json.dumps(entry) + "\n")


def main() -> None:
    argv = sys.argv[1:]
    log(argv)
    if argv[:1] == ["exec"]:
        rest = argv[1:]
        interactive = rest[:1] == ["-i"]
        rest = rest[1:] if interactive else rest
        cmd = rest[1:]
        if not interactive:
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
        os.execvp(cmd[0], cmd)
    if argv[:1] == ["run"]:
        cidfile = argv[argv.index("--cidfile") + 1]
        with open(cidfile, "w") as f:
            f.write(CONTAINER_ID + "\n")
        sys.stdin.buffer.read()  # the container's shell runs until its stdin closes
        log(["removed", CONTAINER_ID])
        return
    sys.exit(f"fake engine: cannot {argv[:1]}")


if __name__ == "__main__":
    main()
