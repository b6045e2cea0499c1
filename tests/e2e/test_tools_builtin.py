"""llama-server's built-in tools (`--tools`) at GET/POST /tools, against a real server: each tool,
the working-directory and runtime headers (a container through a stand-in `docker`), streaming,
the malformed requests and the flags that refuse to start. The server serves a models folder and
loads nothing: tools need no model."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from conftest import REPO, Server, module_server

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with `docker` and `podman` stand-ins (fake_engine.py), for PATH."""
    d = tmp_path_factory.mktemp("engine")
    for name in ("docker", "podman"):
        (d / name).write_text(f"#!/bin/sh\nexec {sys.executable} {HERE / 'fake_engine.py'} \"$@\"\n")
        (d / name).chmod(0o755)
    return d


@pytest.fixture(scope="module")
def engine_log(engine_dir: Path) -> Path:
    return engine_dir / "calls.jsonl"


@pytest.fixture(scope="module")
def server(tiny_models: Path, engine_dir: Path, engine_log: Path) -> Iterator[Server]:
    env = {"PATH": f"{engine_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_ENGINE_LOG": str(engine_log)}
    yield from module_server("--models-dir", str(tiny_models), "--tools", "all", env=env)


def call(s: Server, tool: str, params: dict[str, Any], headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
    return httpx.post(s.base + "/tools", json={"tool": tool, "params": params, **extra}, headers=headers, timeout=60)


def ok(s: Server, tool: str, params: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = call(s, tool, params, headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert "error" not in body, body
    return body


def tool_error(s: Server, tool: str, params: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    """A tool that ran and failed: 200 with {"error": ...}."""
    r = call(s, tool, params, headers)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"error"}, r.json()
    return str(r.json()["error"])


def http_error(r: httpx.Response, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"], r.json()


# --- the listing ----------------------------------------------------------------------------------


def test_listing_has_every_builtin_tool_with_its_definition(server: Server) -> None:
    r = httpx.get(server.base + "/tools")
    assert r.status_code == 200
    tools = {t["tool"]: t for t in r.json()}
    assert list(tools) == ["read_file", "file_glob_search", "grep_search", "exec_shell_command", "write_file", "edit_file", "get_info"]
    for name, t in tools.items():
        assert set(t) == {"display_name", "tool", "type", "permissions", "uses_cwd", "definition"}
        assert t["type"] == "server" and t["uses_cwd"] is True
        assert t["definition"]["type"] == "function"
        fn = t["definition"]["function"]
        assert fn["name"] == name and fn["description"] and fn["parameters"]["type"] == "object"
    assert {n for n, t in tools.items() if t["permissions"]["write"]} == {"exec_shell_command", "write_file", "edit_file"}
    assert tools["read_file"]["definition"]["function"]["parameters"]["required"] == ["path"]


# --- read_file / write_file -----------------------------------------------------------------------


def test_write_then_read(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "notes.txt"
    res = ok(server, "write_file", {"path": str(target), "content": "one\ntwo\nthree\nfour\n"})
    assert res == {"result": "file written successfully", "path": str(target), "bytes": 19}
    assert target.read_text() == "one\ntwo\nthree\nfour\n"
    assert ok(server, "read_file", {"path": str(target)}) == {"plain_text_response": "one\ntwo\nthree\nfour\n"}
    part = ok(server, "read_file", {"path": str(target), "start_line": 2, "end_line": 3, "append_loc": True})
    assert part["plain_text_response"] == "2\u2192two\n3\u2192three\n"


def test_read_file_errors_and_limits(server: Server, tmp_path: Path) -> None:
    assert tool_error(server, "read_file", {"path": str(tmp_path / "nope.txt")}) == f"cannot stat file: {tmp_path / 'nope.txt'}"
    assert tool_error(server, "read_file", {"path": str(tmp_path)}).startswith("cannot stat file")
    big = tmp_path / "big.txt"
    big.write_text("".join(f"line {i:05d} of a long file\n" for i in range(2000)))
    assert "file too large" in tool_error(server, "read_file", {"path": str(big)})
    part = ok(server, "read_file", {"path": str(big), "start_line": 1000, "end_line": 1001})["plain_text_response"]
    assert part == "line 00999 of a long file\nline 01000 of a long file\n"
    capped = ok(server, "read_file", {"path": str(big), "start_line": 1, "end_line": 2000})["plain_text_response"]
    assert capped.endswith("[output truncated]") and len(capped) <= 16 * 1024 + 20


def test_read_file_base64_for_a_client(server: Server, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 100
    (tmp_path / "blob.bin").write_bytes(blob)
    r = call(server, "read_file", {"path": str(tmp_path / "blob.bin")}, headers={"x-resp-type": "base64"})
    assert r.status_code == 200
    assert r.json() == {"base64": base64.b64encode(blob).decode(), "size_bytes": len(blob)}
    # a model cannot ask for it: resp_type in the params is not the header
    r = call(server, "read_file", {"path": str(tmp_path / "blob.bin"), "resp_type": "base64"})
    assert "base64" not in r.json()


def test_relative_paths_and_commands_follow_the_cwd_header(server: Server, tmp_path: Path) -> None:
    (tmp_path / "rel.txt").write_text("relative\n")
    headers = {"x-tool-cwd": str(tmp_path)}
    assert ok(server, "read_file", {"path": "rel.txt"}, headers)["plain_text_response"] == "relative\n"
    ok(server, "write_file", {"path": "sub/out.txt", "content": "x"}, headers)
    assert (tmp_path / "sub" / "out.txt").read_text() == "x"
    ok(server, "exec_shell_command", {"command": "echo made > made.txt"}, headers)
    assert (tmp_path / "made.txt").read_text() == "made\n"
    # the model's own "cwd" parameter does not override the header
    assert "relative" in ok(server, "read_file", {"path": "rel.txt", "cwd": "/nonexistent"}, headers)["plain_text_response"]
    assert ok(server, "get_info", {}, headers)["cwd"] == str(tmp_path)
    info = ok(server, "get_info", {})
    assert info["cwd"] == str(REPO) and info["os"] != "unknown"


# --- edit_file ------------------------------------------------------------------------------------


def test_edit_file(server: Server, tmp_path: Path) -> None:
    f = tmp_path / "code.py"
    f.write_text("def a():\n    return 1\n\ndef b():\n    return 2\n")
    res = ok(server, "edit_file", {"path": str(f), "edits": [
        {"old_text": "return 1", "new_text": "return 10"},
        {"old_text": "def b():\n", "new_text": "def bee():\n"},
    ]})
    assert res == {"result": "file edited successfully", "path": str(f), "edits_applied": 2}
    assert f.read_text() == "def a():\n    return 10\n\ndef bee():\n    return 2\n"


def test_edit_file_refusals(server: Server, tmp_path: Path) -> None:
    f = tmp_path / "dup.txt"
    f.write_text("dup\ndup\nlast line\n")
    assert "found 2 occurrences" in tool_error(server, "edit_file", {"path": str(f), "edits": [{"old_text": "dup", "new_text": "x"}]})
    err = tool_error(server, "edit_file", {"path": str(f), "edits": [{"old_text": "dup\nlast", "new_text": "a"},
                                                                      {"old_text": "last line", "new_text": "b"}]})
    assert "edits[0] and edits[1] overlap" in err
    assert "could not find edits[0].old_text" in tool_error(server, "edit_file", {"path": str(f), "edits": [{"old_text": "zzz", "new_text": "y"}]})
    assert "no changes made" in tool_error(server, "edit_file", {"path": str(f), "edits": [{"old_text": "last line", "new_text": "last line"}]})
    assert tool_error(server, "edit_file", {"path": str(f), "edits": [{"old_text": "", "new_text": "y"}]}) == "edits[0].old_text must not be empty"
    assert tool_error(server, "edit_file", {"path": str(f), "edits": []}) == '"edits" must be a non-empty array'
    missing = {"path": str(tmp_path / "none"), "edits": [{"old_text": "a", "new_text": "b"}]}
    assert tool_error(server, "edit_file", missing) == f"failed to open file: {tmp_path / 'none'}"
    assert f.read_text() == "dup\ndup\nlast line\n"
    r = call(server, "edit_file", {"path": str(f), "edits": [{"old_text": "dup"}]})
    http_error(r, 400, "params.edits[0]")


def test_edit_file_matches_typographic_drift_and_keeps_other_lines(server: Server, tmp_path: Path) -> None:
    f = tmp_path / "drift.txt"
    # trailing blanks and curly quotes in the file; the model sends plain ASCII
    f.write_text("keep me   \nsay \u201chello\u201d \u2014 now  \nkeep\ttoo\t\n")
    ok(server, "edit_file", {"path": str(f), "edits": [{"old_text": 'say "hello" - now', "new_text": 'say "bye"'}]})
    assert f.read_text() == "keep me   \nsay \"bye\"\nkeep\ttoo\t\n"


# --- file_glob_search / grep_search ---------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel, text in {"top.txt": "top", "a/mid.txt": "mid", "a/b/deep.txt": "deep", "a/b/code.py": "x = 1\n",
                      "src/main.cpp": "int main() {}\n", "build/artifact.txt": "built", "node_modules/m/index.js": "js"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def paths(res: dict[str, Any]) -> list[str]:
    return [e["path"] for e in res["entries"]]


def test_file_glob_search(server: Server, tree: Path) -> None:
    res = ok(server, "file_glob_search", {"path": str(tree)})
    assert res["base"] == str(tree)
    assert sorted(paths(res)) == ["a/b/code.py", "a/b/deep.txt", "a/mid.txt", "src/main.cpp", "top.txt"]  # no junk folders
    assert "Total matches: 5" in res["plain_text_response"]
    assert sorted(paths(ok(server, "file_glob_search", {"path": str(tree), "include": "*.txt"}))) == ["a/b/deep.txt", "a/mid.txt", "top.txt"]
    assert paths(ok(server, "file_glob_search", {"path": str(tree), "include": "b/*.py"})) == ["a/b/code.py"]
    assert paths(ok(server, "file_glob_search", {"path": str(tree), "include": "/a/*.txt"})) == ["a/mid.txt"]
    assert sorted(paths(ok(server, "file_glob_search", {"path": str(tree), "exclude": "a/**"}))) == ["src/main.cpp", "top.txt"]
    assert paths(ok(server, "file_glob_search", {"path": str(tree), "max_depth": 1})) == ["top.txt"]
    limited = ok(server, "file_glob_search", {"path": str(tree), "limit": 2})
    assert len(limited["entries"]) == 2 and "[2 results limit reached (5 total matches)" in limited["plain_text_response"]
    dirs = ok(server, "file_glob_search", {"path": str(tree), "type": "dir"})
    assert {"a", "a/b", "src", "build", "node_modules"} == set(paths(dirs))  # junk folders listed, never entered
    assert "a/b/" in dirs["plain_text_response"]
    assert {e["type"] for e in ok(server, "file_glob_search", {"path": str(tree), "type": "all"})["entries"]} == {"dir", "file"}
    rel = ok(server, "file_glob_search", {"path": ".", "include": "*.cpp"}, {"x-tool-cwd": str(tree)})
    assert paths(rel) == ["src/main.cpp"] and rel["base"] == str(tree)
    assert "invalid type: bogus" in tool_error(server, "file_glob_search", {"path": str(tree), "type": "bogus"})
    assert "invalid limit: 0" in tool_error(server, "file_glob_search", {"path": str(tree), "limit": 0})
    assert "path does not exist or is not a directory" in tool_error(server, "file_glob_search", {"path": str(tree / "nope")})


def test_search_in_a_git_repository_follows_gitignore(server: Server, tree: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    (tree / ".gitignore").write_text("*.py\n")
    res = ok(server, "file_glob_search", {"path": str(tree)})
    assert "a/b/code.py" not in paths(res) and "top.txt" in paths(res)
    assert "Total matches: 0" in ok(server, "grep_search", {"path": str(tree), "pattern": "x = 1"})["plain_text_response"]


def test_grep_search(server: Server, tree: Path) -> None:
    (tree / "a" / "log.txt").write_text("alpha\nBeta\ngamma\nbeta.x\n")
    (tree / "a" / "bin.dat").write_bytes(b"beta\0binary")
    text = ok(server, "grep_search", {"path": str(tree), "pattern": "beta"})["plain_text_response"]
    assert text == "a/log.txt:beta.x\n\n---\nTotal matches: 1\n"
    text = ok(server, "grep_search", {"path": str(tree), "pattern": "beta", "ignore_case": True,
                                      "return_line_numbers": True})["plain_text_response"]
    assert "a/log.txt:2:Beta\n" in text and "a/log.txt:4:beta.x\n" in text
    assert "Total matches: 1" in ok(server, "grep_search", {"path": str(tree), "pattern": "a.p", "literal": False,
                                                            "include": "log.txt"})["plain_text_response"]
    assert "Total matches: 0" in ok(server, "grep_search", {"path": str(tree), "pattern": "a.p", "literal": True})["plain_text_response"]
    ctx = ok(server, "grep_search", {"path": str(tree / "a" / "log.txt"), "pattern": "gamma", "context_lines": 1})["plain_text_response"]
    path = str(tree / "a" / "log.txt")
    assert ctx.startswith(f"{path}-2-Beta\n{path}:3:gamma\n{path}-4-beta.x\n--\n")
    assert "invalid regex" in tool_error(server, "grep_search", {"path": str(tree), "pattern": "("})
    assert tool_error(server, "grep_search", {"path": str(tree / "nope"), "pattern": "x"}) == f"path does not exist: {tree / 'nope'}"
    (tree / "many.txt").write_text("hit\n" * 150)
    many = ok(server, "grep_search", {"path": str(tree), "pattern": "^hit$"})["plain_text_response"]
    assert "Total matches: 100" in many and "100 matches limit reached" in many


# --- exec_shell_command ---------------------------------------------------------------------------


def test_exec_shell_command(server: Server) -> None:
    out = ok(server, "exec_shell_command", {"command": "echo out; echo err >&2; exit 3"})["plain_text_response"]
    assert out == "out\nerr\n\n[exit code: 3]"
    start = time.monotonic()
    out = ok(server, "exec_shell_command", {"command": "echo begun; sleep 30", "timeout": 1})["plain_text_response"]
    assert time.monotonic() - start < 10
    assert out.startswith("begun\n") and out.endswith("[exit due to timed out]")
    out = ok(server, "exec_shell_command", {"command": "yes abcdefgh | head -c 100000", "max_output_size": 100})["plain_text_response"]
    assert out.startswith("abcdefgh\n") and "[output truncated]" in out and len(out) < 200
    # something left in the background that holds the output open does not hold the call
    start = time.monotonic()
    out = ok(server, "exec_shell_command", {"command": "sleep 30 & echo started"})["plain_text_response"]
    assert "started" in out and time.monotonic() - start < 10
    out = ok(server, "exec_shell_command", {"command": "pwd"}, {"x-tool-cwd": "/nonexistent/dir"})["plain_text_response"]
    assert out.startswith("failed to spawn process") and out.endswith("[exit code: -1]")


def test_exec_shell_command_streams(server: Server) -> None:
    events = []
    with httpx.stream("POST", server.base + "/tools", json={"tool": "exec_shell_command", "stream": True,
                                                           "params": {"command": "echo one; sleep 0.5; echo two"}}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1] == {"done": True}
    chunks = [e["chunk"] for e in events[:-1]]
    assert len(chunks) >= 3  # "one" arrived before "two" was printed
    assert "".join(chunks) == "one\ntwo\n\n[exit code: 0]"


def test_a_client_that_goes_away_ends_its_command(server: Server) -> None:
    def sleepers() -> list[psutil.Process]:
        return [p for p in psutil.Process(server.proc.pid).children(recursive=True) if "sleep" in p.name()]

    with httpx.stream("POST", server.base + "/tools", json={"tool": "exec_shell_command", "stream": True,
                                                           "params": {"command": "echo started; sleep 41"}}, timeout=30) as r:
        lines = r.iter_lines()  # held: a dropped iterator closes the response
        assert next(lines) == 'data: {"chunk":"started\\n"}'
        deadline = time.monotonic() + 10
        while not sleepers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sleepers()
    with pytest.raises(httpx.ReadTimeout):  # and without streaming
        httpx.post(server.base + "/tools", json={"tool": "exec_shell_command", "params": {"command": "sleep 42"}}, timeout=1)
    deadline = time.monotonic() + 5  # well before the command's own 10 s timeout
    while sleepers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sleepers()


# --- malformed requests ---------------------------------------------------------------------------


def test_malformed_requests(server: Server) -> None:
    url = server.base + "/tools"
    http_error(httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400, "malformed JSON")
    http_error(httpx.post(url, json=[1, 2]), 400, "must be a JSON object")
    http_error(httpx.post(url, json={"params": {}}), 400, "'tool' is required")
    http_error(httpx.post(url, json={"tool": 5}), 400, "'tool' is required")
    http_error(httpx.post(url, json={"tool": "read_file", "params": "x"}), 400, "'params' must be an object")
    http_error(httpx.post(url, json={"tool": "read_file", "params": {}, "stream": "yes"}), 400, "'stream' must be a boolean")
    http_error(call(server, "read_file", {}), 400, "'params.path' is required")
    http_error(call(server, "read_file", {"path": 3}), 400, "'params.path' must be a string")
    http_error(call(server, "read_file", {"path": "x", "start_line": "three"}), 400, "'params.start_line' must be an integer")
    http_error(call(server, "nope", {}), 404, 'unknown tool "nope"')
    http_error(call(server, "read_file", {"path": "x"}, stream=True), 404, 'tool "read_file" does not support stream = true')


def test_runtime_header_refusals(server: Server) -> None:
    cases = {"fake:does-not-exist": "unknown tool runtime: fake:does-not-exist",
             "ssh:-oProxyCommand=touch /tmp/pwned": "invalid ssh target",
             "docker-container:--privileged": "invalid container id: --privileged",
             "podman-container:": "invalid container id",
             "docker:busybox": "tool runtime must name a running container: docker:busybox"}
    for runtime, words in cases.items():
        http_error(call(server, "exec_shell_command", {"command": "echo hi"}, {"x-tool-runtime": runtime}), 500, words)
    assert not Path("/tmp/pwned").exists()


def test_tools_run_in_a_container_through_the_engine(server: Server, engine_log: Path, tmp_path: Path) -> None:
    headers = {"x-tool-runtime": "docker-container:c0ffee", "x-tool-cwd": str(tmp_path)}
    engine_log.unlink(missing_ok=True)
    assert ok(server, "write_file", {"path": "in/box.txt", "content": "hello container\n"}, headers)["bytes"] == 16
    assert (tmp_path / "in" / "box.txt").read_text() == "hello container\n"
    assert ok(server, "read_file", {"path": "in/box.txt"}, headers)["plain_text_response"] == "hello container\n"
    assert ok(server, "exec_shell_command", {"command": "cat in/box.txt; pwd"}, headers)["plain_text_response"] == \
        f"hello container\n{tmp_path}\n\n[exit code: 0]"
    assert paths(ok(server, "file_glob_search", {"path": "."}, headers)) == ["in/box.txt"]
    assert "in/box.txt:hello container" in ok(server, "grep_search", {"path": ".", "pattern": "hello"}, headers)["plain_text_response"]
    ok(server, "edit_file", {"path": "in/box.txt", "edits": [{"old_text": "hello", "new_text": "bye"}]}, headers)
    assert (tmp_path / "in" / "box.txt").read_text() == "bye container\n"
    calls = [json.loads(line) for line in engine_log.read_text().splitlines()]
    assert calls and all(c[0] == "exec" and "c0ffee" in c[1:3] for c in calls)
    assert any(c[1] == "-i" and "timeout" in c for c in calls)  # commands get stdin and the isolate's own timeout


# --- which tools exist ----------------------------------------------------------------------------


def test_only_the_named_tools_exist(start_server: type[Server], tiny_models: Path) -> None:
    s = start_server("--models-dir", str(tiny_models), "--tools", "read_file,grep_search").wait_ready()
    assert [t["tool"] for t in httpx.get(s.base + "/tools").json()] == ["read_file", "grep_search"]
    http_error(call(s, "exec_shell_command", {"command": "echo hi"}), 404, 'unknown tool "exec_shell_command"')


def test_no_tools_without_the_flag(start_server: type[Server], tiny_models: Path) -> None:
    s = start_server("--models-dir", str(tiny_models)).wait_ready()
    http_error(httpx.get(s.base + "/tools"), 501, "--tools")
    http_error(httpx.post(s.base + "/tools", json={"tool": "exec_shell_command", "params": {"command": "echo hi"}}), 501, "--tools")
    pre = httpx.options(s.base + "/tools", headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in pre.headers


def test_cors_defaults_to_loopback_origins_with_tools(server: Server) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(server.base + "/tools", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                              "Access-Control-Request-Headers": "x-tool-cwd"})

    r = preflight("http://localhost:5173")
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert "x-tool-cwd" in r.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Origin" not in preflight("http://evil.example").headers


def test_the_server_owns_a_tools_runtime_container(start_server: type[Server], tiny_models: Path, engine_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "engine.jsonl"
    env = {"PATH": f"{engine_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_ENGINE_LOG": str(log)}
    s = start_server("--models-dir", str(tiny_models), "--tools", "exec_shell_command", "--tools-runtime", "docker:busybox", env=env).wait_ready()
    assert ok(s, "exec_shell_command", {"command": "echo inside"})["plain_text_response"] == "inside\n\n[exit code: 0]"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0][:3] == ["run", "--rm", "-i"] and calls[0][-2:] == ["busybox", "sh"]
    assert calls[1][:3] == ["exec", "-i", "fakecid0123456789"]
    assert s.stop() == 0
    assert json.loads(log.read_text().splitlines()[-1]) == ["removed", "fakecid0123456789"]


@pytest.mark.parametrize("flags, words", [
    (["--tools", "read_file,bogus"], 'unknown tool "bogus". available tools: read_file'),
    (["--tools-runtime", "fake:x"], "unknown tool runtime: fake:x"),
    (["--tools-runtime", "ssh:-oProxyCommand=x"], "invalid ssh target"),
    (["--mcp-servers-json", "not valid json"], "failed to parse MCP config JSON"),
    (["--mcp-servers-json", '{"mcpServers": {"x": {"command": "python3", "args": "-V"}}}'], "mcpServers.x.args: expected an array"),
    (["--mcp-servers-config", "/nonexistent/mcp.json"], "failed to open MCP config file"),
])
def test_flags_that_refuse_to_start(tiny_models: Path, flags: list[str], words: str) -> None:
    p = subprocess.run([sys.executable, "-m", "chimera", "serve", "--port", "0", "--models-dir", str(tiny_models), *flags],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 2, p.stderr
    assert words in p.stderr
