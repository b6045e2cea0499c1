"""Token sequences for a cross-encoder reranker: [BOS] query [EOS] [SEP] document [EOS], as the
model's vocabulary asks."""

from __future__ import annotations

from typing import Any

# llama.cpp's enum llama_pooling_type, by --pooling's names
POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}


def rank_pair(engine: Any, query: str, doc: str) -> list[int]:
    m, ll = engine.model, engine.ll
    v = m.vocab
    toks: list[int] = []
    if ll.llama_vocab_get_add_bos(v):
        toks.append(int(ll.llama_vocab_bos(v)))
    toks += m.tokenize(query, add_special=False, parse_special=False)
    if ll.llama_vocab_get_add_eos(v):
        toks.append(int(ll.llama_vocab_eos(v)))
    if ll.llama_vocab_get_add_sep(v):
        toks.append(int(ll.llama_vocab_sep(v)))
    toks += m.tokenize(doc, add_special=False, parse_special=False)
    if ll.llama_vocab_get_add_eos(v):
        toks.append(int(ll.llama_vocab_eos(v)))
    return toks
