"""The LLM routes through the official openai SDK against a real server and a real model."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from conftest import Server, module_server

HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]


@pytest.fixture(scope="module")
def server(smollm: Path) -> Iterator[Server]:
    yield from module_server("-m", str(smollm), "-np", "8", "-c", "8192")


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return server.client()


def test_chat_non_streaming(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=HELLO, max_tokens=24, temperature=0)
    c = r.choices[0]
    assert c.message.role == "assistant" and c.message.content
    assert c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"


def test_chat_streaming_matches_non_streaming(client: openai.OpenAI) -> None:
    # greedy, and no prefix reuse: a different batch shape can change the last digits of logits
    nocache = {"cache_prompt": False}
    full = client.chat.completions.create(model="m", messages=HELLO, max_tokens=24, temperature=0, extra_body=nocache)
    stream = client.chat.completions.create(model="m", messages=HELLO, max_tokens=24, temperature=0, stream=True,
                                            extra_body=nocache)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == full.choices[0].finish_reason
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)


def sse_data(http: httpx.Client, path: str, body: dict[str, object]) -> list[dict[str, object]]:
    with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200, r.read()
        return [json.loads(ln[6:]) for ln in r.iter_lines() if ln.startswith("data: ") and ln != "data: [DONE]"]


def test_chat_stream_chunks_as_llama_server_sends_them(server: Server) -> None:
    """The role comes first with content null (not ""), no chunk carries empty content, and the
    timings ride on the last chunk: the usage chunk when include_usage asks for one."""
    body = {"messages": HELLO, "max_tokens": 6, "stream": True, "logprobs": True, "top_logprobs": 2, "ignore_eos": True}
    for include_usage in (False, True):
        events = sse_data(server.http(), "/v1/chat/completions", body | {"stream_options": {"include_usage": include_usage}})
        first = events[0]["choices"][0]  # type: ignore[index]
        assert first["delta"] == {"role": "assistant", "content": None} and "timings" not in events[0]
        deltas = [e["choices"][0]["delta"] for e in events[1:] if e["choices"]]  # type: ignore[index]
        assert all("role" not in d and d.get("content") != "" for d in deltas)
        assert [k for k, e in enumerate(events) if "timings" in e] == [len(events) - 1]
        last = events[-1]
        assert ("usage" in last and last["choices"] == []) if include_usage else last["choices"][0]["finish_reason"]  # type: ignore[index]
        assert last["timings"]["predicted_n"] == 6  # type: ignore[index]


def test_max_tokens_gives_length(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=HELLO, max_tokens=3, temperature=0, extra_body={"ignore_eos": True})
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3
    r2 = client.chat.completions.create(model="m", messages=HELLO, max_completion_tokens=5, extra_body={"ignore_eos": True})
    assert r2.usage.completion_tokens == 5


def test_include_usage_final_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="m", messages=HELLO, max_tokens=8, stream=True, stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    ))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 8
    assert all(c.usage is None for c in chunks[:-1])


def test_completions_string_list_and_tokens(client: openai.OpenAI, server: Server) -> None:
    r = client.completions.create(model="m", prompt="The capital of France is", max_tokens=6, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text
    many = client.completions.create(model="m", prompt=["One", "Two"], max_tokens=4, temperature=0)
    assert [c.index for c in many.choices] == [0, 1]
    toks = server.http().post("/tokenize", json={"content": "The capital of France is"}).json()["tokens"]
    by_tokens = client.completions.create(model="m", prompt=toks, max_tokens=6, temperature=0)
    assert by_tokens.choices[0].text == r.choices[0].text
    echo = client.completions.create(model="m", prompt="Hello", max_tokens=3, temperature=0, echo=True)
    assert echo.choices[0].text.startswith("Hello")
    # legacy completion chunks carry finish_reason null until the last, as OpenAI's own API sends
    # them, which the SDK's Completion type (a non-optional finish_reason) refuses when strict
    lenient = server.client(_strict_response_validation=False)
    stream = list(lenient.completions.create(model="m", prompt="The capital of France is", max_tokens=6, temperature=0,
                                             stream=True))
    assert all(c.choices[0].finish_reason is None for c in stream[:-1] if c.choices)
    assert "".join(c.choices[0].text for c in stream if c.choices) == r.choices[0].text


def test_n_choices_run_in_parallel(client: openai.OpenAI) -> None:
    single = client.chat.completions.create(model="m", messages=HELLO, max_tokens=1)
    r = client.chat.completions.create(model="m", messages=HELLO, n=2, max_tokens=12, temperature=1.0, seed=7,
                                       extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.message.content for c in r.choices)
    assert r.usage.completion_tokens == 24
    assert r.usage.prompt_tokens == single.usage.prompt_tokens, "the prompt is counted once"
    streamed = list(client.chat.completions.create(model="m", messages=HELLO, n=2, max_tokens=6, stream=True,
                                                   extra_body={"ignore_eos": True}))
    finishes = {c.choices[0].index: c.choices[0].finish_reason for c in streamed if c.choices and c.choices[0].finish_reason}
    assert finishes == {0: "length", 1: "length"}


def test_stop_string_spanning_tokens_is_caught(client: openai.OpenAI) -> None:
    base = client.completions.create(model="m", prompt="Once upon a time", max_tokens=40, temperature=0, logprobs=0)
    text = base.choices[0].text
    pieces = base.choices[0].logprobs.tokens
    # a stop string that starts inside one token and ends inside the next
    stop = next(a[-2:] + b[:2] for a, b in zip(pieces[3:], pieces[4:]) if len(a) >= 2 and len(b) >= 2)
    assert stop in text
    cut = text.index(stop)
    r = client.completions.create(model="m", prompt="Once upon a time", max_tokens=40, temperature=0, stop=[stop, "zzzz"])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == text[:cut]
    lenient = openai.OpenAI(base_url=str(client.base_url), api_key="none", max_retries=0)  # see above
    streamed = "".join(c.choices[0].text for c in lenient.completions.create(
        model="m", prompt="Once upon a time", max_tokens=40, temperature=0, stop=stop, stream=True) if c.choices)
    assert streamed == text[:cut]


def test_logprobs_shape(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=HELLO, max_tokens=5, logprobs=True, top_logprobs=3,
                                       temperature=0, extra_body={"ignore_eos": True})
    content = r.choices[0].logprobs.content
    assert len(content) == 5
    for entry in content:
        assert entry.logprob <= 0.0
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
        assert entry.token == entry.top_logprobs[0].token, "greedy picks the most likely token"
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token
    assert "".join(e.token for e in content) == r.choices[0].message.content


def test_seed_determinism(client: openai.OpenAI) -> None:
    def run(seed: int) -> str:
        r = client.chat.completions.create(model="m", messages=HELLO, max_tokens=20, temperature=1.0, seed=seed,
                                           extra_body={"ignore_eos": True})
        return r.choices[0].message.content or ""

    a, b, c = run(1234), run(1234), run(99)
    assert a == b
    assert a != c


def test_penalties_are_applied(client: openai.OpenAI) -> None:
    """frequency / presence / repeat penalties build the native penalties sampler (a wrong call
    signature answered every such request with 500) and change greedy output."""
    ask = [{"role": "user", "content": "Write a long poem about the sea."}]
    body = {"ignore_eos": True}  # long enough output that greedy decoding repeats itself
    plain = client.chat.completions.create(model="m", messages=ask, max_tokens=64, temperature=0, extra_body=body)
    for extra in ({"frequency_penalty": 1.5}, {"presence_penalty": 1.5}, {"extra_body": {"repeat_penalty": 1.8}}):
        kw = {k: v for k, v in extra.items() if k != "extra_body"}
        r = client.chat.completions.create(model="m", messages=ask, max_tokens=64, temperature=0,
                                           extra_body=body | extra.get("extra_body", {}), **kw)  # type: ignore[arg-type,operator]
        assert r.choices[0].message.content and r.choices[0].message.content != plain.choices[0].message.content, extra


def test_every_sampler_at_once(server: Server) -> None:
    """One request with every sampling field away from its default, so each branch of the chain
    is built and run (/completion's native fields included)."""
    body = {"prompt": "The sea is", "max_tokens": 12, "temperature": 0.9, "top_k": 20, "top_p": 0.9, "min_p": 0.02,
            "typical_p": 0.95, "top_n_sigma": 2.0, "repeat_penalty": 1.1, "repeat_last_n": 32, "presence_penalty": 0.3,
            "frequency_penalty": 0.2, "dry_multiplier": 0.8, "dry_base": 1.5, "dry_allowed_length": 3,
            "dry_penalty_last_n": 64, "dry_sequence_breakers": ["\n", "."], "xtc_probability": 0.5, "xtc_threshold": 0.2,
            "seed": 7, "logit_bias": {"28": -5}, "ignore_eos": True, "grammar": 'root ::= [a-z ]+'}
    first = server.http().post("/v1/completions", json=body)
    assert first.status_code == 200, first.text
    again = server.http().post("/v1/completions", json=body).json()
    text = first.json()["choices"][0]["text"]
    assert text and set(text) <= set("abcdefghijklmnopqrstuvwxyz ") and again["choices"][0]["text"] == text
    assert first.json()["usage"]["completion_tokens"] == 12


def test_prefix_reuse_reports_cached_tokens(client: openai.OpenAI) -> None:
    msgs = [{"role": "system", "content": "You are a helpful assistant. " * 20}, {"role": "user", "content": "Hi there"}]
    first = client.chat.completions.create(model="m", messages=msgs, max_tokens=2)
    second = client.chat.completions.create(model="m", messages=msgs, max_tokens=2)
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens - 1
    assert second.usage.prompt_tokens_details.cached_tokens > first.usage.prompt_tokens_details.cached_tokens


def test_eight_concurrent_streams_complete_together(server: Server) -> None:
    client = server.client()
    results: dict[int, int] = {}
    seen_busy: list[int] = []
    done = threading.Event()

    def stream(i: int) -> None:
        chunks = list(client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"Story number {i} about a cat"}], max_tokens=48,
            stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
        ))
        results[i] = chunks[-1].usage.completion_tokens

    def watch() -> None:
        with server.http() as http:
            while not done.is_set():
                slots = http.get("/slots").json()
                seen_busy.append(sum(1 for s in slots if s["is_processing"]))
                time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=stream, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    watcher.join()
    assert results == {i: 48 for i in range(8)}
    assert max(seen_busy) >= 6, f"slots busy at once: {max(seen_busy)}"


