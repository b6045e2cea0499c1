"""Speculative decoding inside continuous batching: a draft model (-md) and draft-free n-gram
lookup (--spec-type ngram-simple). Greedy output is the same as without speculation, alone and
with several requests in one batch, streamed or not; acceptance shows in timings and /metrics;
requests tune it with llama-server's speculative.* fields."""

from __future__ import annotations

import concurrent.futures as cf
import json
import re
from pathlib import Path

import pytest

from conftest import Server, load_error

PROMPTS = [
    "Write a poem about the sea.",
    "List the numbers from 1 to 30, separated by commas.",
    "Repeat this sentence three times: the quick brown fox jumps over the lazy dog.",
    "Rewrite this code with the function renamed to total: def add(a, b):\n    return a + b\n\nprint(add(1, 2))\nprint(add(3, 4))",
]


def chat(s: Server, prompt: str, **extra: object) -> dict[str, object]:
    r = s.http().post("/v1/chat/completions", timeout=600, json={
        "messages": [{"role": "user", "content": prompt}], "max_tokens": 96, "temperature": 0, **extra})
    assert r.status_code == 200, r.text
    return dict(r.json())


def text(r: dict[str, object]) -> str:
    return str(r["choices"][0]["message"]["content"])  # type: ignore[index]


def metric(s: Server, name: str) -> float:
    m = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", s.http().get("/metrics").text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="module")
def plain(smollm: Path) -> object:
    s = Server("-m", str(smollm), "-c", "4096", "-np", "4").wait_ready()
    yield s
    s.stop()


def test_greedy_output_is_the_same_with_a_draft_model_and_with_ngrams(plain: Server, start_server: type[Server],
                                                                      smollm: Path) -> None:
    drafted = start_server("-m", str(smollm), "-c", "4096", "-np", "4", "-md", str(smollm), "--draft-max", "4").wait_ready()
    ngram = start_server("-m", str(smollm), "-c", "4096", "-np", "4", "--spec-type", "ngram-simple",
                         "--spec-ngram-simple-size-n", "4").wait_ready()
    for prompt in PROMPTS:
        want = text(chat(plain, prompt))
        d = chat(drafted, prompt)
        assert text(d) == want, prompt
        timings = d["timings"]
        assert timings["draft_n"] > 0 and 0 < timings["draft_n_accepted"] <= timings["draft_n"]  # type: ignore[index,operator]
        assert text(chat(ngram, prompt)) == want, prompt
    # several requests in one batch, each verifying its own draft
    with cf.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: text(chat(drafted, p)), PROMPTS))
    assert together == [text(chat(plain, p)) for p in PROMPTS]
    # the same model drafts for itself: nearly every draft is taken
    assert metric(drafted, "chimera_llm_draft_accepted_tokens_total") >= 0.8 * metric(drafted, "chimera_llm_draft_tokens_total")
    assert metric(drafted, "llamacpp:spec_decode_num_draft_tokens_total") == metric(drafted, "chimera_llm_draft_tokens_total")
    assert metric(ngram, "chimera_llm_draft_accepted_tokens_total") > 0  # the code rewrite repeats its input


def test_streaming_and_logprobs_with_speculation(plain: Server, start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm), "-c", "2048", "-np", "2", "-md", str(smollm)).wait_ready()
    prompt = PROMPTS[1]
    parts: list[str] = []
    with s.http().stream("POST", "/v1/chat/completions", json={
            "messages": [{"role": "user", "content": prompt}], "max_tokens": 96, "temperature": 0, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                ev = json.loads(line[6:])
                for c in ev.get("choices", []):
                    parts.append(c["delta"].get("content") or "")
    assert "".join(parts) == text(chat(plain, prompt))
    r = chat(s, prompt, logprobs=True, top_logprobs=2)
    content = r["choices"][0]["logprobs"]["content"]  # type: ignore[index]
    assert len(content) == r["usage"]["completion_tokens"] and all(len(c["top_logprobs"]) == 2 for c in content)  # type: ignore[index]
    assert r["timings"]["draft_n"] > 0  # type: ignore[index]


def test_requests_tune_speculation(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm), "-c", "2048", "-np", "1", "-md", str(smollm), "--draft-max", "8").wait_ready()
    prompt = PROMPTS[1]
    base = chat(s, prompt)
    assert base["timings"]["draft_n"] > 0  # type: ignore[index]
    off = chat(s, prompt, **{"speculative.n_max": 0})
    assert "draft_n" not in off["timings"] and text(off) == text(base)  # type: ignore[operator]
    one = chat(s, prompt, **{"speculative.n_max": 1})
    t = one["timings"]
    assert 0 < t["draft_n"] <= t["predicted_n"] and text(one) == text(base)  # type: ignore[index,operator]
    # a minimum above the maximum: no draft is long enough to be checked
    assert "draft_n" not in chat(s, prompt, **{"speculative.n_min": 9})["timings"]  # type: ignore[operator]
    # p_min 1.0: the draft model stops at once unless it is certain
    sure = chat(s, prompt, **{"speculative.p_min": 1.0})
    assert sure["timings"].get("draft_n", 0) < base["timings"]["draft_n"]  # type: ignore[index,union-attr]
    bad = s.http().post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "speculative.p_min": 2})
    assert bad.status_code == 400 and "speculative.p_min" in bad.text


def test_a_draft_model_must_share_the_vocabulary(start_server: type[Server], smollm: Path, gemma: Path) -> None:
    s = start_server("-m", str(smollm), "-c", "1024", "-md", str(gemma))
    assert "share the model's tokenizer" in load_error(s, 120)
    for flags, message in ((("--spec-type", "draft-eagle3"), "not supported here"),
                           (("--spec-type", "draft-simple"), "needs a draft model"),
                           (("--spec-type", "ngram-fancy"), "unknown type")):
        p = start_server("-m", str(smollm), *flags)
        assert p.proc.wait(60) == 2 and message in p.output()
