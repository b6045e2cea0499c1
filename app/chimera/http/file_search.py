"""The Responses API's `file_search` tool: retrieval from chimera's vector stores before the
model answers.

The last user message is the query. Each listed store is searched (the tool's `filters`,
`max_num_results` and `ranking_options` apply), the best passages go into the prompt as numbered
excerpts, and the response gets a `file_search_call` output item (with `results` when the request
includes `file_search_call.results`) and `file_citation` annotations on the answer.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from ..errors import BadRequest
from .vector_stores import rag

DEFAULT_RESULTS = 5
_MARKER = re.compile(r"\[(\d{1,2})\]")


class FileSearch:
    def __init__(self, query: str, results: list[dict[str, Any]], include_results: bool) -> None:
        self.id = "fs_" + uuid.uuid4().hex[:24]
        self.query = query
        self.results = results
        self.include_results = include_results

    def item(self, status: str = "completed") -> dict[str, Any]:
        results = None
        if self.include_results and status == "completed":
            results = [{"file_id": r["file_id"], "filename": r["filename"], "score": r["score"],
                        "attributes": r["attributes"], "text": r["content"][0]["text"]} for r in self.results]
        return {"type": "file_search_call", "id": self.id, "status": status, "queries": [self.query], "results": results}

    def context(self) -> str:
        if not self.results:
            return "A search of the user's files found nothing relevant. Say so if the question needs them."
        parts = ["Answer the question using these excerpts from the user's files. Cite an excerpt by its "
                 "number in square brackets, like [1]."]
        for i, r in enumerate(self.results, 1):
            parts.append(f"[{i}] ({r['filename']})\n{r['content'][0]['text']}")
        return "\n\n".join(parts)

    def annotations(self, text: str) -> list[dict[str, Any]]:
        """A citation where the answer cites an excerpt by number; without any, every file found
        is cited at the end of the answer."""
        out = []
        for m in _MARKER.finditer(text):
            n = int(m.group(1))
            if 1 <= n <= len(self.results):
                r = self.results[n - 1]
                out.append({"type": "file_citation", "index": m.end(), "file_id": r["file_id"], "filename": r["filename"]})
        if not out:
            seen: set[str] = set()
            for r in self.results:
                if r["file_id"] not in seen:
                    seen.add(r["file_id"])
                    out.append({"type": "file_citation", "index": len(text), "file_id": r["file_id"], "filename": r["filename"]})
        return out


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
    return ""


async def run_file_search(tools: list[dict[str, Any]], messages: list[dict[str, Any]], include: list[str] | None) -> FileSearch:
    svc = rag()
    query = _last_user_text(messages).strip()
    if not query:
        raise BadRequest("file_search needs a user message to search for", param="input")
    found: list[dict[str, Any]] = []
    limit = DEFAULT_RESULTS
    for i, tool in enumerate(tools):
        ids = tool.get("vector_store_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(x, str) for x in ids):
            raise BadRequest("file_search needs a non-empty list of vector_store_ids", param=f"tools.{i}.vector_store_ids")
        k = tool.get("max_num_results", DEFAULT_RESULTS)
        if not isinstance(k, int) or not 1 <= k <= 50:
            raise BadRequest("max_num_results must be between 1 and 50", param=f"tools.{i}.max_num_results")
        limit = max(limit, k) if i else k
        opts = tool.get("ranking_options") or {}
        threshold = opts.get("score_threshold") if isinstance(opts, dict) else None
        for sid in ids:
            page = await svc.search(sid, query, k, tool.get("filters"), False, threshold)
            found += page["data"]
    found.sort(key=lambda r: r["score"], reverse=True)
    return FileSearch(query, found[:limit], "file_search_call.results" in (include or []))
