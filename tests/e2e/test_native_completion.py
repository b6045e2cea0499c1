"""llama-server's native /completion: the completion object with every field llama-server sends
(generation_settings, tokens, completion_probabilities, truncated, response_fields), the prompt
forms it reads, a generation that runs into the end of its context, id_slot, and `__verbose` on
chat completions."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Server, module_server, shared_model

SPM = "tiny-random-llama-spm.gguf"  # 2-layer Llama with a SentencePiece vocab that adds BOS
SLOT = 256


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    yield from module_server("-m", str(shared_model(SPM)), "-c", str(2 * SLOT), "-np", "2", "-b", "32")


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with server.http() as c:
        yield c


def complete(http: httpx.Client, **body: Any) -> Any:
    r = http.post("/completion", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def events(http: httpx.Client, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200, r.read()
        return [json.loads(ln[6:]) for ln in r.iter_lines() if ln.startswith("data: ") and ln != "data: [DONE]"]


def test_the_completion_object_has_llama_servers_fields(http: httpx.Client) -> None:
    n_prompt = len(http.post("/tokenize", json={"content": "Once upon a time", "add_special": True}).json()["tokens"])
    out = complete(http, prompt="Once upon a time", n_predict=6, ignore_eos=True, temperature=0, seed=5, stop=["zzz"],
                   return_tokens=True)
    assert out["stop"] is True and out["index"] == 0 and out["id_slot"] in (0, 1) and isinstance(out["content"], str)
    assert len(out["tokens"]) == 6 and all(isinstance(t, int) for t in out["tokens"])
    assert (out["tokens_predicted"], out["tokens_evaluated"], out["tokens_cached"]) == (6, n_prompt, n_prompt + 5)
    assert out["prompt"].startswith("<s>") and out["prompt"].endswith("Once upon a time")
    assert (out["stop_type"], out["stopping_word"], out["truncated"]) == ("limit", "", False)
    assert out["has_new_line"] == ("\n" in out["content"]) and out["timings"]["predicted_n"] == 6
    gs = out["generation_settings"]
    assert (gs["n_predict"], gs["temperature"], gs["seed"], gs["stop"], gs["ignore_eos"]) == (6, 0.0, 5, ["zzz"], True)
    assert gs["logit_bias"] and all(b["bias"] is None for b in gs["logit_bias"])  # ignore_eos: every EOG token at -inf
    plain = complete(http, prompt="Once upon a time", n_predict=2, logit_bias={"5": -2})
    assert plain["tokens"] == []  # return_tokens is off by default
    assert plain["generation_settings"]["logit_bias"] == [{"bias": -2.0, "token": 5}]
    assert plain["generation_settings"]["seed"] == 0xFFFFFFFF  # llama.cpp's "random" seed


def test_response_fields_pick_and_unnest(http: httpx.Client) -> None:
    out = complete(http, prompt="Hello", n_predict=3, response_fields=["content", "generation_settings/n_predict", "nope/x"])
    assert set(out) == {"content", "generation_settings/n_predict"} and out["generation_settings/n_predict"] == 3
    assert "generation_settings" in complete(http, prompt="Hello", n_predict=1, response_fields=[])  # empty: every field
    bad = http.post("/completion", json={"prompt": "Hello", "response_fields": "content"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "response_fields"


def test_n_probs_before_and_after_sampling(http: httpx.Client) -> None:
    out = complete(http, prompt="The sky is", n_predict=4, n_probs=3, temperature=0, ignore_eos=True)
    probs = out["completion_probabilities"]
    assert len(probs) == 4
    for p in probs:
        assert set(p) == {"id", "token", "bytes", "logprob", "top_logprobs"} and p["logprob"] <= 0
        tops = p["top_logprobs"]
        assert len(tops) == 3 and [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)
        assert tops[0]["id"] == p["id"]  # greedy picks the most likely
    post = complete(http, prompt="The sky is", n_predict=4, n_probs=3, temperature=1.0, top_k=5, seed=1,
                    post_sampling_probs=True, ignore_eos=True)["completion_probabilities"]
    for p in post:
        assert set(p) == {"id", "token", "bytes", "prob", "top_probs"} and 0 < p["prob"] <= 1
        assert 0 < len(p["top_probs"]) <= 3 and all(0 < t["prob"] <= 1 for t in p["top_probs"])
        assert p["id"] in [t["id"] for t in p["top_probs"]] or p["prob"] <= p["top_probs"][-1]["prob"]
    greedy = complete(http, prompt="The sky is", n_predict=2, n_probs=3, temperature=0, post_sampling_probs=True)
    assert all(p["prob"] == 1.0 and [t["id"] for t in p["top_probs"]] == [p["id"]] for p in greedy["completion_probabilities"])
    assert "completion_probabilities" not in complete(http, prompt="The sky is", n_predict=2)
    for bad in ({"n_probs": -1}, {"post_sampling_probs": "yes"}):
        r = http.post("/completion", json={"prompt": "x", **bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == next(iter(bad))


def test_streamed_completion_sends_each_tokens_probabilities(http: httpx.Client) -> None:
    evs = events(http, "/completion", {"prompt": "The sky is", "n_predict": 4, "n_probs": 2, "stream": True,
                                       "temperature": 0, "ignore_eos": True})
    partial, last = evs[:-1], evs[-1]
    assert partial and all(not e["stop"] and len(e["completion_probabilities"]) == 1 and len(e["tokens"]) == 1 for e in partial)
    assert last["stop"] is True and last["content"] == "" and "completion_probabilities" not in last
    assert last["generation_settings"]["stream"] is True and last["tokens_predicted"] == 4


def test_prompt_forms(http: httpx.Client) -> None:
    text = "I believe the meaning of life is"
    with_bos = http.post("/tokenize", json={"content": text, "add_special": True}).json()["tokens"]
    body = {"n_predict": 5, "temperature": 0, "ignore_eos": True}
    want = complete(http, prompt=text, **body)["content"]
    assert complete(http, prompt=with_bos, **body)["content"] == want  # ids as given: no second BOS
    assert complete(http, prompt={"prompt_string": text}, **body)["content"] == want
    several = complete(http, prompt=[with_bos, text, {"prompt_string": text}], **body)
    assert [o["index"] for o in several] == [0, 1, 2] and {o["content"] for o in several} == {want}
    ids = complete(http, prompt=[1, 450, text, 13], **body)  # one prompt mixing ids and text
    assert isinstance(ids, dict) and ids["tokens_evaluated"] > 4
    no_bos = complete(http, prompt=with_bos[1:], **body)
    assert no_bos["tokens_evaluated"] == len(with_bos) - 1 and not no_bos["prompt"].startswith("<s>")
    two = complete(http, prompt="Hi", n_predict=2, n=2)
    assert [o["index"] for o in two] == [0, 1]
    png = base64.b64encode(b"\x89PNG not really").decode()
    for prompt, param in (([], "prompt"), ([{"x": 1}], "prompt.0"), ([True], "prompt.0"), ("", "prompt"),
                          ({"prompt_string": "a"} | {"multimodal_data": ["!!"]}, "prompt.multimodal_data.0"),
                          ({"prompt_string": [1, 2], "multimodal_data": [png]}, "prompt.prompt_string"),
                          ({"prompt_string": "a <__media__>", "multimodal_data": [png]}, "prompt.multimodal_data"),
                          ([text, {"prompt_string": "<__media__>", "multimodal_data": [png]}], "prompt.1"),
                          ([10**9], "prompt.0"), ([1, 2, -3], "prompt.2"), ([text, [5, 10**9]], "prompt.1.1")):
        r = http.post("/completion", json={"prompt": prompt})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (prompt, r.text)
    assert "--mmproj" in http.post("/completion", json={"prompt": {"prompt_string": "<__media__>", "multimodal_data": [png]}}).text


def test_prompt_progress_and_timings_per_token(http: httpx.Client) -> None:
    """return_progress (streamed): a report before the prompt is read (what the cache held), then one
    per batch of it (-b 32); timings_per_token: the timings so far on every piece, as llama-server."""
    prompt = "the quick brown fox jumps over the lazy dog " * 8
    body = {"prompt": prompt, "n_predict": 4, "stream": True, "return_progress": True, "timings_per_token": True,
            "ignore_eos": True, "id_slot": 0}
    for cached in (False, True):  # the same prompt again: read from the cache but for its last token
        evs = events(http, "/completion", body | {"cache_prompt": cached})
        reports = [e["prompt_progress"] for e in evs if "prompt_progress" in e]
        first = reports[0]
        assert first["processed"] == first["cache"] and (first["cache"] > 0) == cached
        assert all(b["processed"] > a["processed"] for a, b in zip(reports, reports[1:]))
        assert reports[-1]["processed"] == reports[-1]["total"] and len(reports) == (2 if cached else 1 + -(-first["total"] // 32))
        timed = [e["timings"] for e in evs if "prompt_progress" in e]
        assert timed[0]["prompt_n"] == 0 and timed[0]["prompt_ms"] == 0.0 and timed[0]["predicted_n"] == 0
        assert [t["prompt_ms"] for t in timed] == sorted(t["prompt_ms"] for t in timed)
        pieces = [e for e in evs if e.get("content")]
        assert pieces and all("timings" in e for e in pieces)
    assert not any("prompt_progress" in e for e in events(http, "/completion", {"prompt": prompt, "n_predict": 2, "stream": True}))
    assert "prompt_progress" not in complete(http, prompt=prompt, n_predict=2, return_progress=True)  # streams only
    chat = events(http, "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}], "max_tokens": 3,
                                                 "stream": True, "return_progress": True, "timings_per_token": True})
    progress = [e for e in chat if "prompt_progress" in e]
    assert progress and all(e["choices"][0]["delta"] == {"role": "assistant", "content": None} for e in progress)
    assert all("timings" in e for e in chat if e["choices"] and e["choices"][0]["delta"].get("content"))
    resp = events(http, "/v1/responses", {"input": prompt, "max_output_tokens": 3, "stream": True, "return_progress": True,
                                          "timings_per_token": True})
    assert any(e["type"] == "response.in_progress" and "prompt_progress" in e for e in resp)
    assert all("timings" in e for e in resp if e["type"] == "response.output_text.delta")
    assert "timings" in resp[-1] and resp[-1]["type"] == "response.completed"
    for bad in ({"return_progress": "yes"}, {"timings_per_token": 1}):
        r = http.post("/completion", json={"prompt": "x", **bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == next(iter(bad))


def test_generation_rates_count_decode_steps(http: httpx.Client) -> None:
    """The first token comes with the prompt's last decode: rates are over the n-1 steps after it."""
    one = complete(http, prompt="I believe", n_predict=1)["timings"]
    assert (one["predicted_n"], one["predicted_per_second"], one["predicted_per_token_ms"]) == (1, 0.0, 0.0)
    t = complete(http, prompt="I believe", n_predict=8, ignore_eos=True)["timings"]
    assert t["predicted_n"] == 8 and abs(t["predicted_per_second"] - 1e3 / t["predicted_ms"] * 7) < 1e-6
    assert abs(t["predicted_per_token_ms"] - t["predicted_ms"] / 7) < 1e-9


