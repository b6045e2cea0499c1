"""llama-server's tools for agents: the built-in tools of `--tools` (files, search, a shell) and the
tools of the MCP servers of `--mcp-servers-json` / `--mcp-servers-config`, behind GET/POST /tools.

    flags.py      what the flags say: tool names, runtimes (`x-tool-runtime`, --tools-runtime), MCP configs
    base.py       a tool, its call context and its parameters
    process.py    a child's output as it comes, under a deadline and a size cap
    io.py         where a tool's files and commands live: the host, or an isolate (isolate.py)
    walk.py, globs.py   directory listings (git ls-files, or a walk that skips junk folders), glob patterns
    files.py, edit.py, search.py, shell.py   the built-in tools
    mcp.py        one MCP server: a child speaking JSON-RPC 2.0 over stdio
    mcp_servers.py  every configured MCP server: warm-up, respawn, cool-down, and its tools as Tools
    toolbox.py    ToolBox: the service the routes use, run in the server's nursery
"""
