"""Slot placement: prefix reuse first, then the most compact range of busy sequence ids."""

from __future__ import annotations

from dataclasses import dataclass, field

from chimera.llm.placement import choose_slot, common_prefix

TEMPLATE = list(range(100, 130))  # the chat template's opening tokens, cached in every used slot


@dataclass
class FakeSlot:
    id: int
    cache: list[int] = field(default_factory=list)


def slots(n: int, cache: list[int] | None = None) -> list[FakeSlot]:
    return [FakeSlot(i, list(cache or [])) for i in range(n)]


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2, 3]) == 2


def test_same_prompt_again_finds_its_own_slot_even_far_from_the_busy_ones() -> None:
    prompt = TEMPLATE + [1, 2, 3, 4, 5]
    ss = slots(8, TEMPLATE + [9])
    ss[7].cache = prompt + [77, 78]  # the previous answer follows the prompt
    free = [s for s in ss if s.id != 0]
    pick, keep = choose_slot(free, [0], prompt, free)
    assert pick.id == 7 and keep == len(prompt)


def test_equal_template_prefix_goes_next_to_the_busy_slots() -> None:
    ss = slots(8, TEMPLATE + [5, 6])
    prompt = TEMPLATE + [40, 41]
    free = [s for s in ss if s.id not in (0, 1, 2)]
    pick, keep = choose_slot(free, [0, 1, 2], prompt, free)
    assert pick.id == 3 and keep == len(TEMPLATE)


def test_a_token_or_two_more_of_prefix_does_not_spread_the_slots() -> None:
    # "Request 17" vs "Request 1": one more matching token in a far slot is not worth a wider range
    ss = slots(8, TEMPLATE + [5])
    prompt = TEMPLATE + [1, 7]
    ss[7].cache = TEMPLATE + [1, 9]
    free = [s for s in ss if s.id not in (0, 1)]
    pick, keep = choose_slot(free, [0, 1], prompt, free)
    assert pick.id == 2 and keep == len(TEMPLATE)


def test_a_much_longer_prefix_wins_over_compactness() -> None:
    system = list(range(1000, 1400))  # a 400-token system prompt cached in slot 6 only
    ss = slots(8, TEMPLATE)
    ss[6].cache = system + [1, 2]
    prompt = system + [3, 4]
    free = [s for s in ss if s.id != 0]
    pick, keep = choose_slot(free, [0], prompt, free)
    assert pick.id == 6 and keep == 400


def test_busy_range_in_the_middle_fills_the_lower_side_first() -> None:
    ss = slots(8, TEMPLATE)
    free = [s for s in ss if s.id not in (3, 4)]
    pick, _ = choose_slot(free, [3, 4], TEMPLATE + [1], free)
    assert pick.id == 2  # 2 and 5 keep the range at three ids; the lower one wins


def test_no_reuse_allowed_still_places_compactly_and_keeps_nothing() -> None:
    ss = slots(4, TEMPLATE)
    free = [s for s in ss if s.id != 0]
    pick, keep = choose_slot(free, [0], TEMPLATE + [1], [])
    assert pick.id == 1 and keep == 0


def test_idle_server_prefers_the_slot_that_throws_away_least() -> None:
    ss = slots(4)
    ss[0].cache = TEMPLATE + list(range(500))  # a long conversation worth keeping
    ss[1].cache = TEMPLATE + [7]
    ss[2].cache = TEMPLATE + [8, 9, 10]
    ss[3].cache = TEMPLATE + [11, 12]
    pick, keep = choose_slot(ss, [], TEMPLATE + [1], ss)
    assert pick.id == 1 and keep == len(TEMPLATE)
