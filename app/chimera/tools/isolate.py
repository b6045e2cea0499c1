"""Tools run inside an isolate, every operation a command: a running container (`docker exec`,
`podman exec`) or a host over SSH. The far side needs a POSIX shell with cat, wc, mkdir, dirname,
find and timeout. Paths are POSIX paths there: a relative one joins the working directory.

SSH is remoting, not isolation: the tools can do whatever the target account can do. It runs
non-interactively (key-based auth and a host key already trusted), since nothing could answer a
prompt.
"""

from __future__ import annotations

import shlex
from abc import abstractmethod
from collections.abc import Callable

from .io import ToolIO
from .process import Run
from .walk import GIT_MAX_OUTPUT, JUNK_DIRS, Entry, Kind, Listing, depth

AUX_SECONDS = 15.0  # stat, read, write, list: the command's own timeout is the tool's
READ_MAX = 64 * 1024 * 1024
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
               "-o", "StrictHostKeyChecking=yes")


class IsolateIO(ToolIO):
    @abstractmethod
    def argv(self, inner: list[str], stdin: bool) -> list[str]:
        """The command on this machine that runs `inner` (a POSIX argv) in the isolate."""

    def resolve(self, path: str) -> str:
        if not self.cwd or path.startswith("/"):
            return path
        return self.cwd.rstrip("/") + "/" + path

    def _run(self, inner: list[str], *, max_output: int = 4096, join_stderr: bool = True, stdin: bytes | None = None) -> Run:
        return Run(self.argv(inner, stdin is not None), timeout=AUX_SECONDS, max_output=max_output,
                   join_stderr=join_stderr, stdin=stdin, stop=self.stop)

    async def _ok(self, inner: list[str]) -> bool:
        run = self._run(inner)
        await run.output()
        return run.exit_code == 0 and not run.timed_out

    async def is_dir(self, path: str) -> bool:
        return await self._ok(["sh", "-c", '[ -d "$1" ]', "_", self.resolve(path)])

    async def is_file(self, path: str) -> bool:
        return await self._ok(["sh", "-c", '[ -f "$1" ]', "_", self.resolve(path)])

    async def size(self, path: str) -> int | None:
        run = self._run(["sh", "-c", '[ -f "$1" ] && wc -c < "$1"', "_", self.resolve(path)], max_output=64)
        out = await run.text()
        if run.exit_code != 0 or run.timed_out:
            return None
        try:
            return int(out.strip())
        except ValueError:
            return None

    async def read(self, path: str) -> bytes | None:
        run = self._run(["cat", "--", self.resolve(path)], max_output=READ_MAX, join_stderr=False)
        data = await run.output()  # stderr stays out of the file's bytes
        return data if run.exit_code == 0 and not run.timed_out and not run.truncated else None

    async def write(self, path: str, data: bytes) -> bool:
        # the content goes on stdin: nothing for the far side to parse, no temporary file here
        run = self._run(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "_", self.resolve(path)], stdin=data)
        await run.output()
        return run.exit_code == 0 and not run.timed_out

    async def listing(self, base: str, max_depth: int, kind: Kind) -> Listing:
        if not await self.is_dir(base):
            return Listing(error="path does not exist or is not a directory")
        if kind == "files":
            run = self._run(["sh", "-c", 'cd "$1" && git ls-files -z --cached --others --exclude-standard', "_", base],
                            max_output=GIT_MAX_OUTPUT, join_stderr=False)
            out = await run.text()
            if run.exit_code == 0 and not run.timed_out and not run.truncated:
                rels = [r for r in out.split("\0") if r]
                return Listing([Entry(r) for r in rels if max_depth == 0 or depth(r) <= max_depth])
        listing = Listing()
        if kind != "files":
            listing.entries += [Entry(r, True) for r in await self._find(base, max_depth, True, listing)]
        if kind != "dirs":
            listing.entries += [Entry(r) for r in await self._find(base, max_depth, False, listing)]
        return listing

    async def _find(self, base: str, max_depth: int, dirs: bool, listing: Listing) -> list[str]:
        """One `find` pass: junk folders are listed (with dirs) but never entered; busybox's find does too."""
        prune = " -o ".join(f"-name {name}" for name in sorted(JUNK_DIRS))
        cmd = "cd \"$1\" && find . -mindepth 1" + (f" -maxdepth {max_depth}" if max_depth > 0 else "")
        cmd += f" \\( {prune} \\) -prune" + (" -print -o -type d -print" if dirs else " -o -type f -print")
        run = self._run(["sh", "-c", cmd, "_", base], max_output=GIT_MAX_OUTPUT)
        out = await run.text()
        listing.truncated |= run.timed_out or run.truncated
        return [line.removeprefix("./") for line in out.splitlines() if line.strip() and line != "."]

    def command(self, argv: list[str], *, timeout: float, max_output: int) -> Run:
        # `timeout` inside the isolate: ending the client here would not end the command there;
        # the client gets a few seconds more, so the inner timeout can end it cleanly first
        inner = ["timeout", f"{max(int(timeout), 1)}s", *argv]
        if self.cwd:  # no transport has a portable working-directory option: cd in the command
            inner = ["sh", "-c", 'cd "$1" || exit 127; shift; exec "$@"', "_", self.cwd, *inner]
        return Run(self.argv(inner, True), timeout=timeout + 5, max_output=max_output, stop=self.stop)


class ContainerIO(IsolateIO):
    """A running container, through `<engine> exec`."""

    def __init__(self, engine: str, container: str, cwd: str = "", stop: Callable[[], bool] | None = None) -> None:
        super().__init__(cwd, stop)
        self.engine, self.container = engine, container

    def argv(self, inner: list[str], stdin: bool) -> list[str]:
        return [self.engine, "exec", *(["-i"] if stdin else []), self.container, *inner]


class SshIO(IsolateIO):
    """A host over SSH; the remote shell parses the command line again, so it travels quoted."""

    def __init__(self, target: str, cwd: str = "", stop: Callable[[], bool] | None = None) -> None:
        super().__init__(cwd, stop)
        self.target = target

    def argv(self, inner: list[str], stdin: bool) -> list[str]:
        return ["ssh", *SSH_OPTIONS, *([] if stdin else ["-n"]), self.target, shlex.join(inner)]
