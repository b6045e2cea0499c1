"""<think> splitting: whole text and every streaming split agree."""

import pytest

from chimera.llm.reasoning import ReasoningSplitter, split

CASES = [
    ("<think>I should greet.</think>\n\nHello!", False, ("I should greet.", "Hello!")),
    ("  <think>plan</think>answer", False, ("plan", "answer")),
    ("plan it</think>\n\nanswer", True, ("plan it", "answer")),
    ("No thinking here.", False, ("", "No thinking here.")),
    ("<thin", False, ("", "<thin")),
    ("<think>cut off by max_tokens", False, ("cut off by max_tokens", "")),
    ("a < b and <think> later", False, ("", "a < b and <think> later")),
    ("<think>x</thi", False, ("x</thi", "")),
]


@pytest.mark.parametrize("text,inside,expected", CASES)
def test_whole_split(text: str, inside: bool, expected: tuple[str, str]) -> None:
    assert split(text, inside) == expected


@pytest.mark.parametrize("text,inside,expected", CASES)
def test_every_stream_split_agrees(text: str, inside: bool, expected: tuple[str, str]) -> None:
    for cut in range(len(text) + 1):
        s = ReasoningSplitter(inside)
        r1, c1 = s.feed(text[:cut])
        r2, c2 = s.feed(text[cut:])
        r3, c3 = s.finish()
        assert (r1 + r2 + r3, c1 + c2 + c3) == expected, cut


def test_char_by_char() -> None:
    text = "<think>deep thought</think>\n\nThe answer is 42."
    s = ReasoningSplitter()
    parts = [s.feed(ch) for ch in text]
    tail = s.finish()
    assert "".join(p[0] for p in parts) + tail[0] == "deep thought"
    assert "".join(p[1] for p in parts) + tail[1] == "The answer is 42."


HARMONY = ("<|channel|>analysis<|message|>User wants weather.<|end|><|start|>assistant"
           "<|channel|>final<|message|>It is sunny in Paris.<|return|>")


def test_harmony_channels_split_at_every_point() -> None:
    from chimera.llm.reasoning import HarmonySplitter, split_with

    assert split_with(HarmonySplitter(), HARMONY) == ("User wants weather.", "It is sunny in Paris.")
    for cut in range(len(HARMONY) + 1):
        h = HarmonySplitter()
        a, b, c = h.feed(HARMONY[:cut]), h.feed(HARMONY[cut:]), h.finish()
        assert (a[0] + b[0] + c[0], a[1] + b[1] + c[1]) == ("User wants weather.", "It is sunny in Paris."), cut
    assert split_with(HarmonySplitter(), "plain text") == ("", "plain text")
