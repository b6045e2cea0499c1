"""RAG logic: chunking (token limits, overlap, boundaries, with a word-count tokenizer) and filters."""

from __future__ import annotations

from chimera.rag.chunking import split


def words(s: str) -> int:
    return len(s.split())


def test_paragraphs_stay_whole_when_they_fit() -> None:
    text = "One two three. Four five six.\n\nSeven eight nine. Ten eleven twelve."
    assert split(text, 8, 0, words) == ["One two three. Four five six.", "Seven eight nine. Ten eleven twelve."]


def test_chunks_respect_the_limit_and_overlap_whole_sentences() -> None:
    sentences = [f"Sentence number {i} has six words." for i in range(20)]
    chunks = split(" ".join(sentences), 20, 6, words)
    assert all(words(c) <= 20 for c in chunks)
    for a, b in zip(chunks, chunks[1:]):
        last = a.split(". ")[-1].rstrip(".")
        assert b.startswith(last)  # the previous chunk's last sentence opens the next one
    covered = " ".join(chunks)
    assert all(s in covered for s in sentences)


def test_a_sentence_longer_than_a_chunk_is_cut_at_words() -> None:
    long = " ".join(f"w{i}" for i in range(50)) + "."
    chunks = split(long, 12, 0, words)
    assert all(words(c) <= 12 for c in chunks)
    assert " ".join(chunks).split() == long.split()


def test_empty_text_gives_no_chunks() -> None:
    assert split("  \n\n  ", 10, 2, words) == []


def test_no_chunk_is_pure_overlap() -> None:
    chunks = split("A b c. D e f. G h i.", 6, 6, words)
    assert chunks[-1].endswith("G h i.") and len(set(chunks)) == len(chunks)


def test_filters_become_parameterized_sql() -> None:
    import apsw
    import pytest

    from chimera.errors import BadRequest
    from chimera.rag.filters import to_sql

    con = apsw.Connection(":memory:")
    con.execute("CREATE TABLE f(name TEXT, attributes TEXT)")
    rows = [("a", '{"lang": "en", "year": 2020, "draft": true}'), ("b", '{"lang": "fr", "year": 2023}'), ("c", "{}")]
    con.executemany("INSERT INTO f VALUES (?, ?)", rows)

    def names(flt: object) -> list[str]:
        sql, args = to_sql(flt)
        return [r[0] for r in con.execute(f"SELECT name FROM f WHERE {sql} ORDER BY name", args)]

    assert names({"type": "eq", "key": "lang", "value": "en"}) == ["a"]
    assert names({"type": "ne", "key": "lang", "value": "en"}) == ["b", "c"]
    assert names({"type": "gte", "key": "year", "value": 2021}) == ["b"]
    assert names({"type": "eq", "key": "draft", "value": True}) == ["a"]
    assert names({"type": "in", "key": "lang", "value": ["fr", "de"]}) == ["b"]
    assert names({"type": "or", "filters": [{"type": "eq", "key": "lang", "value": "fr"},
                                            {"type": "lt", "key": "year", "value": 2021}]}) == ["a", "b"]
    for bad in ({"type": "like", "key": "a", "value": 1}, {"type": "eq", "key": "a'; DROP", "value": 1},
                {"type": "and", "filters": []}, {"type": "eq", "key": "a", "value": [1]}, "x"):
        with pytest.raises(BadRequest):
            to_sql(bad)
