"""The file tools: read_file and write_file (edit_file is in edit.py)."""

from __future__ import annotations

import base64

from .base import Bound, Context, Json, Params, Tool, clean, function
from .io import tool_io

READ_MAX = 16 * 1024  # text a read returns; a larger file must be read by line range
READ_MAX_BASE64 = 32 * 1024 * 1024  # x-resp-type: base64 (a client reading a file, not the model)


def lines_of(text: str) -> list[str]:
    """The lines of a text, without their newlines; a final newline ends the last line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


class ReadFile(Tool):
    name, display_name, uses_cwd = "read_file", "Read file", True

    def definition(self) -> Json:
        return function(self.name, "Read a text file, whole or a 1-based range of lines. With append_loc, each line starts "
                        "with its number and an arrow (\"12\u2192...\").", {
                            "path": {"type": "string", "description": "the file"},
                            "start_line": {"type": "integer", "description": "first line, 1-based (default 1)"},
                            "end_line": {"type": "integer", "description": "last line, inclusive (default: the end)"},
                            "append_loc": {"type": "boolean", "description": "number the lines"},
                        }, ("path",))

    def bind(self, params: Json, ctx: Context) -> Bound:
        p = Params(params)
        path, start, end, numbered = p.text("path"), p.integer("start_line", 1), p.integer("end_line", -1), p.flag("append_loc")
        io = tool_io(ctx)

        async def result() -> Json:
            size = await io.size(path)
            if size is None:
                return {"error": f"cannot stat file: {path}"}
            if ctx.resp_type == "base64":
                if size > READ_MAX_BASE64:
                    return {"error": f"file too large ({size} bytes, max {READ_MAX_BASE64})"}
                data = await io.read(path)
                if data is None:
                    return {"error": f"failed to open file: {path}"}
                return {"base64": base64.b64encode(data).decode(), "size_bytes": len(data)}
            if size > READ_MAX and end == -1:
                return {"error": f"file too large ({size} bytes, max {READ_MAX}). Use start_line/end_line to read a portion."}
            data = await io.read(path)
            if data is None:
                return {"error": f"failed to open file: {path}"}
            out: list[str] = []
            used = 0
            for number, line in enumerate(lines_of(data.decode("utf-8", errors="replace")), 1):
                if number < start:
                    continue
                if end != -1 and number > end:
                    break
                piece = f"{number}\u2192{line}\n" if numbered else f"{line}\n"
                used += len(piece.encode())
                if used > READ_MAX:
                    out.append("[output truncated]")
                    break
                out.append(piece)
            return {"plain_text_response": "".join(out)}

        return Bound(result)


class WriteFile(Tool):
    name, display_name, uses_cwd, write = "write_file", "Write file", True, True

    def definition(self) -> Json:
        return function(self.name, "Write a file, creating it and its folders, or replacing what it held. For changes to "
                        "part of a file, edit_file is cheaper.", {
                            "path": {"type": "string", "description": "the file"},
                            "content": {"type": "string", "description": "its whole new content"},
                        }, ("path", "content"))

    def bind(self, params: Json, ctx: Context) -> Bound:
        p = Params(params)
        path, content = p.text("path"), clean(p.text("content"))
        io = tool_io(ctx)

        async def result() -> Json:
            data = content.encode()
            if not await io.write(path, data):
                return {"error": f"failed to write file: {path}"}
            return {"result": "file written successfully", "path": path, "bytes": len(data)}

        return Bound(result)
