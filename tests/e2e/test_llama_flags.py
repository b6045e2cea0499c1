"""llama-server's flags, wired to the real thing: KV cache types, --no-mmap, server-wide sampling
defaults that requests override, -n, POST /props, RoPE, devices, TLS, llamacpp: metric names and
llama-server's environment variables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import REPO, Server, load_error, shared_model

TINY = "tiny-random-smollm2-vocab.gguf"


def ask(s: Server, **body: object) -> dict[str, object]:
    r = s.http().post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Tell me about the sea"}], **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def content(r: dict[str, object]) -> str:
    return str(r["choices"][0]["message"]["content"])  # type: ignore[index]


def test_quantized_kv_cache_types(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm), "-c", "512", "-np", "1", "-ctk", "q8_0", "-ctv", "q8_0").wait_ready()
    r = ask(s, max_tokens=8, temperature=0)
    assert r["usage"]["completion_tokens"] == 8 and content(r)  # type: ignore[index]
    bad = start_server("-m", str(smollm), "-ctv", "q4_0", "-fa", "off")
    assert bad.proc.wait(60) == 2 and "flash attention" in bad.output()
    # a type the model's head size cannot hold: the model fails with llama.cpp's reason, not a guess
    odd = start_server("-m", str(shared_model(TINY)), "-c", "512", "-np", "1", "-ctk", "q8_0", "-ctv", "q8_0")
    assert "does not divide" in load_error(odd)


def test_no_mmap_reads_the_model_into_memory(start_server: type[Server], smollm: Path) -> None:
    mapped = start_server("-m", str(smollm), "-c", "256", "-np", "1").wait_ready()
    read = start_server("-m", str(smollm), "-c", "256", "-np", "1", "--no-mmap", "--mlock").wait_ready()
    maps = lambda s: Path(f"/proc/{s.proc.pid}/maps").read_text()  # noqa: E731
    assert smollm.name in maps(mapped) or str(smollm.resolve()) in maps(mapped)  # the file is mapped
    assert smollm.name not in maps(read) and str(smollm.resolve()) not in maps(read)  # its bytes were copied in
    assert content(ask(read, max_tokens=4, temperature=0)) == content(ask(mapped, max_tokens=4, temperature=0))


def test_server_sampling_defaults_and_per_request_overrides(start_server: type[Server]) -> None:
    s = start_server("-m", str(shared_model(TINY)), "-c", "1024", "-np", "2", "--temp", "0", "-n", "6",
                     "--top-k", "5", "--repeat-penalty", "1.3", "--props").wait_ready()
    a, b = ask(s), ask(s)
    assert a["usage"]["completion_tokens"] == 6 and a["choices"][0]["finish_reason"] == "length"  # type: ignore[index]
    assert content(a) == content(b)  # --temp 0: greedy by default
    params = s.http().get("/props").json()["default_generation_settings"]["params"]
    assert (params["temperature"], params["top_k"], params["repeat_penalty"], params["n_predict"]) == (0, 5, 1.3, 6)
    hot = {content(ask(s, temperature=2.0, top_k=0, seed=seed, max_tokens=6)) for seed in range(4)}
    assert len(hot) > 1  # the request's own temperature and top_k win
    assert ask(s, max_tokens=2)["usage"]["completion_tokens"] == 2  # type: ignore[index]
    # POST /props (--props) changes the defaults while the server runs
    r = s.http().post("/props", json={"n_predict": 3, "temperature": 0.0})
    assert r.status_code == 200 and r.json()["default_generation_settings"]["params"]["n_predict"] == 3
    assert ask(s)["usage"]["completion_tokens"] == 3  # type: ignore[index]
    bad = s.http().post("/props", json={"temperature": "hot"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "temperature"


def test_post_props_needs_the_flag(start_server: type[Server]) -> None:
    s = start_server("-m", str(shared_model(TINY)), "-c", "512", "-np", "1").wait_ready()
    r = s.http().post("/props", json={"n_predict": 3})
    assert r.status_code == 501 and "--props" in r.json()["error"]["message"]


def test_a_default_json_schema_constrains_requests_without_their_own(start_server: type[Server], tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false}')
    s = start_server("-m", str(shared_model(TINY)), "-c", "1024", "-np", "1", "-jf", str(schema), "-n", "24").wait_ready()
    text = content(ask(s, temperature=0))
    assert text.replace(" ", "").startswith('{"ok":')  # the default constraint applies
    own = content(ask(s, temperature=0, grammar='root ::= "yes" | "no"'))
    assert own in ("yes", "no")  # a request's own constraint replaces it


def test_rope_frequency_changes_what_the_model_computes(start_server: type[Server]) -> None:
    base = start_server("-m", str(shared_model(TINY)), "-c", "512", "-np", "1").wait_ready()
    moved = start_server("-m", str(shared_model(TINY)), "-c", "512", "-np", "1", "--rope-freq-base", "10",
                         "--rope-scaling", "linear", "--rope-scale", "2").wait_ready()
    prompt = {"max_tokens": 12, "temperature": 0, "logprobs": True}
    a, b = ask(base, **prompt), ask(moved, **prompt)
    la = [t["logprob"] for t in a["choices"][0]["logprobs"]["content"]]  # type: ignore[index]
    lb = [t["logprob"] for t in b["choices"][0]["logprobs"]["content"]]  # type: ignore[index]
    assert la != lb


def test_devices_list_and_choice(start_server: type[Server]) -> None:
    r = subprocess.run([sys.executable, "-m", "chimera", "serve", "--list-devices"], capture_output=True, text=True,
                       timeout=120, cwd=REPO)
    assert r.returncode == 0 and r.stdout.startswith("Available devices:") and "CPU" in r.stdout, r.stdout + r.stderr
    cpu = start_server("-m", str(shared_model(TINY)), "-c", "512", "-np", "1", "--device", "none", "-sm", "none",
                       "-mg", "0", "-ts", "1").wait_ready()
    assert content(ask(cpu, max_tokens=3))
    bad = start_server("-m", str(shared_model(TINY)), "-c", "512", "-np", "1", "--device", "Vulkan7")
    error = load_error(bad)
    assert "--device" in error and "vulkan7" in error.lower()


def test_tls_with_a_self_signed_certificate(start_server: type[Server], tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    s = start_server("-m", str(shared_model(TINY)), "-c", "512", "-np", "1", "--ssl-key-file", str(key), "--ssl-cert-file", str(cert))
    base = f"https://127.0.0.1:{s.port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/health", verify=str(cert)).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, s.output()
    client = openai.OpenAI(base_url=base + "/v1", api_key="none", http_client=httpx.Client(verify=str(cert)))
    r = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    assert r.usage is not None and r.usage.completion_tokens == 3
    with pytest.raises(httpx.HTTPError):  # not plain HTTP
        httpx.get(f"http://127.0.0.1:{s.port}/health", timeout=5).raise_for_status()
    assert f"https://127.0.0.1:{s.port}" in s.output()
    half = start_server("-m", str(shared_model(TINY)), "--ssl-key-file", str(key))
    assert half.proc.wait(60) == 2 and "go together" in half.output()


def test_llamacpp_metric_names_and_llama_environment(start_server: type[Server]) -> None:
    env = {"LLAMA_ARG_CTX_SIZE": "768", "LLAMA_ARG_N_PARALLEL": "3", "LLAMA_ARG_N_PREDICT": "4"}
    s = start_server("-m", str(shared_model(TINY)), env={**os.environ, **env}).wait_ready()
    props = s.http().get("/props").json()
    assert props["total_slots"] == 3 and props["n_ctx"] == 768
    assert ask(s)["usage"]["completion_tokens"] == 4  # type: ignore[index]
    text = s.http().get("/metrics").text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("llamacpp:")}
    assert values["llamacpp:tokens_predicted_total"] == 4 and values["llamacpp:prompt_tokens_total"] > 0
    assert values["llamacpp:n_decode_total"] >= 4 and "llamacpp:requests_processing" in values


def test_native_completion_route(start_server: type[Server]) -> None:
    s = start_server("-m", str(shared_model(TINY)), "-c", "512", "-np", "1").wait_ready()
    http = s.http()
    text = http.post("/completion", json={"prompt": "Once upon a time", "n_predict": 5, "temperature": 0}).json()
    assert text["tokens_predicted"] == 5 and text["stop_type"] == "limit" and text["content"]
    toks = http.post("/tokenize", json={"content": "Once upon a time"}).json()["tokens"]
    by_tokens = http.post("/completion", json={"prompt": toks, "n_predict": 5, "temperature": 0}).json()
    assert by_tokens["content"] == text["content"]  # the same prompt as ids
    mixed = http.post("/completion", json={"prompt": [toks[0], " upon a time"], "n_predict": 5, "temperature": 0}).json()
    assert mixed["tokens_predicted"] == 5 and mixed["tokens_evaluated"] >= 3
    with http.stream("POST", "/completion", json={"prompt": "Hi", "n_predict": 3, "stream": True}) as r:
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert '"stop": true' in events[-1] or '"stop":true' in events[-1]
    assert http.post("/completion", json={"prompt": [10**9]}).status_code == 400
    assert http.post("/completion", json={"prompt": ""}).status_code == 400


def test_override_kv_changes_the_model_metadata(start_server: type[Server], smollm: Path) -> None:
    plain = start_server("-m", str(smollm)).wait_ready()
    s = start_server("-m", str(smollm), "--override-kv", "llama.context_length=int:2048,tokenizer.ggml.add_bos_token=bool:true",
                     "--override-kv", "general.name=str:renamed").wait_ready()
    assert plain.http().get("/props").json()["n_ctx"] == 8192
    assert s.http().get("/props").json()["n_ctx"] == 2048  # -c 0 follows the overridden training context

    def toks(srv: Server) -> list[int]:
        return list(srv.http().post("/tokenize", json={"content": "hello", "add_special": True}).json()["tokens"])

    assert len(toks(s)) == len(toks(plain)) + 1  # a BOS token where the model adds none
    for bad, message in (("llama.context_length=integer:5", "int, float, bool or str"), ("x=bool:maybe", "true or false"),
                         ("nokind", "KEY=TYPE:VALUE"), ("x=int:abc", "is not an int")):
        p = start_server("-m", str(smollm), "--override-kv", bad)
        assert p.proc.wait(60) == 2 and message in p.output() and "--override-kv" in p.output()


def test_chat_template_names_and_text(start_server: type[Server], smollm: Path) -> None:
    msgs = {"messages": [{"role": "user", "content": "Hi"}]}
    s = start_server("-m", str(smollm), "-c", "512", "--chat-template", "vicuna").wait_ready()
    assert s.http().post("/apply-template", json=msgs).json()["prompt"].endswith("USER: Hi\nASSISTANT:")
    assert ask(s, max_tokens=2)["usage"]["completion_tokens"] == 2  # type: ignore[index]
    jinja = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant]"
    t = start_server("-m", str(smollm), "-c", "512", "--chat-template", jinja).wait_ready()
    assert t.http().post("/apply-template", json=msgs).json()["prompt"] == "[user] Hi\n[assistant]"
    bad = start_server("-m", str(smollm), "--chat-template", "vicunaa")
    assert bad.proc.wait(60) == 2 and "unknown template" in bad.output()


def test_host_lists_and_unix_sockets(start_server: type[Server], tmp_path: Path) -> None:
    sock = tmp_path / "chimera.sock"
    s = start_server("-m", str(shared_model(TINY)), "-c", "256", "--host", f"127.0.0.1,::1,{sock}").wait_ready()
    for base in (s.base, f"http://[::1]:{s.port}"):
        assert httpx.get(base + "/health").status_code == 200
        r = httpx.post(base + "/v1/completions", json={"prompt": "hi", "max_tokens": 2}, timeout=60)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://localhost") as c:
        assert c.get("/health").status_code == 200
        assert c.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2}, timeout=60).status_code == 200
    out = s.output()
    assert f"listening on http://127.0.0.1:{s.port}" in out and f"listening on http://[::1]:{s.port}" in out and "unix:" in out


def test_a_trailing_assistant_message_is_continued(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm), "-c", "1024").wait_ready()
    msgs = [{"role": "user", "content": "What is the best book?"}, {"role": "assistant", "content": "Whill"}]

    def prompt(**extra: object) -> httpx.Response:
        return s.http().post("/apply-template", json={"messages": msgs, **extra})

    auto = prompt()
    assert auto.status_code == 200 and auto.json()["prompt"].endswith("<|im_start|>assistant\nWhill")
    parts = s.http().post("/apply-template", json={"messages": [msgs[0], {"role": "assistant", "content": [
        {"type": "text", "text": "Wh"}, {"type": "text", "text": "ill"}]}]})
    assert parts.json()["prompt"].endswith("<|im_start|>assistant\nWh\n\nill")  # its parts joined as llama-server joins them
    explicit = prompt(continue_final_message=True, add_generation_prompt=False)
    assert explicit.json()["prompt"] == auto.json()["prompt"]
    whole = prompt(continue_final_message=False)  # a finished turn, then a new one
    assert whole.json()["prompt"].endswith("Whill<|im_end|>\n<|im_start|>assistant\n")
    both = prompt(continue_final_message=True)  # add_generation_prompt defaults to true
    assert both.status_code == 400 and "add_generation_prompt" in both.json()["error"]["message"]
    two = s.http().post("/apply-template", json={"messages": [*msgs, {"role": "assistant", "content": "x"}]})
    assert two.status_code == 400 and "2 or more assistant messages" in two.json()["error"]["message"]
    r = s.http().post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 6, "temperature": 0})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
    # the Anthropic dialect's prefill is the same continuation
    a = s.http().post("/v1/messages", json={"model": "m", "max_tokens": 6, "messages": msgs})
    assert a.status_code == 200, a.text
