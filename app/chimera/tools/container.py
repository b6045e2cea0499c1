"""`--tools-runtime docker:<image>` (or podman): a container this server starts for its tools, keeps
(started again if it dies), and removes when the server exits.

The container runs `sh` reading its stdin, kept open by `<engine> run --rm -i`: closing that stdin
ends the shell, and `--rm` removes the container. Tools reach it with `<engine> exec`, as the
`<engine>-container:<id>` runtime.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from pathlib import Path

import trio

from ..errors import ChimeraError
from .flags import Runtime
from .process import reap

log = logging.getLogger("chimera.tools")

START_SECONDS = 10.0  # for the engine to write the container's id
STOP_SECONDS = 10.0  # for the engine to stop and remove it at exit


class ContainerRuntime:
    def __init__(self, runtime: Runtime) -> None:
        self.engine, self.image = runtime.engine, runtime.target
        self.container = ""
        self._proc: trio.Process | None = None
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the container (an error if it cannot start), then hold it until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self._hold)
            task_status.started()
            await trio.sleep_forever()

    async def spec(self) -> str:
        """`<engine>-container:<id>` of a running container, started again if it died."""
        async with self._lock:
            if self._proc is None or self._proc.returncode is not None:
                if self._nursery is None:
                    raise ChimeraError(f"the {self.engine} tools runtime is not running")
                log.warning("%s tools runtime container %s died: starting another", self.engine, self.container)
                await self._nursery.start(self._hold)
        return f"{self.engine}-container:{self.container}"

    async def _hold(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with tempfile.TemporaryDirectory(prefix="chimera-tools-") as tmp:
            cidfile = Path(tmp) / "cid"
            argv = [self.engine, "run", "--rm", "-i", "--cidfile", str(cidfile), self.image, "sh"]
            try:
                proc = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                                        stderr=subprocess.DEVNULL, start_new_session=True)
            except OSError as e:
                raise ChimeraError(f"failed to spawn {self.engine} container for tools runtime (image: {self.image}): "
                                   f"{e.strerror or e}") from None
            try:
                cid = ""
                with trio.move_on_after(START_SECONDS):
                    while not cid and proc.returncode is None:
                        await trio.sleep(0.1)
                        cid = await trio.to_thread.run_sync(_read, cidfile)
                if not cid:
                    raise ChimeraError(f"timed out waiting for {self.engine} container to start (image: {self.image})")
                self._proc, self.container = proc, cid
                log.info("tools run in %s container %s (image %s)", self.engine, cid[:12], self.image)
                task_status.started()
                await proc.wait()
            finally:
                with trio.CancelScope(shield=True):
                    if proc.stdin is not None:
                        await proc.stdin.aclose()  # the shell ends, --rm removes the container
                    with trio.move_on_after(STOP_SECONDS):
                        await proc.wait()
                await reap(proc)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip() if os.path.exists(path) else ""
    except OSError:
        return ""
