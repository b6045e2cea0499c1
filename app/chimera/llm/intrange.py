"""GBNF for integers within bounds: JSON Schema's minimum / maximum / exclusiveMinimum /
exclusiveMaximum on `"type": "integer"`, which llama.cpp's own schema converter enforces too.

A range of decimal numbers becomes alternatives of digit classes: [17, 243] is
"1" [7-9] | [2-9] [0-9] | "1" [0-9] [0-9] | "2" [0-3] [0-9] | "2" "4" [0-3]. Numbers carry no
leading zeros; unbounded sides stop at 16 digits like the plain integer rule.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DIGITS = 16
BOUND_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _digit(lo: str, hi: str) -> str:
    return f'"{lo}"' if lo == hi else f"[{lo}-{hi}]"


def _same_length(lo: str, hi: str) -> list[str]:
    """Sequences of digit classes matching every digit string of len(lo) between lo and hi."""
    if not lo:
        return [""]
    if lo == "0" * len(lo) and hi == "9" * len(hi):
        return [" ".join(["[0-9]"] * len(lo))]
    if lo[0] == hi[0]:
        return [f'"{lo[0]}" {rest}'.strip() for rest in _same_length(lo[1:], hi[1:])]
    n = len(lo) - 1
    lo_full, hi_full = lo[1:] == "0" * n, hi[1:] == "9" * n  # the first digit's whole tail range
    first, last = int(lo[0]) + (not lo_full), int(hi[0]) - (not hi_full)
    out = [] if lo_full else [f'"{lo[0]}" {rest}'.strip() for rest in _same_length(lo[1:], "9" * n)]
    if first <= last:
        out.append(" ".join([_digit(str(first), str(last))] + ["[0-9]"] * n))
    if not hi_full:
        out += [f'"{hi[0]}" {rest}'.strip() for rest in _same_length("0" * n, hi[1:])]
    return out


def _non_negative(lo: int, hi: int | None) -> list[str]:
    """Alternatives for lo <= x <= hi (hi None: no upper bound), lo >= 0."""
    out: list[str] = []
    top = hi if hi is not None else 10 ** len(str(lo)) - 1
    for length in range(len(str(lo)), len(str(top)) + 1):
        first = max(lo, 10 ** (length - 1) if length > 1 else 0)
        last = min(top, 10**length - 1)
        if first <= last:
            out += _same_length(str(first), str(last))
    if hi is None:  # and every longer number
        out.append(f"[1-9] [0-9]{{{len(str(lo))},{MAX_DIGITS - 1}}}")
    return out


def integer_rule(lo: int | None, hi: int | None) -> str:
    """A GBNF alternation (without the trailing space rule) for lo <= x <= hi."""
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"the integer bounds leave no value (minimum {lo} > maximum {hi})")
    alts: list[str] = []
    if lo is None or lo < 0:  # negatives: "-" then the magnitude, from |min(hi, -1)| to |lo|
        mag_lo = 1 if hi is None or hi >= 0 else -hi
        alts += [f'"-" {a}' for a in _non_negative(mag_lo, None if lo is None else -lo)]
    if hi is None or hi >= 0:
        alts += _non_negative(max(lo or 0, 0), hi)
    return " | ".join(f"({a})" if " " in a else a for a in alts)


def bounds(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    """The inclusive integer bounds a schema states (draft 4's boolean exclusive flags too)."""
    lo: int | None = None
    hi: int | None = None
    ex_min, ex_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if "minimum" in schema:
        m = schema["minimum"]
        lo = math.floor(m) + 1 if ex_min is True and m == math.floor(m) else math.ceil(m)
    if "maximum" in schema:
        m = schema["maximum"]
        hi = math.ceil(m) - 1 if ex_max is True and m == math.ceil(m) else math.floor(m)
    if isinstance(ex_min, (int, float)) and not isinstance(ex_min, bool):
        v = math.floor(ex_min) + 1
        lo = v if lo is None else max(lo, v)
    if isinstance(ex_max, (int, float)) and not isinstance(ex_max, bool):
        v = math.ceil(ex_max) - 1
        hi = v if hi is None else min(hi, v)
    return lo, hi
