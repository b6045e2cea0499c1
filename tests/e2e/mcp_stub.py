"""A small MCP server for the tests: JSON-RPC 2.0 over stdio, one message a line.

    python mcp_stub.py [--noisy] [--grandchild] [--exit-at-start] [--page] [--extra=NAME]

Tools: echo {message}, add {a, b}, sleep {seconds}, fail (an isError result), crash (replies, then
exits), env {name} (an environment variable), cwd (its working directory), pid.
--noisy: before each reply, a notification, a line that is not JSON and a ping request to the
client (whose answer it reads back), all in one write with the reply.
--grandchild: starts a child that inherits its stdio and outlives it.
--exit-at-start: exits before reading anything (a server that dies at once).
--page: tools/list answers in two pages (nextCursor).
--extra=NAME: one more tool, NAME, that echoes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

TOOLS = [
    {"name": "echo", "description": "Echo the message", "inputSchema": {
        "type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}},
    {"name": "add", "description": "Add two numbers", "inputSchema": {
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}},
    {"name": "sleep", "description": "Sleep, then answer", "inputSchema": {
        "type": "object", "properties": {"seconds": {"type": "number"}}}},
    {"name": "fail", "description": "A tool that reports an error", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "crash", "description": "Answer, then exit", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "env", "description": "An environment variable", "inputSchema": {
        "type": "object", "properties": {"name": {"type": "string"}}}},
    {"name": "cwd", "description": "The working directory"},
    {"name": "pid", "description": "The process id", "inputSchema": {"type": "object", "properties": {}}},
]
EXTRA: set[str] = set()


def text(req_id: object, value: str, error: bool = False) -> dict:
    result: dict = {"content": [{"type": "text", "text": value}]}
    if error:
        result["isError"] = True
    return {"jsonrpc": "2.0", "id": req_id, "result": result}


def call(req_id: object, name: str, args: dict) -> tuple[dict, bool]:
    """The reply, and whether to exit after sending it."""
    if name == "echo" or name in EXTRA:
        return text(req_id, f"echo: {args.get('message', '')}"), False
    if name == "add":
        return text(req_id, str(args.get("a", 0) + args.get("b", 0))), False
    if name == "sleep":
        time.sleep(float(args.get("seconds", 1)))
        return text(req_id, "slept"), False
    if name == "fail":
        return text(req_id, "it went wrong", error=True), False
    if name == "crash":
        return text(req_id, "crashing"), True
    if name == "env":
        return text(req_id, os.environ.get(str(args.get("name")), "")), False
    if name == "cwd":
        return text(req_id, os.getcwd()), False
    if name == "pid":
        return text(req_id, str(os.getpid())), False
    return {"jsonrpc": "2.0", "id": req_id, "error": {"code": -32602, "message": f"Unknown tool: {name}"}}, False


def main() -> None:
    args = set(sys.argv[1:])
    for arg in args:
        if arg.startswith("--extra="):  # one more tool, of that name, that echoes
            EXTRA.add(arg[8:])
            TOOLS.append({"name": arg[8:], "description": "Echo the message", "inputSchema": {"type": "object", "properties": {}}})
    if "--exit-at-start" in args:
        sys.exit(3)
    if "--grandchild" in args:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    out = sys.stdout.buffer
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if "id" not in msg or "method" not in msg:
            continue  # a notification, or the client's answer to our ping
        method, req_id, params = msg["method"], msg["id"], msg.get("params") or {}
        done = False
        if method == "initialize":
            reply = {"jsonrpc": "2.0", "id": req_id, "result": {
                "protocolVersion": "2024-11-05", "capabilities": {"tools": {}}, "serverInfo": {"name": "stub", "version": "1"}}}
        elif method == "tools/list":
            if "--page" in args:
                half = len(TOOLS) // 2
                page = TOOLS[half:] if params.get("cursor") == "2" else TOOLS[:half]
                result: dict = {"tools": page} | ({} if params.get("cursor") == "2" else {"nextCursor": "2"})
            else:
                result = {"tools": TOOLS}
            reply = {"jsonrpc": "2.0", "id": req_id, "result": result}
        elif method == "tools/call":
            reply, done = call(req_id, params.get("name", ""), params.get("arguments") or {})
        else:
            reply = {"jsonrpc": "2.0", "id": req_id, "error": {"code": -32601, "message": f"Method not found: {method}"}}
        data = json.dumps(reply) + "\n"
        if "--noisy" in args:
            noise = [json.dumps({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}),
                     "this is not JSON", json.dumps({"jsonrpc": "2.0", "id": "srv-1", "method": "ping"})]
            data = "\n".join(noise) + "\n" + data
        os.write(out.fileno(), data.encode())
        if done:
            os._exit(1)


if __name__ == "__main__":
    main()
