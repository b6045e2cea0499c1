"""Stop strings over streamed text."""

from chimera.llm.stops import StopMatcher


def feed_all(m: StopMatcher, parts: list[str]) -> tuple[str, bool]:
    out = ""
    for p in parts:
        text, hit = m.feed(p)
        out += text
        if hit:
            return out, True
    return out + m.flush(), False


def test_stop_split_across_pieces_is_never_emitted() -> None:
    out, hit = feed_all(StopMatcher(["END"]), ["Hello E", "N", "D and more"])
    assert (out, hit) == ("Hello ", True)


def test_false_start_is_released() -> None:
    m = StopMatcher(["END"])
    assert m.feed("Hello EN") == ("Hello ", False)
    assert m.feed("ough") == ("ENough", False)


def test_earliest_of_several_stops_wins() -> None:
    out, hit = feed_all(StopMatcher(["world", "lo w"]), ["hello world"])
    assert (out, hit) == ("hel", True)


def test_held_text_released_at_end() -> None:
    out, hit = feed_all(StopMatcher(["###"]), ["a #", "#"])
    assert (out, hit) == ("a ##", False)


def test_no_stops_passes_through() -> None:
    assert StopMatcher([]).feed("abc") == ("abc", False)
