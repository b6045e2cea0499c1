"""Split text into chunks of at most N embedding-model tokens, with overlap, preferring
paragraph and then sentence boundaries; only a sentence longer than a chunk is cut mid-sentence
(at word boundaries).

`count` is the embedding model's token counter (without special tokens). Sentences are counted
one by one and packed greedily, so a chunk's count is the sum of its pieces' counts, which for
WordPiece/BPE vocabularies matches counting the joined text to within a token or two per piece.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"')\]]*\s+(?=\S)")


@dataclass
class Piece:
    text: str
    tokens: int
    paragraph_start: bool


def _sentences(paragraph: str) -> list[str]:
    out, start = [], 0
    for m in _SENTENCE_END.finditer(paragraph):
        out.append(paragraph[start:m.end()].strip())
        start = m.end()
    out.append(paragraph[start:].strip())
    return [s for s in out if s]


def _split_long(sentence: str, limit: int, count: Callable[[str], int]) -> Iterator[str]:
    """A sentence over the limit: cut at word boundaries into pieces that fit."""
    words = sentence.split()
    cur: list[str] = []
    for w in words:
        if cur and count(" ".join([*cur, w])) > limit:
            yield " ".join(cur)
            cur = []
        cur.append(w)
        while len(cur) == 1 and count(cur[0]) > limit:  # one enormous "word": cut by characters
            word = cur.pop()
            cut = max(1, len(word) * limit // max(1, count(word)))
            yield word[:cut]
            cur = [word[cut:]] if word[cut:] else []
    if cur:
        yield " ".join(cur)


def pieces(text: str, limit: int, count: Callable[[str], int]) -> Iterator[Piece]:
    for para in _PARAGRAPHS.split(text):
        first = True
        for sentence in _sentences(" ".join(para.split())):
            n = count(sentence)
            parts = [(sentence, n)] if n <= limit else [(p, count(p)) for p in _split_long(sentence, limit, count)]
            for part, k in parts:
                yield Piece(part, k, first)
                first = False


def chunk(text_pieces: Iterable[Piece], limit: int, overlap: int) -> Iterator[str]:
    """Greedy packing of pieces into chunks of ≤ `limit` tokens; each chunk after the first starts
    with the previous chunk's last pieces worth ≤ `overlap` tokens. A new paragraph closes a chunk
    once it is at least half full, so chunks tend to hold whole paragraphs."""
    cur: list[Piece] = []
    size = 0
    fresh = 0  # pieces in `cur` that are not overlap

    def carry() -> list[Piece]:
        kept: list[Piece] = []
        total = 0
        for p in reversed(cur):
            if total + p.tokens > overlap:
                break
            kept.insert(0, p)
            total += p.tokens
        return kept

    for p in text_pieces:
        sep = 1 if cur else 0
        if cur and fresh and (size + sep + p.tokens > limit or (p.paragraph_start and size >= limit // 2)):
            yield _join(cur)
            cur = carry()
            size = sum(q.tokens for q in cur) + max(0, len(cur) - 1)
            fresh = 0
            while cur and size + 1 + p.tokens > limit:  # the overlap must leave room for the new piece
                size -= cur.pop(0).tokens + 1
            size = max(size, 0)
        size += (1 if cur else 0) + p.tokens
        cur.append(p)
        fresh += 1
    if cur and fresh:
        yield _join(cur)


def _join(pieces_: list[Piece]) -> str:
    out = ""
    for p in pieces_:
        out += ("\n\n" if p.paragraph_start and out else (" " if out else "")) + p.text
    return out


def split(text: str, limit: int, overlap: int, count: Callable[[str], int]) -> list[str]:
    return list(chunk(pieces(text, limit, count), limit, overlap))
