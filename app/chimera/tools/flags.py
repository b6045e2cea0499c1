"""What the tool flags say, checked and parsed: `--tools` names, runtimes (`--tools-runtime`, the
`x-tool-runtime` header) and the MCP server definitions (`--mcp-servers-json`,
`--mcp-servers-config`, Cursor's `{"mcpServers": {...}}` format). Plain values; nothing runs here.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("chimera.tools")

# llama-server's built-in tools, in its order; "all" enables every one
BUILTIN_TOOLS = ("read_file", "file_glob_search", "grep_search", "exec_shell_command", "write_file", "edit_file", "get_info")
ENGINES = ("docker", "podman")
DEFAULT_MCP_TIMEOUT_MS = 30000


def enabled_tools(names: tuple[str, ...]) -> tuple[str, ...]:
    """--tools' names → the built-in tools they enable, in llama-server's order; ValueError names an unknown one."""
    for name in names:
        if name != "all" and name not in BUILTIN_TOOLS:
            raise ValueError(f'unknown tool "{name}". available tools: {", ".join(BUILTIN_TOOLS)}')
    return BUILTIN_TOOLS if "all" in names else tuple(n for n in BUILTIN_TOOLS if n in names)


_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SSH_TARGET = re.compile(r"[A-Za-z0-9._@][A-Za-z0-9._@-]*")


@dataclass(frozen=True)
class Runtime:
    """Where tools run: the host, a running container (`docker-container:<id>`), a container this
    server starts (`docker:<image>`, --tools-runtime only) or a host over SSH (`ssh:<target>`)."""

    kind: Literal["host", "container", "spawn", "ssh"] = "host"
    engine: str = ""  # docker | podman
    target: str = ""  # container id, image, or ssh target

    @property
    def spec(self) -> str:
        if self.kind == "container":
            return f"{self.engine}-container:{self.target}"
        if self.kind == "spawn":
            return f"{self.engine}:{self.target}"
        return f"ssh:{self.target}" if self.kind == "ssh" else ""


def parse_runtime(spec: str) -> Runtime:
    """A runtime spec → Runtime; ValueError says what is wrong (with llama-server's words). An id or
    a target that could pass for an option of `docker exec` or `ssh` is refused."""
    if not spec:
        return Runtime()
    for engine in ENGINES:
        if spec.startswith(f"{engine}-container:"):
            cid = spec[len(engine) + len("-container:"):]
            if not _CONTAINER_ID.fullmatch(cid):
                raise ValueError(f"invalid container id: {cid}")
            return Runtime("container", engine, cid)
        if spec.startswith(f"{engine}:"):
            image = spec[len(engine) + 1:]
            if not image:
                raise ValueError(f"--tools-runtime {engine}:<image> requires an image name")
            return Runtime("spawn", engine, image)
    if spec.startswith("ssh:"):
        target = spec[4:]
        if not _SSH_TARGET.fullmatch(target):
            raise ValueError(f"invalid ssh target: {target}")
        return Runtime("ssh", target=target)
    raise ValueError(f"unknown tool runtime: {spec}")


@dataclass(frozen=True)
class McpServerConfig:
    """One entry of `mcpServers`: a command speaking MCP on its stdin/stdout."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # merged over the server's environment
    cwd: str | None = None
    timeout_ms: int = DEFAULT_MCP_TIMEOUT_MS  # per request (a tool call, the handshake, the listing)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: expected an array of strings")
    return tuple(value)


def parse_mcp_servers(text: str) -> list[McpServerConfig]:
    """Cursor's format → the servers, in their order. ValueError on JSON that does not parse or on
    values of the wrong type; no `mcpServers` gives none, and an entry without a command is skipped
    (each with a warning)."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError(f"failed to parse MCP config JSON: {e}") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        log.warning("MCP config: no servers found in JSON")
        return []
    out = []
    for name, entry in servers.items():
        if not isinstance(entry, dict):
            raise ValueError(f"failed to parse MCP config JSON: mcpServers.{name}: expected an object")
        command = entry.get("command", "")
        if not isinstance(command, str):
            raise ValueError(f"failed to parse MCP config JSON: mcpServers.{name}.command: expected a string")
        if not command:
            log.warning("MCP server %r has no command, skipping", name)
            continue
        env = entry.get("env", {})
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ValueError(f"failed to parse MCP config JSON: mcpServers.{name}.env: expected an object of strings")
        cwd = entry.get("cwd") or None
        timeout = entry.get("timeout_ms", DEFAULT_MCP_TIMEOUT_MS)
        if cwd is not None and not isinstance(cwd, str):
            raise ValueError(f"failed to parse MCP config JSON: mcpServers.{name}.cwd: expected a string")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
            raise ValueError(f"failed to parse MCP config JSON: mcpServers.{name}.timeout_ms: expected a positive integer")
        try:
            args = _strings(entry.get("args", []), f"mcpServers.{name}.args")
        except ValueError as e:
            raise ValueError(f"failed to parse MCP config JSON: {e}") from None
        out.append(McpServerConfig(name, command, args, tuple(env.items()), cwd, timeout))
    return out


def load_mcp_servers(config_file: Path | None, inline: str | None) -> list[McpServerConfig]:
    """The servers of --mcp-servers-config then --mcp-servers-json; a name given twice keeps its
    first definition. ValueError names the flag. Reads a file: call it off the trio thread."""
    found: dict[str, McpServerConfig] = {}
    sources: list[tuple[str, str]] = []
    if config_file is not None:
        try:
            sources.append(("--mcp-servers-config", config_file.read_text()))
        except OSError as e:
            raise ValueError(f"--mcp-servers-config: failed to open MCP config file: {config_file} ({e.strerror})") from None
    if inline:
        sources.append(("--mcp-servers-json", inline))
    for flag, text in sources:
        try:
            servers = parse_mcp_servers(text)
        except ValueError as e:
            raise ValueError(f"{flag}: {e}") from None
        for server in servers:
            if server.name in found:
                log.warning("MCP config: duplicate server name %r, skipping", server.name)
                continue
            found[server.name] = server
    return list(found.values())
