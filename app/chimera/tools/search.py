"""The search tools: file_glob_search (names) and grep_search (contents). Both list a folder as
walk.py does (git's view of it where there is one, no junk folders) and cap what they return."""

from __future__ import annotations

import posixpath
import re

import trio

from .base import Bound, Context, Json, Params, Tool, function
from .files import lines_of
from .globs import PathGlob
from .io import tool_io
from .walk import Kind

GLOB_MAX_RESULTS = 100
GREP_MAX_MATCHES = 100
BINARY_SNIFF = 8192  # a NUL in the first bytes: a binary file, not searched
KINDS: dict[str, Kind] = {"file": "files", "dir": "dirs", "all": "all"}


class FileGlobSearch(Tool):
    name, display_name, uses_cwd = "file_glob_search", "File search", True

    def definition(self) -> Json:
        return function(self.name, "Find files (or folders) under a folder by glob pattern, recursively. Files .gitignore "
                        "ignores (inside a git repository) and junk folders (.git, node_modules, build, dist, ...) are "
                        "left out. A pattern without '/' (\"*.py\") matches names at any depth; one with '/' matches the "
                        "relative path, at any depth unless it starts with \"**/\" or '/'. type \"dir\" or \"all\" lists "
                        "folders too, with a trailing '/' (folder listings do not apply .gitignore).", {
                            "path": {"type": "string", "description": "the folder to search"},
                            "include": {"type": "string", "description": "glob of what to list (default **: everything)"},
                            "exclude": {"type": "string", "description": "glob of what to leave out"},
                            "type": {"type": "string", "description": "\"file\" (default), \"dir\" or \"all\""},
                            "max_depth": {"type": "integer", "description": "how deep to go; 0 (default) has no limit, "
                                                                             "1 is the folder's own entries"},
                            "limit": {"type": "integer", "description": f"most results, at most {GLOB_MAX_RESULTS} "
                                                                         f"(default {GLOB_MAX_RESULTS})"},
                        }, ("path",))

    def bind(self, params: Json, ctx: Context) -> Bound:
        p = Params(params)
        path, include, exclude = p.text("path"), p.text("include", "**"), p.text("exclude", "")
        kind_name, max_depth, limit = p.text("type", "file"), max(0, p.integer("max_depth", 0)), p.integer("limit", GLOB_MAX_RESULTS)
        io = tool_io(ctx)

        async def result() -> Json:
            if limit < 1:
                return {"error": f"invalid limit: {limit} (expected 1 or more)"}
            kind = KINDS.get(kind_name)
            if kind is None:
                return {"error": f'invalid type: {kind_name} (expected "file", "dir" or "all")'}
            base = io.resolve(path)
            listing = await io.listing(base, max_depth, kind)
            if listing.error:
                return {"error": f"{listing.error}: {path}"}
            keep, drop = PathGlob(include), PathGlob(exclude) if exclude else None
            found = [e for e in listing.entries if keep.match(e.rel) and not (drop and drop.match(e.rel))]
            shown = found[:min(limit, GLOB_MAX_RESULTS)]
            text = "".join(f"{e.rel}/\n" if e.is_dir else f"{e.rel}\n" for e in shown)
            text += f"\n---\nTotal matches: {len(found)}\n"
            if len(found) > len(shown):
                text += (f"[{len(shown)} results limit reached ({len(found)} total matches). "
                         "Refine the glob pattern to narrow the search.]\n")
            if listing.truncated:
                text += "[results truncated: time budget or unreadable directory]\n"
            # `base` is absolute, so a client (a file picker) can join the relative entries to it
            return {"plain_text_response": text, "entries": [{"path": e.rel, "type": "dir" if e.is_dir else "file"} for e in shown],
                    "base": base}

        return Bound(result)


def grep_lines(lines: list[str], pattern: re.Pattern[str], name: str, context: int, numbered: bool, budget: int) -> tuple[list[str], int]:
    """One file's matches as grep prints them (`name:line`, context lines with '-', groups split
    by `--` when there is context), at most `budget` matches. Blocking: run it in a worker thread."""
    out: list[str] = []
    found = 0
    for i, line in enumerate(lines):
        if found >= budget:
            break
        if not pattern.search(line):
            continue
        found += 1
        for j in range(max(0, i - context), min(len(lines), i + context + 1)):
            mark = ":" if j == i else "-"
            out.append(f"{name}{mark}{f'{j + 1}{mark}' if numbered else ''}{lines[j]}\n")
        if context:
            out.append("--\n")
    return out, found


class GrepSearch(Tool):
    name, display_name, uses_cwd = "grep_search", "Grep search", True

    def definition(self) -> Json:
        return function(self.name, "Search the lines of a file, or of the files under a folder, for a pattern. Prints the "
                        "matching lines with their file (relative to the folder). Files .gitignore ignores and junk "
                        "folders are left out; include/exclude take globs as file_glob_search does.", {
                            "path": {"type": "string", "description": "a file or a folder"},
                            "pattern": {"type": "string", "description": "a regular expression (a plain string with literal)"},
                            "include": {"type": "string", "description": "glob of the files to search (default **)"},
                            "exclude": {"type": "string", "description": "glob of files to leave out"},
                            "return_line_numbers": {"type": "boolean", "description": "print line numbers"},
                            "literal": {"type": "boolean", "description": "the pattern is a plain string (default false)"},
                            "ignore_case": {"type": "boolean", "description": "ignore case (default false)"},
                            "context_lines": {"type": "integer", "description": "lines to print before and after each "
                                                                                 "match (default 0)"},
                        }, ("path", "pattern"))

    def bind(self, params: Json, ctx: Context) -> Bound:
        p = Params(params)
        path, source = p.text("path"), p.text("pattern")
        include, exclude = p.text("include", "**"), p.text("exclude", "")
        numbered, literal, nocase = p.flag("return_line_numbers"), p.flag("literal"), p.flag("ignore_case")
        context = max(0, p.integer("context_lines", 0))
        io = tool_io(ctx)

        async def result() -> Json:
            try:
                pattern = re.compile(re.escape(source) if literal else source, re.IGNORECASE if nocase else 0)
            except re.error as e:
                return {"error": f"invalid regex: {e}"}
            where = io.resolve(path)
            files: list[tuple[str, str]] = []  # (absolute, as printed)
            if await io.is_file(where):
                files.append((where, path))
            elif await io.is_dir(where):
                listing = await io.listing(where, 0, "files")
                if listing.error:
                    return {"error": f"{listing.error}: {path}"}
                keep, drop = PathGlob(include), PathGlob(exclude) if exclude else None
                files += [(posixpath.join(where, e.rel), e.rel) for e in listing.entries
                          if keep.match(e.rel) and not (drop and drop.match(e.rel))]
            else:
                return {"error": f"path does not exist: {path}"}
            out: list[str] = []
            total = 0
            for absolute, name in files:
                if total >= GREP_MAX_MATCHES:
                    break
                data = await io.read(absolute)
                if data is None or b"\0" in data[:BINARY_SNIFF]:
                    continue
                lines = lines_of(data.decode("utf-8", errors="replace"))
                text, found = await trio.to_thread.run_sync(grep_lines, lines, pattern, name, context, numbered or context > 0,
                                                            GREP_MAX_MATCHES - total, abandon_on_cancel=True)
                out += text
                total += found
            report = "".join(out) + f"\n---\nTotal matches: {total}\n"
            if total >= GREP_MAX_MATCHES:
                report += f"[{GREP_MAX_MATCHES} matches limit reached. Narrow the path/pattern/include to see more.]\n"
            return {"plain_text_response": report}

        return Bound(result)
