"""Integer bounds in JSON schemas → GBNF alternations (checked by turning the GBNF into a regex)."""

from __future__ import annotations

import re

import pytest

from chimera.llm.intrange import bounds, integer_rule


def _regex(rule: str) -> re.Pattern[str]:
    """This module's GBNF subset (quoted literals, classes, {m,n}, parentheses, |) as a regex."""
    return re.compile("^(?:" + rule.replace('" "', "").replace('"', "").replace(" ", "") + ")$")


@pytest.mark.parametrize("lo,hi", [
    (17, 243), (-5, 5), (-120, -7), (0, 1000), (3, 3), (-1000, 37), (99, 1001), (0, None), (250, None),
    (None, -3), (None, 40), (-40, None), (1, 9), (10, 99), (0, 0), (-1, -1), (5, 105),
])
def test_exactly_the_numbers_in_range(lo: int | None, hi: int | None) -> None:
    rx = _regex(integer_rule(lo, hi))
    span = range(-3000, 3001)
    want = {n for n in span if (lo is None or n >= lo) and (hi is None or n <= hi)}
    assert {n for n in span if rx.match(str(n))} == want
    assert not rx.match("007") and not rx.match("-0") and not rx.match("+5")


def test_unbounded_sides_stop_at_sixteen_digits() -> None:
    rx = _regex(integer_rule(0, None))
    assert rx.match("9" * 16) and not rx.match("9" * 17)


def test_bounds_from_schemas() -> None:
    assert bounds({"minimum": 1, "maximum": 10}) == (1, 10)
    assert bounds({"exclusiveMinimum": 1, "exclusiveMaximum": 10}) == (2, 9)
    assert bounds({"minimum": 1.5, "maximum": 9.5}) == (2, 9)
    assert bounds({"minimum": 1, "exclusiveMinimum": True, "maximum": 3, "exclusiveMaximum": True}) == (2, 2)  # draft 4
    assert bounds({"minimum": 0, "exclusiveMinimum": 3}) == (4, None)


def test_empty_range_is_refused() -> None:
    with pytest.raises(ValueError, match="no value"):
        integer_rule(5, 4)
