"""MCP servers (`--mcp-servers-json`, `--mcp-servers-config`) behind GET/POST /tools, against a real
server and the stdio stub mcp_stub.py: the listing, calls, a server that crashes (respawned), one
that is slow (a timeout), noisy output, servers that cannot start, a name that collides with a
built-in tool, and a shutdown that does not wait for a tool in flight."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from conftest import Server, module_server

STUB = str(Path(__file__).resolve().parent / "mcp_stub.py")


def stub(*flags: str, **extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [STUB, *flags], **extra}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp-cwd")


@pytest.fixture(scope="module")
def server(tiny_models: Path, workdir: Path) -> Iterator[Server]:
    servers = {
        "stub": stub("--page", env={"STUB_SECRET": "s3cret"}, cwd=str(workdir)),
        "slow": stub(timeout_ms=2000),
        "noisy": stub("--noisy"),
        "missing": {"command": "this_command_does_not_exist_4711"},
        "dead": stub("--exit-at-start"),
        "read": stub("--extra=file"),  # read_file collides with the built-in tool
        "nocommand": {"args": ["x"]},
    }
    yield from module_server("--models-dir", str(tiny_models), "--tools", "read_file",
                             "--mcp-servers-json", json.dumps({"mcpServers": servers}))


def call(s: Server, tool: str, params: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(s.base + "/tools", json={"tool": tool, "params": params or {}}, timeout=60)


def result(s: Server, tool: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    r = call(s, tool, params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def listing(s: Server) -> dict[str, dict[str, Any]]:
    r = httpx.get(s.base + "/tools", timeout=30)
    assert r.status_code == 200, r.text
    return {t["tool"]: t for t in r.json()}


def test_listing(server: Server) -> None:
    tools = listing(server)
    stub_tools = ["echo", "add", "sleep", "fail", "crash", "env", "cwd", "pid"]  # two pages of tools/list
    assert [n for n in tools if n.startswith("stub_")] == [f"stub_{t}" for t in stub_tools]
    assert {n for n in tools if n.startswith("slow_")} == {f"slow_{t}" for t in stub_tools}
    assert not [n for n in tools if n.startswith(("missing_", "dead_", "nocommand_"))]
    echo = tools["stub_echo"]
    assert echo["type"] == "mcp" and echo["display_name"] == "stub_echo" and echo["permissions"] == {"write": False}
    assert echo["definition"] == {"type": "function", "function": {
        "name": "stub_echo", "description": "Echo the message",
        "parameters": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}}}
    assert tools["stub_cwd"]["definition"]["function"]["parameters"] == {"type": "object", "properties": {}}  # no inputSchema
    # the MCP server "read" has a tool "file": its name is the built-in read_file's, which wins
    assert tools["read_file"]["type"] == "server" and "read_echo" in tools


def test_calls(server: Server, workdir: Path) -> None:
    assert result(server, "stub_echo", {"message": "hello world"}) == {"plain_text_response": "echo: hello world"}
    assert result(server, "stub_add", {"a": 3, "b": 5}) == {"plain_text_response": "8"}
    assert result(server, "stub_fail") == {"error": "it went wrong"}  # isError
    assert result(server, "stub_env", {"name": "STUB_SECRET"}) == {"plain_text_response": "s3cret"}
    assert result(server, "stub_env", {"name": "PATH"})["plain_text_response"]  # env is added to the server's
    assert result(server, "stub_cwd") == {"plain_text_response": str(workdir)}
    # an MCP tool's params go to it as they are, cwd included
    assert result(server, "stub_echo", {"message": "m", "cwd": "/x"}) == {"plain_text_response": "echo: m"}


def test_concurrent_calls_get_their_own_replies(server: Server) -> None:
    out: dict[int, dict[str, Any]] = {}

    def one(i: int) -> None:
        out[i] = result(server, "stub_echo", {"message": f"m{i}"})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == {i: {"plain_text_response": f"echo: m{i}"} for i in range(12)}


def test_noisy_output_is_skipped(server: Server) -> None:
    for i in range(5):  # notifications, garbage lines and a ping request arrive with each reply
        assert result(server, "noisy_echo", {"message": str(i)}) == {"plain_text_response": f"echo: {i}"}


def test_a_crashed_server_is_started_again(server: Server) -> None:
    pid = result(server, "stub_pid")["plain_text_response"]
    assert result(server, "stub_crash") == {"plain_text_response": "crashing"}
    time.sleep(1)
    assert not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
    assert result(server, "stub_echo", {"message": "again"}) == {"plain_text_response": "echo: again"}
    assert result(server, "stub_pid")["plain_text_response"] != pid


def test_a_slow_call_times_out_and_the_server_goes_on(server: Server) -> None:
    start = time.monotonic()
    assert result(server, "slow_sleep", {"seconds": 3}) == {"error": "request timed out"}
    assert time.monotonic() - start < 3
    # the stub answers the echo after the sleep's late reply: that one is skipped, not taken for this call's
    assert result(server, "slow_echo", {"message": "after"}) == {"plain_text_response": "echo: after"}


def test_errors_from_the_server(server: Server) -> None:
    r = call(server, "missing_echo")
    assert r.status_code == 404 and 'unknown tool "missing_echo"' in r.json()["error"]["message"]
    assert httpx.get(server.base + "/health").status_code == 200


def test_config_file_and_environment(start_server: type[Server], tiny_models: Path, tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"file": stub()}}))
    env = {"LLAMA_ARG_MCP_SERVERS_JSON": json.dumps({"mcpServers": {"file": stub("--noisy"), "env": stub()}})}
    s = start_server("--models-dir", str(tiny_models), "--mcp-servers-config", str(config), env=env).wait_ready()
    tools = listing(s)
    assert {"file_echo", "env_echo"} <= set(tools)
    assert not [t for t in tools.values() if t["type"] == "server"]  # no built-in tool without --tools
    assert result(s, "env_add", {"a": 1, "b": 2}) == {"plain_text_response": "3"}


def test_no_servers_in_the_json_means_no_tools(start_server: type[Server], tiny_models: Path) -> None:
    s = start_server("--models-dir", str(tiny_models), "--mcp-servers-json", '{"other": 1}').wait_ready()
    assert httpx.get(s.base + "/tools").status_code == 501


def children(s: Server) -> list[psutil.Process]:
    return psutil.Process(s.proc.pid).children(recursive=True)


def test_shutdown_cancels_a_call_in_flight_and_ends_the_servers(start_server: type[Server], tiny_models: Path) -> None:
    servers = {"slow": stub(timeout_ms=30000), "gc": stub("--grandchild")}
    s = start_server("--models-dir", str(tiny_models), "--mcp-servers-json", json.dumps({"mcpServers": servers})).wait_ready()
    assert result(s, "gc_echo", {"message": "x"}) == {"plain_text_response": "echo: x"}
    spawned = children(s)
    assert len(spawned) >= 3  # two stubs and the grandchild
    answer: list[Any] = []

    def slow() -> None:
        try:
            answer.append(call(s, "slow_sleep", {"seconds": 20}).json())
        except httpx.HTTPError as e:
            answer.append(e)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(1.5)
    start = time.monotonic()
    assert s.stop(signal.SIGTERM) == 0
    assert time.monotonic() - start < 3
    t.join(10)
    assert answer and (answer[0] == {"error": "cancelled"} or isinstance(answer[0], httpx.HTTPError))
    time.sleep(0.5)
    assert not [p for p in spawned if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]  # the grandchild too


def test_a_server_that_hangs_at_start_is_left_out(start_server: type[Server], tiny_models: Path, tmp_path: Path) -> None:
    hang = tmp_path / "hang.py"
    hang.write_text("import time\ntime.sleep(60)\n")
    servers = {"hang": {"command": sys.executable, "args": [str(hang)]}, "ok": stub()}
    s = start_server("--models-dir", str(tiny_models), "--mcp-servers-json", json.dumps({"mcpServers": servers})).wait_ready()
    start = time.monotonic()
    tools = listing(s)  # waits for the warm-up: at most its 10 s
    assert time.monotonic() - start < 15
    assert "ok_echo" in tools and not [n for n in tools if n.startswith("hang_")]
    assert "MCP server 'hang' left out: request timed out" in s.output()
