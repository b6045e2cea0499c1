"""The context as llama-server sizes it: by default the model's training context in one KV cache
that the slots share, so one long conversation gets all of it; several long prompts at once take
turns instead of failing; an explicit -np splits the cache; --context-shift keeps a generation
going past the end of its context."""

from __future__ import annotations

import concurrent.futures as cf
import re
from pathlib import Path

import pytest

from conftest import Server


def metric(s: Server, name: str) -> float:
    text = s.http().get("/metrics").text
    return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M))


def listing(n: int, start: int = 0) -> str:
    return " ".join(f"item{start + i} is number {i}." for i in range(n))


def test_default_flags_answer_a_6000_token_conversation(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm)).wait_ready()  # no -c, no -np
    props = s.http().get("/props").json()
    assert (props["n_ctx"], props["n_ctx_slot"], props["total_slots"]) == (8192, 8192, 4)  # SmolLM2: 8k training context
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Remember this list: " + listing(540)},
        {"role": "assistant", "content": "I have read the list."},
        {"role": "user", "content": "What is item7? Answer briefly."},
    ]
    r = s.client(timeout=600).chat.completions.create(model="m", messages=messages, max_tokens=16, temperature=0)  # type: ignore[arg-type]
    assert r.usage is not None and r.usage.prompt_tokens > 5700, r.usage
    assert r.choices[0].finish_reason in ("stop", "length") and r.choices[0].message.content
    # what does not fit is still refused before any work, with what to change
    too_long = s.http().post("/v1/chat/completions", json={"messages": [{"role": "user", "content": listing(900)}]}, timeout=120)
    assert too_long.status_code == 400 and "raise -c" in too_long.json()["error"]["message"]
    assert "-np" not in too_long.json()["error"]["message"]  # the slots share the cache: fewer would not help


def test_long_prompts_at_once_take_turns_in_the_shared_cache(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm), "-c", "2048").wait_ready()  # 4 slots sharing 2048 cells

    def one(k: int) -> dict[str, object]:
        r = s.http().post("/v1/chat/completions", timeout=600, json={
            "messages": [{"role": "user", "content": f"Request {k}. " + listing(80, k)}], "max_tokens": 24, "temperature": 0})
        assert r.status_code == 200, r.text
        return dict(r.json())

    with cf.ThreadPoolExecutor(3) as pool:  # 3 x ~740 prompt tokens > 2048: one waits for room
        out = list(pool.map(one, range(3)))
    assert all(o["usage"]["prompt_tokens"] > 700 for o in out)  # type: ignore[index]
    assert all(o["choices"][0]["message"]["content"] for o in out)  # type: ignore[index]
    assert metric(s, "chimera_llm_kv_cache_full_total") >= 1



def test_generations_that_outgrow_the_shared_cache_end_the_longest(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm), "-c", "512").wait_ready()  # 4 slots sharing 512 cells

    def gen(k: int) -> dict[str, object]:  # each fits alone (~60 + 400 tokens), two at once do not
        r = s.http().post("/v1/completions", timeout=600, json={
            "prompt": f"Story {k}: " + listing(6, k), "max_tokens": 400, "ignore_eos": True, "temperature": 0})
        assert r.status_code == 200, r.text
        return dict(r.json())

    with cf.ThreadPoolExecutor(2) as pool:
        a, b = pool.map(gen, range(2))
    done = sorted([a["usage"]["completion_tokens"], b["usage"]["completion_tokens"]])  # type: ignore[index]
    assert done[1] == 400 and done[0] < 400  # the longest ended early; the other ran to its max_tokens
    assert sorted([a["choices"][0]["finish_reason"], b["choices"][0]["finish_reason"]]) == ["length", "length"]  # type: ignore[index]
    assert metric(s, "chimera_llm_kv_cache_full_total") >= 1


@pytest.mark.parametrize(("flags", "expect"), [
    (("-c", "2048", "-np", "2"), (2048, 1024, 2)),  # an explicit -np splits, as llama-server
    (("-c", "2048", "-np", "2", "-kvu"), (2048, 2048, 2)),
    (("-c", "2048", "-no-kvu"), (2048, 512, 4)),
    (("--kv-unified-per-slot", "768", "-np", "2"), (1536, 768, 2)),
])
def test_slot_sizes_follow_the_flags(start_server: type[Server], smollm: Path, flags: tuple[str, ...],
                                     expect: tuple[int, int, int]) -> None:
    s = start_server("-m", str(smollm), *flags).wait_ready()
    props = s.http().get("/props").json()
    assert (props["n_ctx"], props["n_ctx_slot"], props["total_slots"]) == expect
    r = s.http().post("/v1/completions", json={"prompt": listing(expect[1] // 4), "max_tokens": 4})  # more than a slot
    err = r.json()["error"]
    assert r.status_code == 400 and f"holds {expect[1]} tokens" in err["message"]
    # llama-server's shape of it, with OpenAI's code
    assert (err["type"], err["code"], err["n_ctx"]) == ("exceed_context_size_error", "context_length_exceeded", expect[1])
    assert err["n_prompt_tokens"] >= expect[1]


def test_context_shift_keeps_a_generation_going(start_server: type[Server], smollm: Path) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 600, "ignore_eos": True, "temperature": 0}
    plain = start_server("-m", str(smollm), "-c", "256", "-np", "1").wait_ready()
    for limit in (600, None):  # more than the context holds, or no limit: it ends at the context's end
        r = plain.http().post("/v1/completions", json={**body, "max_tokens": limit}, timeout=600)
        assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length"
        assert r.json()["usage"]["total_tokens"] == 256

    for keep in ("0", "-1"):
        s = start_server("-m", str(smollm), "-c", "256", "-np", "1", "--context-shift", "--keep", keep).wait_ready()
        r = s.http().post("/v1/completions", json=body, timeout=600)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["usage"]["completion_tokens"] == 600 and out["choices"][0]["finish_reason"] == "length"
        assert metric(s, "chimera_llm_context_shifts_total") >= 3  # 600 tokens through a 256-token context
        assert len(out["choices"][0]["text"]) > 600


def test_cache_reuse_moves_matching_chunks_into_place(start_server: type[Server], smollm: Path) -> None:
    body = " ".join(f"Line {i}: the value of x{i} is {i * i}." for i in range(60))
    extra = " ".join(f"Note {i}: this part will be dropped later." for i in range(10))
    first, second = "Summarize:\n" + extra + "\n" + body, "Summarize:\n" + body  # the second drops a middle part
    out = {}
    for flags in ((), ("--cache-reuse", "32")):
        s = start_server("-m", str(smollm), "-c", "4096", "-np", "1", *flags).wait_ready()
        for prompt in (first, second):
            r = s.http().post("/v1/completions", timeout=600, json={"prompt": prompt, "max_tokens": 12, "temperature": 0})
            assert r.status_code == 200, r.text
        out[flags] = (r.json()["timings"]["cache_n"], r.json()["choices"][0]["text"], metric(s, "chimera_llm_kv_shift_reused_tokens_total"))
    plain, reused = out[()], out[("--cache-reuse", "32")]
    assert plain[0] < 16 and plain[2] == 0  # only the common prefix
    assert reused[0] > 900 and reused[2] > 900  # the body moved back over the dropped part
    assert reused[1] == plain[1]
