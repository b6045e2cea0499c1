"""reasoning_content plumbing: a grammar makes SmolLM2 answer in the <think> shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Server, module_server

SHAPE = 'root ::= "<think>" [a-z ]{3,40} "</think>\\n\\n" [A-Za-z ]{3,40}'
ASK = [{"role": "user", "content": "Think first, then answer: what is a cat?"}]


@pytest.fixture(scope="module")
def server(smollm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # a thinking template: the generation prompt is plain, the reply may start with <think>
    tpl = tmp_path_factory.mktemp("tpl") / "think.jinja"
    tpl.write_text(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
        "{# <think> blocks are reasoning #}"
    )
    yield from module_server("-m", str(smollm), "--chat-template-file", str(tpl))


def test_reasoning_split_plain_and_streaming(server: Server) -> None:
    client = server.client()
    r = client.chat.completions.create(model="m", messages=ASK, max_tokens=60, temperature=0, extra_body={"grammar": SHAPE})
    msg = r.choices[0].message
    thought = getattr(msg, "reasoning_content", None) or (msg.model_extra or {}).get("reasoning_content")
    assert thought and "<think>" not in thought and "</think>" not in (msg.content or "")
    assert msg.content and "<think>" not in msg.content
    stream = client.chat.completions.create(model="m", messages=ASK, max_tokens=60, temperature=0, stream=True,
                                            extra_body={"grammar": SHAPE})
    r_parts, c_parts = [], []
    for ch in stream:
        if not ch.choices:
            continue
        extra = ch.choices[0].delta.model_extra or {}
        r_parts.append(extra.get("reasoning_content") or "")
        c_parts.append(ch.choices[0].delta.content or "")
    assert "".join(r_parts) == thought
    assert "".join(c_parts) == msg.content


def test_reasoning_format_none_keeps_tags(server: Server) -> None:
    r = server.client().chat.completions.create(model="m", messages=ASK, max_tokens=60, temperature=0,
                                                extra_body={"grammar": SHAPE, "reasoning_format": "none"})
    assert (r.choices[0].message.content or "").startswith("<think>")


def test_chat_template_kwargs_reach_the_template(server: Server) -> None:
    http = server.http()
    on = http.post("/v1/chat/completions", json={"messages": ASK, "max_tokens": 1}).json()
    off = http.post("/v1/chat/completions", json={"messages": ASK, "max_tokens": 1,
                                                   "chat_template_kwargs": {"enable_thinking": False}}).json()
    assert off["usage"]["prompt_tokens"] > on["usage"]["prompt_tokens"], "the template's thinking switch was applied"
    bad = http.post("/v1/chat/completions", json={"messages": ASK, "chat_template_kwargs": {"messages": []}})
    assert bad.status_code == 400


def test_apply_template_takes_chat_template_kwargs(server: Server) -> None:
    http = server.http()
    on = http.post("/apply-template", json={"messages": ASK}).json()["prompt"]
    off = http.post("/apply-template", json={"messages": ASK, "chat_template_kwargs": {"enable_thinking": False}}).json()
    assert not on.endswith("</think>\n\n") and off["prompt"].endswith("<think>\n\n</think>\n\n")
    bare = http.post("/apply-template", json={"messages": ASK, "add_generation_prompt": False}).json()["prompt"]
    assert not bare.rstrip().endswith("assistant")


def test_anthropic_thinking_blocks(server: Server) -> None:
    import anthropic

    claude = anthropic.Anthropic(base_url=server.base, api_key="none", max_retries=0, _strict_response_validation=True)
    extra = {"grammar": SHAPE, "temperature": 0.0}
    msg = claude.messages.create(model="m", max_tokens=60, messages=ASK, thinking={"type": "enabled", "budget_tokens": 1024},
                                 extra_body=extra)
    kinds = [b.type for b in msg.content]
    assert kinds[:2] == ["thinking", "text"], kinds
    assert msg.content[0].thinking and "<think>" not in msg.content[1].text
    with claude.messages.stream(model="m", max_tokens=60, messages=ASK, thinking={"type": "enabled", "budget_tokens": 1024},
                                extra_body=extra) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content][:2] == ["thinking", "text"]
    assert final.content[0].thinking == msg.content[0].thinking
    # thinking blocks of earlier turns reach the template as reasoning_content (and count), as llama-server
    thought = {"type": "thinking", "thinking": "I should look at the files first.", "signature": "x"}
    call = {"type": "tool_use", "id": "call_1", "name": "list_files", "input": {"path": "."}}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "main.py"}]}
    text = {"type": "text", "text": "Done."}
    counts = []
    for blocks in ([call], [thought, call], [text], [thought, text], [{**thought, "type": "redacted_thinking"}, text]):
        history = [{"role": "user", "content": "Fix the bug"}, {"role": "assistant", "content": blocks}]
        history.append(result if blocks[-1] is call else {"role": "user", "content": "Thanks"})
        counts.append(claude.messages.count_tokens(model="m", messages=history).input_tokens)  # type: ignore[arg-type]
    assert counts[1] > counts[0] + 5 and counts[3] > counts[2] + 5 and counts[4] == counts[2]


def test_reasoning_flag(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    """--reasoning off asks the template not to think, and closes a think block a template opens
    regardless (DeepSeek-R1's way); on and auto leave it open."""
    forced = tmp_path / "forced.jinja"
    forced.write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                      "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
    prompts = {}
    for mode in ("on", "off", "auto"):
        s = start_server("-m", str(smollm), "-c", "1024", "--chat-template-file", str(forced), "--reasoning", mode).wait_ready()
        prompts[mode] = s.http().post("/apply-template", json={"messages": ASK}).json()["prompt"]
        s.stop()
    assert prompts["on"].endswith("<think>\n") and prompts["auto"] == prompts["on"]
    assert prompts["off"].endswith("<think>\n</think>")
    asks = tmp_path / "asks.jinja"  # QwQ's way: the template closes the block unless asked to think
    asks.write_text(forced.read_text().replace("<think>\n{% endif %}", "<think>\n{% if not enable_thinking %}</think>{% endif %}{% endif %}"))
    auto = start_server("-m", str(smollm), "-c", "1024", "--chat-template-file", str(asks)).wait_ready()
    assert auto.http().post("/apply-template", json={"messages": ASK}).json()["prompt"].endswith("<think>\n")  # auto asks
    told = auto.http().post("/apply-template", json={"messages": ASK, "chat_template_kwargs": {"enable_thinking": False}})
    assert told.json()["prompt"].endswith("<think>\n</think>")  # the request's word wins
    auto.stop()
    env = start_server("-m", str(smollm), "-c", "1024", "--chat-template-file", str(forced), env={"LLAMA_ARG_REASONING": "off"}).wait_ready()
    assert env.http().post("/apply-template", json={"messages": ASK}).json()["prompt"].endswith("</think>")
    m = env.http().get("/metrics")
    assert abs(int(m.headers["Process-Start-Time-Unix"]) - __import__("time").time()) < 600