def test_concurrent_streams_take_adjacent_slots(server: Server) -> None:
    """A decode computes attention over every slot between the lowest and highest busy one, so
    new requests go next to the busy slots rather than to whichever cache matches a token more."""
    def short(i: int) -> None:
        server.client().chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"Note {i * 37}: {'word ' * i}"}], max_tokens=2)

    fill = [threading.Thread(target=short, args=(i,)) for i in range(8)]  # a cache in every slot
    for t in fill:
        t.start()
    for t in fill:
        t.join(60)
    readers = []  # kept: an abandoned line iterator closes its connection, which ends the request
    with httpx.Client(base_url=server.base, timeout=60) as http, contextlib.ExitStack() as streams:
        for i in range(3):
            r = streams.enter_context(http.stream("POST", "/v1/chat/completions", json={
                "messages": [{"role": "user", "content": f"Request {i * 11}: a story"}], "max_tokens": 900,
                "ignore_eos": True, "stream": True,
            }))
            assert r.status_code == 200
            readers.append(r.iter_lines())
            for line in readers[-1]:
                if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                    break
        busy = sorted(s["id"] for s in http.get("/slots").json() if s["is_processing"])
        assert len(busy) == 3 and busy[-1] - busy[0] == 2, f"busy slots: {busy}"


