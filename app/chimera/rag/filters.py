"""OpenAI attribute filters → a parameterized SQL condition over a file's JSON `attributes`.

    {"type": "eq"|"ne"|"gt"|"gte"|"lt"|"lte"|"in"|"nin", "key": K, "value": V}
    {"type": "and"|"or", "filters": [...]}
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import BadRequest

_OPS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_DEPTH = 8


def _value(v: Any, param: str) -> Any:
    if isinstance(v, bool):
        return int(v)  # JSON true/false are stored as 1/0 by SQLite's JSON functions
    if isinstance(v, (str, int, float)):
        return v
    raise BadRequest("a filter value must be a string, number or boolean", param=param)


def to_sql(f: Any, column: str = "f.attributes", depth: int = 0, param: str = "filters") -> tuple[str, list[Any]]:
    if depth > MAX_DEPTH:
        raise BadRequest(f"filters nest deeper than {MAX_DEPTH} levels", param=param)
    if not isinstance(f, dict) or not isinstance(f.get("type"), str):
        raise BadRequest("a filter is an object with a 'type'", param=param)
    kind = f["type"]
    if kind in ("and", "or"):
        subs = f.get("filters")
        if not isinstance(subs, list) or not subs:
            raise BadRequest(f"an '{kind}' filter needs a non-empty 'filters' list", param=param)
        parts = [to_sql(s, column, depth + 1, f"{param}.filters[{i}]") for i, s in enumerate(subs)]
        return "(" + f" {kind.upper()} ".join(p[0] for p in parts) + ")", [a for p in parts for a in p[1]]
    key = f.get("key")
    if not isinstance(key, str) or not _KEY.match(key):
        raise BadRequest("a comparison filter needs a 'key' of letters, digits, '_', '.', '-'", param=param)
    path = '$."' + key + '"'
    if kind in ("in", "nin"):
        values = f.get("value")
        if not isinstance(values, list) or not values:
            raise BadRequest(f"an '{kind}' filter needs a non-empty list 'value'", param=param)
        args = [_value(v, param) for v in values]
        marks = ",".join("?" * len(args))
        neg = "NOT " if kind == "nin" else ""
        return f"(json_extract({column}, ?) {neg}IN ({marks}))", [path, *args]
    if kind not in _OPS:
        raise BadRequest(f"unknown filter type {kind!r}: eq, ne, gt, gte, lt, lte, in, nin, and, or", param=param)
    if "value" not in f:
        raise BadRequest("a comparison filter needs a 'value'", param=param)
    value = _value(f["value"], param)
    if kind == "ne":  # a file without the key is "not equal" too
        return f"(json_extract({column}, ?) IS NOT ?)", [path, value]
    return f"(json_extract({column}, ?) {_OPS[kind]} ?)", [path, value]
