"""The command tools: exec_shell_command (runs anything the server's user may: `--tools` must name
it, or say all) and get_info (the OS and the working directory)."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from contextlib import aclosing

from .base import Bound, Context, Json, Params, Tool, function
from .io import tool_io

EXEC_MAX_OUTPUT = 16 * 1024
EXEC_MAX_SECONDS = 60
EXEC_DEFAULT_SECONDS = 10
INFO_SECONDS = 5


class ExecShellCommand(Tool):
    name, display_name, uses_cwd, write, streams = "exec_shell_command", "Execute shell command", True, True, True

    def definition(self) -> Json:
        return function(self.name, "Run a shell command; returns what it printed (stdout and stderr together) and its "
                        "exit code.", {
                            "command": {"type": "string", "description": "the command, for sh -c"},
                            "timeout": {"type": "integer", "description": f"seconds before it is killed (default "
                                                                           f"{EXEC_DEFAULT_SECONDS}, at most {EXEC_MAX_SECONDS})"},
                            "max_output_size": {"type": "integer", "description": f"most bytes of output returned "
                                                                                   f"(default and most {EXEC_MAX_OUTPUT})"},
                        }, ("command",))

    def bind(self, params: Json, ctx: Context) -> Bound:
        p = Params(params)
        command = p.text("command")
        seconds = min(max(p.integer("timeout", EXEC_DEFAULT_SECONDS), 0), EXEC_MAX_SECONDS)
        cap = min(max(p.integer("max_output_size", EXEC_MAX_OUTPUT), 0), EXEC_MAX_OUTPUT)
        io = tool_io(ctx)

        async def chunks() -> AsyncGenerator[str, None]:
            run = io.command(io.shell(command), timeout=seconds, max_output=cap)
            async with aclosing(run.chunks()) as output:
                async for text in output:
                    yield text
            if run.stopped:
                return
            tail = run.spawn_error or ""
            if run.truncated:
                tail += "\n[output truncated]"
            tail += f"\n[exit code: {run.exit_code}]"
            if run.timed_out:
                tail += " [exit due to timed out]"
            yield tail

        async def result() -> Json:
            async with aclosing(chunks()) as output:
                return {"plain_text_response": "".join([text async for text in output])}

        return Bound(result, chunks)


class GetInfo(Tool):
    name, display_name, uses_cwd = "get_info", "Get Runtime Info", True

    def definition(self) -> Json:
        return function(self.name, "The operating system (name and version) and the current working directory.", {})

    def bind(self, params: Json, ctx: Context) -> Bound:
        io = tool_io(ctx)

        async def output(argv: list[str]) -> str:
            run = io.command(argv, timeout=INFO_SECONDS, max_output=4096)
            text = (await run.text()).strip()
            return text if run.exit_code == 0 and not run.timed_out and not run.spawn_error else "unknown"

        async def result() -> Json:
            os_name = await output(["uname", "-a"])
            cwd = ctx.cwd or (os.getcwd() if not ctx.runtime else await output(["pwd"]))
            return {"os": os_name, "cwd": cwd}

        return Bound(result)
