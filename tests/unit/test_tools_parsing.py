"""The tools' pure parts: glob patterns, edit_file's matching, the flags' parsing."""

from __future__ import annotations

import pytest

from chimera.tools.edit import Match, normalize, replace_keeping_lines
from chimera.tools.flags import enabled_tools, parse_mcp_servers, parse_runtime
from chimera.tools.globs import glob_match, path_match


@pytest.mark.parametrize("pattern, path, hit", [
    ("*.py", "a.py", True), ("*.py", "a/b.py", False), ("**/*.py", "b.py", True), ("**/*.py", "a/b/c.py", True),
    ("a/**", "a/b/c", True), ("a/**/c", "a/c", True), ("a/**/c", "a/x/y/c", True), ("?.txt", "ab.txt", False),
    ("[ab].txt", "b.txt", True), ("[!ab].txt", "c.txt", True), ("[!ab].txt", "a.txt", False), ("x[.txt", "x[.txt", True),
    ("a+b(c)", "a+b(c)", True), ("*", "a/b", False), ("**", "a/b", True),
])
def test_glob(pattern: str, path: str, hit: bool) -> None:
    assert glob_match(pattern, path) is hit


def test_path_match_anchoring() -> None:
    assert path_match("*.py", "deep/down/x.py")  # no '/': the name, at any depth
    assert path_match("src/*.py", "pkg/src/x.py")  # '/': the path, at any depth
    assert not path_match("src/*.py", "pkg/mysrc/x.py")
    assert path_match("/src/*.py", "src/x.py") and not path_match("/src/*.py", "pkg/src/x.py")  # '/': at the base


def test_normalize_keeps_the_lines() -> None:
    text = "a \u201cq\u201d \u2014 b\u00a0c  \r\nnext\t\n"
    assert normalize(text) == 'a "q" - b c\nnext\n'
    assert normalize(text).count("\n") == text.count("\n")


def test_replace_keeping_lines_copies_untouched_lines() -> None:
    original = "x  \nold \u2019line\u2019\ny\t\n"
    norm = normalize(original)
    at = norm.index("old 'line'")
    assert replace_keeping_lines(original, norm, [Match(0, at, len("old 'line'"), "new")]) == "x  \nnew\ny\t\n"


def test_enabled_tools() -> None:
    assert enabled_tools(("all",))[0] == "read_file" and len(enabled_tools(("all",))) == 7
    assert enabled_tools(("grep_search", "read_file")) == ("read_file", "grep_search")
    with pytest.raises(ValueError, match='unknown tool "shell"'):
        enabled_tools(("shell",))


def test_runtimes() -> None:
    assert parse_runtime("").kind == "host"
    assert parse_runtime("podman-container:abc_1.2").spec == "podman-container:abc_1.2"
    assert parse_runtime("docker:busybox:1.36").kind == "spawn"
    assert parse_runtime("ssh:me@box-1.lan").target == "me@box-1.lan"
    for bad, words in [("docker-container:-x", "invalid container id"), ("ssh:a b", "invalid ssh target"),
                       ("ssh:-oX", "invalid ssh target"), ("docker:", "requires an image name"), ("lxc:x", "unknown tool runtime")]:
        with pytest.raises(ValueError, match=words):
            parse_runtime(bad)


def test_mcp_config() -> None:
    servers = parse_mcp_servers('{"mcpServers": {"a": {"command": "x", "args": ["1"], "env": {"K": "V"}, "timeout_ms": 5},'
                                ' "skipped": {"args": []}}}')
    assert [(s.name, s.command, s.args, s.env, s.timeout_ms) for s in servers] == [("a", "x", ("1",), (("K", "V"),), 5)]
    assert parse_mcp_servers('{"servers": {}}') == []
    for bad in ('not json', '{"mcpServers": {"a": 1}}', '{"mcpServers": {"a": {"command": "x", "env": {"K": 1}}}}',
                '{"mcpServers": {"a": {"command": "x", "timeout_ms": -1}}}'):
        with pytest.raises(ValueError, match="failed to parse MCP config JSON"):
            parse_mcp_servers(bad)
