"""A child process whose output is read as it comes: stdout (and stderr, joined) up to a size cap,
under a deadline, in its own process group so a timeout or a stop ends the commands it started too.

    run = Run(["sh", "-c", "make"], timeout=10, max_output=16384)
    async with aclosing(run.chunks()) as chunks:   # or: await run.text(), await run.output()
        async for text in chunks: ...
    run.exit_code, run.timed_out, run.truncated, run.spawn_error

The output past the cap is read and dropped (a child blocked on a full pipe would never end). A
child that exits while something it started still holds the pipe open is not waited for: its
output gets a short grace, then the group is killed.
"""

from __future__ import annotations

import codecs
import os
import signal
import subprocess
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

import trio

POLL_SECONDS = 0.25  # how often a read looks at the child's state and the stop flag
EXIT_GRACE_SECONDS = 0.5  # output still read after the child exited (a grandchild may hold the pipe)
REAP_SECONDS = 5.0


def _kill_group(proc: trio.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.returncode is None:
        proc.kill()


async def reap(proc: trio.Process, grace: float = 0.0) -> None:
    """End `proc` and everything in its group (SIGTERM, `grace` seconds, then SIGKILL) and wait
    for it; runs even in a cancelled scope."""
    with trio.CancelScope(shield=True):
        if grace > 0 and proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                proc.terminate()
            with trio.move_on_after(grace):
                await proc.wait()
        _kill_group(proc)
        with trio.move_on_after(REAP_SECONDS):
            await proc.wait()


def exit_status(code: int | None) -> int:
    """A return code as a shell prints it: 128 + N for a child killed by signal N."""
    if code is None:
        return -1
    return 128 - code if code < 0 else code


class Run:
    """One command: iterate chunks() once, then read the outcome off the attributes."""

    def __init__(self, argv: list[str], *, timeout: float, max_output: int, cwd: str | None = None,
                 stdin: bytes | None = None, join_stderr: bool = True, env: dict[str, str] | None = None,
                 stop: Callable[[], bool] | None = None) -> None:
        self.argv, self.timeout, self.max_output, self.cwd = argv, timeout, max_output, cwd
        self.stdin, self.join_stderr, self.env, self.stop = stdin, join_stderr, env, stop
        self.exit_code = -1
        self.timed_out = False
        self.truncated = False
        self.stopped = False
        self.spawn_error: str | None = None
        self.output_bytes = 0

    async def data(self) -> AsyncGenerator[bytes, None]:
        """The output as it comes, up to max_output bytes."""
        try:
            proc = await trio.lowlevel.open_process(
                self.argv, stdin=subprocess.PIPE if self.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT if self.join_stderr else subprocess.DEVNULL,
                cwd=self.cwd or None, env=self.env, start_new_session=True)
        except OSError as e:
            self.spawn_error = f"failed to spawn process: {e.strerror or e}"
            return
        deadline = trio.current_time() + max(self.timeout, 0)
        eof = False
        try:
            if self.stdin is not None:
                assert proc.stdin is not None
                with trio.move_on_at(deadline):
                    try:
                        if self.stdin:
                            await proc.stdin.send_all(self.stdin)
                    except trio.BrokenResourceError:
                        pass  # the child did not read it all: its exit code says what happened
                    await proc.stdin.aclose()
            assert proc.stdout is not None
            exited_at: float | None = None
            while True:
                if self.stop is not None and self.stop():
                    self.stopped = True
                    break
                now = trio.current_time()
                if now >= deadline:
                    self.timed_out = True
                    break
                if proc.poll() is not None and exited_at is None:
                    exited_at = now
                if exited_at is not None and now >= exited_at + EXIT_GRACE_SECONDS:
                    break
                data: bytes | None = None
                with trio.move_on_after(min(POLL_SECONDS, deadline - now)):
                    data = bytes(await proc.stdout.receive_some(65536))
                if data is None:
                    continue
                if not data:
                    eof = True  # the child and everything it started closed the pipe
                    break
                room = self.max_output - self.output_bytes
                if room <= 0:
                    self.truncated = True
                    continue
                if len(data) > room:
                    data, self.truncated = data[:room], True
                self.output_bytes += len(data)
                yield data
        finally:
            try:
                if eof and proc.returncode is None and not (self.timed_out or self.stopped):
                    with trio.move_on_at(deadline):
                        await proc.wait()  # it closed its output but has not exited yet
                    self.timed_out = proc.returncode is None
            finally:
                # a timeout, a stop, or something of its group still holding the pipe: end the
                # group; after a clean end, what it started in the background and let go of runs on
                if proc.returncode is None or not eof:
                    await reap(proc)
                self.exit_code = exit_status(proc.returncode)

    async def chunks(self) -> AsyncGenerator[str, None]:
        """The output as UTF-8 text (invalid bytes replaced; a character split between reads is
        decoded whole)."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        async with aclosing(self.data()) as data:
            async for piece in data:
                text = decoder.decode(piece)
                if text:
                    yield text
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    async def output(self) -> bytes:
        """All of the output, as bytes."""
        async with aclosing(self.data()) as data:
            return b"".join([piece async for piece in data])

    async def text(self) -> str:
        """All of the output, as text."""
        async with aclosing(self.chunks()) as chunks:
            return "".join([part async for part in chunks])