def test_disconnect_frees_slot_for_next_request(server: Server) -> None:
    with httpx.Client(base_url=server.base, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json={
            "messages": HELLO, "max_tokens": 4000, "ignore_eos": True, "stream": True,
        }) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and '"content"' in line:
                    break
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not any(s["is_processing"] for s in http.get("/slots").json()):
                break
            time.sleep(0.02)
        assert not any(s["is_processing"] for s in http.get("/slots").json()), "the slot was not freed"
        r2 = http.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 4})
        assert r2.status_code == 200
        assert r2.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0, "the freed slot's cache is reused"


def test_over_long_prompt_is_400_context_length_exceeded(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "word " * 1500}], max_tokens=4)
    assert exc.value.code == "context_length_exceeded"


def test_generation_to_end_of_context_stops_with_length(start_server: type[Server], smollm: Path) -> None:
    """max_tokens is an upper bound, as in llama-server: more than the context holds is not refused,
    the generation ends where the context does."""
    s = start_server("-m", str(smollm), "-np", "1", "-c", "64").wait_ready()
    n_ctx = s.http().get("/props").json()["n_ctx_slot"]  # llama.cpp's smallest context (256)
    for limit in (None, n_ctx + 100):
        r = s.client().completions.create(model="m", prompt="Once upon a time", max_tokens=limit, extra_body={"ignore_eos": True})
        assert r.choices[0].finish_reason == "length"
        assert r.usage.prompt_tokens + r.usage.completion_tokens == n_ctx


