"""Where a tool's files and commands live: the host (HostIO), or an isolate reached by commands
(isolate.py: a container, a host over SSH). Paths resolve against the call's working directory;
every blocking file operation runs in a worker thread.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import trio

from ..errors import ChimeraError
from .base import Context
from .flags import parse_runtime
from .process import Run
from .walk import GIT_MAX_OUTPUT, LIST_SECONDS, Kind, Listing, git_files, walk


class ToolIO(ABC):
    def __init__(self, cwd: str = "", stop: Callable[[], bool] | None = None) -> None:
        self.cwd = cwd
        self.stop = stop

    @abstractmethod
    def resolve(self, path: str) -> str:
        """`path` made absolute against the working directory."""

    @abstractmethod
    async def is_dir(self, path: str) -> bool: ...

    @abstractmethod
    async def is_file(self, path: str) -> bool: ...

    @abstractmethod
    async def size(self, path: str) -> int | None:
        """The size of a regular file; None when it is not one or cannot be read."""

    @abstractmethod
    async def read(self, path: str) -> bytes | None: ...

    @abstractmethod
    async def write(self, path: str, data: bytes) -> bool:
        """Create or replace the file, and the folders above it."""

    @abstractmethod
    async def listing(self, base: str, max_depth: int, kind: Kind) -> Listing:
        """Entries under `base` (already resolved); see walk.py."""

    @abstractmethod
    def command(self, argv: list[str], *, timeout: float, max_output: int) -> Run:
        """A command in the working directory, stdout and stderr joined."""

    def shell(self, command: str) -> list[str]:
        return ["sh", "-c", command]


class HostIO(ToolIO):
    """This machine, as the server's user."""

    def resolve(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            path = os.path.expanduser(path)
        if not os.path.isabs(path):
            path = os.path.join(self.cwd or os.getcwd(), path)
        return os.path.normpath(path)

    async def is_dir(self, path: str) -> bool:
        return await trio.to_thread.run_sync(os.path.isdir, self.resolve(path), abandon_on_cancel=True)

    async def is_file(self, path: str) -> bool:
        return await trio.to_thread.run_sync(os.path.isfile, self.resolve(path), abandon_on_cancel=True)

    async def size(self, path: str) -> int | None:
        def stat(p: str) -> int | None:
            try:
                return os.path.getsize(p) if os.path.isfile(p) else None
            except OSError:
                return None

        return await trio.to_thread.run_sync(stat, self.resolve(path), abandon_on_cancel=True)

    async def read(self, path: str) -> bytes | None:
        def read(p: str) -> bytes | None:
            try:
                return Path(p).read_bytes()
            except OSError:
                return None

        return await trio.to_thread.run_sync(read, self.resolve(path), abandon_on_cancel=True)

    async def write(self, path: str, data: bytes) -> bool:
        def write(p: Path) -> bool:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
                return True
            except OSError:
                return False

        return await trio.to_thread.run_sync(write, Path(self.resolve(path)))

    async def listing(self, base: str, max_depth: int, kind: Kind) -> Listing:
        if kind == "files" and await self.is_dir(base):  # git cannot list folders
            run = Run(["git", "-C", base, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                      timeout=LIST_SECONDS, max_output=GIT_MAX_OUTPUT, join_stderr=False, stop=self.stop)
            out = await run.text()
            if run.exit_code == 0 and not run.timed_out and not run.truncated:
                return Listing(await trio.to_thread.run_sync(git_files, base, out, max_depth, abandon_on_cancel=True))
        return await trio.to_thread.run_sync(walk, base, max_depth, kind, abandon_on_cancel=True)

    def command(self, argv: list[str], *, timeout: float, max_output: int) -> Run:
        return Run(argv, timeout=timeout, max_output=max_output, cwd=self.cwd or None, stop=self.stop)


def tool_io(ctx: Context) -> ToolIO:
    """The host, or the isolate the call's runtime names. A runtime that is not one, or that names
    an image rather than a running container, is an error: never a quiet fall back to the host."""
    try:
        runtime = parse_runtime(ctx.runtime)
    except ValueError as e:
        raise ChimeraError(str(e)) from None
    if runtime.kind == "host":
        return HostIO(ctx.cwd, ctx.stop)
    if runtime.kind == "spawn":
        raise ChimeraError(f"tool runtime must name a running container: {ctx.runtime}")
    from .isolate import ContainerIO, SshIO

    if runtime.kind == "container":
        return ContainerIO(runtime.engine, runtime.target, ctx.cwd, ctx.stop)
    return SshIO(runtime.target, ctx.cwd, ctx.stop)