def test_a_generation_runs_to_the_end_of_its_context(http: httpx.Client) -> None:
    out = complete(http, prompt="Once", n_predict=SLOT + 100, ignore_eos=True)  # more than the slot: an upper bound
    assert (out["stop_type"], out["truncated"]) == ("limit", True)
    assert out["tokens_evaluated"] + out["tokens_predicted"] == SLOT
    chat = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5000,
                                                  "ignore_eos": True}).json()
    assert chat["choices"][0]["finish_reason"] == "length" and chat["usage"]["total_tokens"] == SLOT
    r = http.post("/completion", json={"prompt": "word " * SLOT, "n_predict": 1})  # the prompt alone does not fit
    err = r.json()["error"]
    assert r.status_code == 400 and err["type"] == "exceed_context_size_error" and err["n_ctx"] == SLOT
    assert "exceeds the available context size" in err["message"] and "raise -c or lower -np" in err["message"]


def test_id_slot_places_the_request(http: httpx.Client) -> None:
    for slot in (1, 0, 1):
        assert complete(http, prompt="Hello there", n_predict=1, id_slot=slot)["id_slot"] == slot
    again = complete(http, prompt="Hello there", n_predict=1, id_slot=1)
    assert again["timings"]["cache_n"] > 0  # its own slot's cache
    for bad in (2, -2, "1"):
        r = http.post("/completion", json={"prompt": "Hello", "id_slot": bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == "id_slot"


def test_verbose_chat_carries_the_native_object(http: httpx.Client, start_server: type[Server]) -> None:
    msgs = [{"role": "system", "content": "Book"}, {"role": "user", "content": "What is the best book"}]
    out = http.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 3, "verbose": True}).json()
    v = out["__verbose"]
    assert v["prompt"].startswith("<s>") and "What is the best book" in v["prompt"] and v["tokens_evaluated"] > 5
    assert v["generation_settings"]["n_predict"] == 3 and v["content"] == out["choices"][0]["message"]["content"]
    assert "__verbose" not in http.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 1}).json()
    streamed = events(http, "/v1/chat/completions", {"messages": msgs, "max_tokens": 2, "stream": True, "verbose": True})
    assert [e["choices"][0]["finish_reason"] for e in streamed if "__verbose" in e] == ["length"]
    assert http.post("/v1/chat/completions", json={"messages": msgs, "verbose": "yes"}).status_code == 400
    loud = start_server("-m", str(shared_model(SPM)), "-c", "512", "-v").wait_ready()  # llama-server's -v: on by default
    with loud.http() as h:
        assert "__verbose" in h.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 1}).json()
        quiet = h.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 1, "verbose": False}).json()
        assert "__verbose" not in quiet


