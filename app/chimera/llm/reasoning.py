"""Reasoning blocks: `<think>…</think>` at the start of a reply goes to `reasoning_content`.

DeepSeek R1, Qwen 3, QwQ and most open thinking models write their reasoning this way; some
templates open the block in the generation prompt, so the reply starts inside it. The splitter
works on a stream (holding back a tag split across tokens) and gives the same split for the
whole text as for any way of cutting it.
"""

from __future__ import annotations

import re

OPEN, CLOSE = "<think>", "</think>"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of tag."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


class ReasoningSplitter:
    def __init__(self, started_inside: bool = False) -> None:
        self.state = "think" if started_inside else "start"
        self.buf = ""
        self.after_close = False  # drop the blank lines between </think> and the answer

    def feed(self, delta: str) -> tuple[str, str]:
        """Returns (reasoning text, content text) that is safe to emit now."""
        self.buf += delta
        reasoning, content = "", ""
        while self.buf:
            if self.state == "start":
                stripped = self.buf.lstrip()
                if stripped.startswith(OPEN):
                    self.buf = stripped[len(OPEN):]
                    self.state = "think"
                    continue
                if not stripped or OPEN.startswith(stripped):
                    break  # maybe the start of <think>: wait for more
                self.state = "content"
                continue
            if self.state == "think":
                i = self.buf.find(CLOSE)
                if i != -1:
                    reasoning += self.buf[:i]
                    self.buf = self.buf[i + len(CLOSE):]
                    self.state, self.after_close = "content", True
                    continue
                keep = _partial_suffix(self.buf, CLOSE)
                reasoning += self.buf[: len(self.buf) - keep]
                self.buf = self.buf[len(self.buf) - keep:]
                break
            if self.after_close:
                stripped = self.buf.lstrip("\n")
                if not stripped:
                    self.buf = ""
                    break
                self.buf, self.after_close = stripped, False
            content += self.buf
            self.buf = ""
        return reasoning, content

    def finish(self) -> tuple[str, str]:
        """End of generation: what was held back goes where it belongs."""
        rest, self.buf = self.buf, ""
        if self.state == "think":
            return rest, ""  # an unclosed block (cut by max_tokens) is all reasoning
        if self.after_close:
            rest = rest.lstrip("\n")
        return "", rest


def split(text: str, started_inside: bool = False) -> tuple[str, str]:
    return split_with(ReasoningSplitter(started_inside), text)


def split_with(s: ReasoningSplitter | HarmonySplitter, text: str) -> tuple[str, str]:
    r1, c1 = s.feed(text)
    r2, c2 = s.finish()
    return r1 + r2, c1 + c2


_H_END = ("<|end|>", "<|return|>", "<|call|>", "<|start|>")
_H_SEGMENT = re.compile(r"<\|channel\|>(\w+)[^<]*(?:<\|constrain\|>\w+)?<\|message\|>(.*?)(?=<\|end\|>|<\|return\|>|<\|call\|>|<\|start\|>|$)", re.S)


def _harmony_split(text: str, final: bool) -> tuple[str, str]:
    """gpt-oss (harmony): analysis channel → reasoning, final channel → content."""
    if "<|channel|>" not in text:
        if not final and "<|channel|>".startswith(text.lstrip()):
            return "", ""  # maybe the start of a channel header
        return "", text
    if not final:  # a closing marker split at the end is not text yet
        cut = len(text)
        for tag in _H_END:
            cut = min(cut, len(text) - _partial_suffix(text, tag))
        text = text[:cut]
    reasoning, content = [], []
    for m in _H_SEGMENT.finditer(text):
        if m.group(1) == "analysis":
            reasoning.append(m.group(2))
        elif m.group(1) == "final":
            content.append(m.group(2))
    return "".join(reasoning), "".join(content)


class HarmonySplitter:
    """The ReasoningSplitter interface over harmony channels, by re-parsing the growing text."""

    def __init__(self) -> None:
        self.text = ""
        self.sent = ("", "")

    def _diff(self, now: tuple[str, str]) -> tuple[str, str]:
        out = tuple(n[len(s):] if n.startswith(s) else "" for n, s in zip(now, self.sent))
        self.sent = (self.sent[0] + out[0], self.sent[1] + out[1])
        return out[0], out[1]

    def feed(self, delta: str) -> tuple[str, str]:
        self.text += delta
        return self._diff(_harmony_split(self.text, final=False))

    def finish(self) -> tuple[str, str]:
        return self._diff(_harmony_split(self.text, final=True))
