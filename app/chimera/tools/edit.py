"""edit_file: exact text replacements, several per call, all matched against the file as it was.

Each old_text must occur once; where one is not found as given, the match is retried with both
sides normalized line by line (trailing blanks dropped; typographic quotes, dashes and spaces made
ASCII), the way a model's copy of a file drifts. Then the lines no edit touches keep their original
bytes, and the edited lines come from the normalized text.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

from ..errors import BadRequest
from .base import Bound, Context, Json, Params, Tool, clean, function
from .io import tool_io

_ASCII = str.maketrans({
    **dict.fromkeys("\u2018\u2019\u201a\u201b", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
    **dict.fromkeys("\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000", " "),
})
_TRAILING = re.compile(r"[ \t\r]+$", re.M)


def normalize(text: str) -> str:
    """Per line: trailing blanks dropped, look-alike punctuation and spaces made ASCII (the line
    count stays)."""
    return _TRAILING.sub("", text.translate(_ASCII))


def split_lines(text: str) -> list[str]:
    """Lines with their newlines kept."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def count(text: str, needle: str) -> int:
    """Occurrences that do not overlap."""
    return text.count(needle) if needle else 0


@dataclass(frozen=True)
class Match:
    edit: int  # index in the request's edits
    at: int
    length: int
    new: str


def replace(text: str, matches: list[Match], offset: int = 0) -> str:
    """`text` with the (sorted, disjoint) matches replaced; positions are `offset` + index in `text`."""
    out: list[str] = []
    pos = 0
    for m in matches:
        out += [text[pos:m.at - offset], m.new]
        pos = m.at - offset + m.length
    return "".join(out) + text[pos:]


def replace_keeping_lines(original: str, normalized: str, matches: list[Match]) -> str:
    """Replacements found in the normalized text, applied there; every line no match touches is
    copied from the original."""
    lines = split_lines(normalized)
    starts = [0]
    for text in lines:
        starts.append(starts[-1] + len(text))
    groups: list[tuple[int, int, list[Match]]] = []  # first line, last line (inclusive), its matches
    for m in matches:
        first = bisect_right(starts, m.at) - 1
        last = bisect_right(starts, m.at + m.length - 1) - 1
        if groups and first <= groups[-1][1]:
            groups[-1] = (groups[-1][0], max(groups[-1][1], last), [*groups[-1][2], m])
        else:
            groups.append((first, last, [m]))
    kept = split_lines(original)
    out: list[str] = []
    line = 0
    for first, last, group in groups:
        out += kept[line:first]
        out.append(replace(normalized[starts[first]:starts[last + 1]], group, starts[first]))
        line = last + 1
    out += kept[line:]
    return "".join(out)


class EditFile(Tool):
    name, display_name, uses_cwd, write = "edit_file", "Edit file", True, True

    def definition(self) -> Json:
        item = {"type": "object", "properties": {
            "old_text": {"type": "string", "description": "text to replace: exactly as in the file, found once there, "
                                                          "not overlapping another edit's"},
            "new_text": {"type": "string", "description": "what replaces it"},
        }, "required": ["old_text", "new_text"]}
        return function(self.name, "Edit a file by exact text replacement. Every old_text is matched against the file as "
                        "it is before this call (not after the edits before it) and must occur once; join nearby "
                        "changes into one edit rather than overlapping edits. To replace a whole file, use write_file.", {
                            "path": {"type": "string", "description": "the file"},
                            "edits": {"type": "array", "description": "one or more replacements", "items": item},
                        }, ("path", "edits"))

    def bind(self, params: Json, ctx: Context) -> Bound:
        p = Params(params)
        path = p.text("path")
        given = params.get("edits")
        edits: list[tuple[str, str]] = []
        for i, e in enumerate(given if isinstance(given, list) else []):
            if not isinstance(e, dict) or not isinstance(e.get("old_text"), str) or not isinstance(e.get("new_text"), str):
                raise BadRequest(f"'params.edits[{i}]' must be an object with the strings old_text and new_text",
                                 param=f"params.edits.{i}")
            edits.append((e["old_text"], clean(e["new_text"])))
        io = tool_io(ctx)

        async def result() -> Json:
            if not edits:
                return {"error": '"edits" must be a non-empty array'}
            for i, (old, _new) in enumerate(edits):
                if not old:
                    return {"error": f"edits[{i}].old_text must not be empty"}
            data = await io.read(path)
            if data is None:
                return {"error": f"failed to open file: {path}"}
            original = data.decode("utf-8", errors="surrogateescape")
            normalized = normalize(original)
            fuzzy = False
            for i, (old, _new) in enumerate(edits):
                if old not in original:
                    if normalize(old) not in normalized:
                        return {"error": f"could not find edits[{i}].old_text in {path}, it must match the file's current content exactly"}
                    fuzzy = True
            base = normalized if fuzzy else original
            matches = []
            for i, (old, new) in enumerate(edits):
                n = count(normalized, normalize(old))  # a copy that differs only in blanks counts too
                if n > 1:
                    return {"error": f"found {n} occurrences of edits[{i}].old_text in {path}, it must be unique"}
                needle = normalize(old) if fuzzy else old
                matches.append(Match(i, base.find(needle), len(needle), new))
            matches.sort(key=lambda m: m.at)
            for a, b in zip(matches, matches[1:]):
                if a.at + a.length > b.at:
                    return {"error": f"edits[{a.edit}] and edits[{b.edit}] overlap in {path}; merge them into one edit or "
                                     "target disjoint regions"}
            changed = replace_keeping_lines(original, normalized, matches) if fuzzy else replace(original, matches)
            if changed == original:
                return {"error": "no changes made: the replacement(s) produced identical content"}
            if not await io.write(path, changed.encode("utf-8", errors="surrogateescape")):
                return {"error": f"failed to write file: {path}"}
            return {"result": "file edited successfully", "path": path, "edits_applied": len(matches)}

        return Bound(result)
