"""Directory listings on the host for the search tools: `git ls-files` where the folder is in a git
repository and only files are asked for (so .gitignore applies), else a walk that lists junk
folders (.git, node_modules, build, ...) without going into them and never follows a link.
Both stop at a time budget; the walk says when it could not see everything.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["files", "dirs", "all"]

# listed but never walked: they can be enormous
JUNK_DIRS = frozenset({".git", ".svn", ".hg", "node_modules", "__pycache__", ".venv", "venv", "dist", "build", "target",
                       ".cache", ".idea", ".vscode"})
LIST_SECONDS = 15.0  # budget of one listing
GIT_MAX_OUTPUT = 8 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    rel: str  # '/'-separated, relative to the listed folder
    is_dir: bool = False


@dataclass
class Listing:
    entries: list[Entry] = field(default_factory=list)
    error: str = ""  # the folder is not one
    truncated: bool = False  # the time budget ran out, or a folder could not be read


def depth(rel: str) -> int:
    return rel.count("/") + 1


def walk(base: str, max_depth: int, kind: Kind, seconds: float = LIST_SECONDS) -> Listing:
    """Entries under `base` (absolute), folder by folder depth-first, in name order; `max_depth` 0 is unlimited, 1
    the folder's own entries. Blocking: run it in a worker thread."""
    out = Listing()
    if not os.path.isdir(base):
        out.error = "path does not exist or is not a directory"
        return out
    deadline = time.monotonic() + seconds
    stack: list[tuple[str, str, int]] = [(base, "", 0)]
    while stack:
        folder, rel_folder, level = stack.pop()
        try:
            with os.scandir(folder) as it:
                items = sorted(it, key=lambda e: e.name)
        except PermissionError:
            continue  # a folder we may not read is skipped, as `find` would report and go on
        except OSError:
            out.truncated = True
            continue
        below = []
        for item in items:
            if time.monotonic() > deadline:
                out.truncated = True
                return out
            rel = f"{rel_folder}/{item.name}" if rel_folder else item.name
            try:
                is_dir = item.is_dir()
                is_file = not is_dir and item.is_file()
            except OSError:
                continue
            if is_dir:
                if kind != "files":
                    out.entries.append(Entry(rel, True))
                if item.name.lower() in JUNK_DIRS or item.is_symlink():
                    continue  # a link may point back up the tree
                if max_depth == 0 or level + 1 < max_depth:
                    below.append((item.path, rel, level + 1))
            elif is_file and kind != "dirs":
                out.entries.append(Entry(rel))
        stack.extend(reversed(below))
    return out


def git_files(base: str, output: str, max_depth: int) -> list[Entry]:
    """`git ls-files -z` output → the files that exist (deleted tracked files are dropped).
    Blocking: run it in a worker thread."""
    out = []
    for rel in output.split("\0"):
        rel = rel.strip().replace("\\", "/")
        if not rel or (max_depth > 0 and depth(rel) > max_depth):
            continue
        if os.path.isfile(os.path.join(base, rel)):
            out.append(Entry(rel))
    return out