@pytest.mark.parametrize("body,param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user"}]}, "messages.0.content"),
    ({"messages": HELLO, "temperature": -1}, "temperature"),
    ({"messages": HELLO, "n": 0}, "n"),
    ({"messages": HELLO, "logit_bias": {"999999": 1}}, "logit_bias"),
    ({"messages": HELLO, "logit_bias": [[1, "x"]]}, "logit_bias"),
    ({"messages": HELLO, "stop": 5}, "stop"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]}, "messages.0.content.0.type"),
])
def test_bad_chat_requests_are_400_with_param(server: Server, body: dict, param: str) -> None:
    r = server.http().post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize("path,body,param", [
    ("/v1/completions", {"prompt": [-9765], "echo": True}, "prompt"),  # llama.cpp aborted the process on it
    ("/v1/completions", {"prompt": [[1, 2], [49152]], "max_tokens": 1}, "prompt"),
    ("/completions", {"prompt": [1, 2, 49152], "n_predict": 1}, "prompt.2"),  # names the element
    ("/detokenize", {"tokens": [5, -1]}, "tokens"),
])
def test_token_ids_outside_the_vocabulary_are_400(server: Server, path: str, body: dict, param: str) -> None:
    r = server.http().post(path, json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert server.http().get("/health").status_code == 200


def test_bad_grammar_is_400(server: Server) -> None:
    r = server.http().post("/v1/completions", json={"prompt": "x", "grammar": "root ::= (", "max_tokens": 2})
    assert r.status_code == 400 and r.json()["error"]["param"] == "grammar"
    slots = server.http().get("/slots").json()
    assert not any(s["is_processing"] for s in slots)


def test_grammar_and_json_object_constrain_output(client: openai.OpenAI) -> None:
    r = client.completions.create(model="m", prompt="Answer:", max_tokens=8, extra_body={"grammar": 'root ::= ("yes" | "no")'})
    assert r.choices[0].text in ("yes", "no")
    j = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Give me a JSON object about a cat."}],
                                       max_tokens=60, response_format={"type": "json_object"}, temperature=0)
    if j.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(j.choices[0].message.content or ""), dict)
    else:
        assert (j.choices[0].message.content or "").lstrip().startswith("{")


def test_tokenize_detokenize_round_trip(server: Server) -> None:
    http = server.http()
    text = "Hello, wörld! 🌊 tokens"
    toks = http.post("/tokenize", json={"content": text}).json()["tokens"]
    assert all(isinstance(t, int) for t in toks) and len(toks) > 3
    assert http.post("/detokenize", json={"tokens": toks}).json()["content"] == text
    pieces = http.post("/tokenize", json={"content": text, "with_pieces": True}).json()["tokens"]
    assert [p["id"] for p in pieces] == toks
    bad = http.post("/detokenize", json={"tokens": [10**9]})
    assert bad.status_code == 400


def test_apply_template(server: Server) -> None:
    r = server.http().post("/apply-template", json={"messages": HELLO}).json()
    assert "<|im_start|>user\nWrite one sentence about the sea.<|im_end|>" in r["prompt"]
    assert r["prompt"].endswith("<|im_start|>assistant\n")


def test_embeddings_without_flag_is_501(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as exc:
        client.embeddings.create(model="m", input="hello")
    assert exc.value.status_code == 501
    assert "--embeddings" in exc.value.message


def test_unprefixed_aliases(server: Server) -> None:
    http = server.http()
    r = http.post("/chat/completions", json={"messages": HELLO, "max_tokens": 2})
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    r = http.post("/completions", json={"prompt": "Hi", "max_tokens": 2})  # llama-server's native shape, as /completion
    assert r.status_code == 200 and r.json()["tokens_predicted"] == 2 and isinstance(r.json()["content"], str)


def test_engine_metrics(server: Server) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    server.client().completions.create(model="m", prompt="Hi", max_tokens=2)
    fams = {f.name: f for f in text_string_to_metric_families(server.http().get("/metrics").text)}
    gen = fams["chimera_llm_generated_tokens"].samples
    assert any(s.value > 0 for s in gen)
    for name in ("chimera_llm_prompt_tokens", "chimera_llm_slots_busy", "chimera_llm_queue_length",
                 "chimera_llm_kv_cache_usage_ratio", "chimera_llm_time_to_first_token_seconds",
                 "chimera_llm_generation_tokens_per_second"):
        assert name in fams, name


def test_logit_bias_by_text_and_pairs(server: Server) -> None:
    """llama-server's forms: [[token or text, bias or false]] pairs, and text keys."""
    http = server.http()
    forced = http.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 4, "temperature": 0,
                                                     "logit_bias": [["zebra", 100]]}).json()
    text = forced["choices"][0]["message"]["content"]
    assert text and set(text) <= set("zebra")
    plain = http.post("/v1/completions", json={"prompt": "The capital of France is", "max_tokens": 1, "temperature": 0}).json()
    first = plain["choices"][0]["text"]
    banned = http.post("/v1/completions", json={"prompt": "The capital of France is", "max_tokens": 1, "temperature": 0,
                                                "logit_bias": {first: False}}).json()
    assert banned["choices"][0]["text"] != first
