"""Glob patterns over '/'-separated relative paths, as the search tools take them.

`*` matches within one path part, `?` one character of it, `[...]` a class (`[!...]` or `[^...]`
negated), `**` any run of parts (and `**/` none). A pattern with no '/' matches a path's last part
at any depth; one with '/' matches the whole path, anchored at any depth unless it starts with
`**`, or at the base folder when it starts with '/'.
"""

from __future__ import annotations

import re


def _compile(pattern: str) -> re.Pattern[str]:
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**", i):
            if pattern.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
            else:
                out.append(".*")
                i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = i + 1
            if end < n and pattern[end] in "!^":
                end += 1
            if end < n and pattern[end] in "]-":
                end += 1
            end = pattern.find("]", end)
            if end < 0:
                out.append(re.escape(c))
                i += 1
                continue
            body = pattern[i + 1:end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[").replace("]", "\\]")
            out.append(f"[^/{body}]" if negate else f"[{body}]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.S)


def glob_match(pattern: str, path: str) -> bool:
    return _compile(pattern).fullmatch(path) is not None


class PathGlob:
    """A pattern compiled once, matched against many relative paths with the anchoring rules above."""

    def __init__(self, pattern: str) -> None:
        self.names_only = "/" not in pattern
        if self.names_only or pattern.startswith("**"):
            anchored = pattern
        elif pattern.startswith("/"):
            anchored = pattern.lstrip("/")  # at the base folder
        else:
            anchored = "**/" + pattern
        self._regex = _compile(anchored)

    def match(self, rel: str) -> bool:
        return self._regex.fullmatch(rel.rsplit("/", 1)[-1] if self.names_only else rel) is not None


def path_match(pattern: str, rel: str) -> bool:
    return PathGlob(pattern).match(rel)