def _png() -> str:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_multimodal_prompt_objects_and_their_slot_files(start_server: type[Server], tmp_path: Any) -> None:
    """{prompt_string, multimodal_data} through the projector; a slot file holding media does not
    restore into a server without one (and leaves the slot empty and usable)."""
    args = ("-m", str(shared_model(SPM)), "-c", "2048", "-np", "2", "--slot-save-path", str(tmp_path))
    s = start_server(*args, "--mmproj", str(shared_model("tiny-random-mmproj-64.gguf"))).wait_ready()
    prompt = {"prompt_string": "What is this: <__media__>\n", "multimodal_data": [_png()]}
    body = {"prompt": prompt, "n_predict": 4, "temperature": 0, "id_slot": 0, "ignore_eos": True}
    with s.http() as h:
        first = complete(h, **body)
        text_only = complete(h, prompt="What is this: \n", n_predict=1, id_slot=1)
        assert first["tokens_evaluated"] > text_only["tokens_evaluated"] + 10  # the image's tokens
        assert first["prompt"] == prompt["prompt_string"] and first["tokens_predicted"] == 4
        again = complete(h, **body)
        assert again["content"] == first["content"] and again["timings"]["cache_n"] == first["tokens_evaluated"] - 1
        msgs = [{"role": "user", "content": [{"type": "text", "text": "Look:"},
                                             {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _png()}}]}]
        v = h.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 1, "verbose": True}).json()["__verbose"]
        assert "Look:" in v["prompt"] and v["prompt"].count("<__media__>") == 1
        two = {"prompt_string": "<__media__> and <__media__>\n", "multimodal_data": [_png()]}
        assert h.post("/completion", json={"prompt": two}).status_code == 400  # a marker without its image
        complete(h, **body)
        assert h.post("/slots/0?action=save", json={"filename": "media.bin"}).json()["n_saved"] > 10
    s.stop()
    plain = start_server(*args).wait_ready()
    with plain.http() as h:
        r = h.post("/slots/0?action=restore", json={"filename": "media.bin"})
        assert r.status_code == 400 and "Cannot restore media tokens without an mmproj" in r.json()["error"]["message"]
        assert h.get("/slots").json()[0]["n_cached_tokens"] == 0
        assert complete(h, prompt="The quick brown fox", n_predict=2, id_slot=0)["timings"]["cache_n"] == 0
