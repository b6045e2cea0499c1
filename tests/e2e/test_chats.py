"""--persist-chats against a real server process and a real database file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server

HEADER = "X-Chimera-Chat-Id"


def chat(base: str, messages: list, chat_id: str | None = None, stream: bool = False, **extra: object) -> tuple[str, str]:
    headers = {HEADER: chat_id} if chat_id else {}
    body = {"messages": messages, "max_tokens": 12, "temperature": 0, "stream": stream} | extra
    if not stream:
        r = httpx.post(base + "/v1/chat/completions", json=body, headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        return r.headers[HEADER], r.json()["choices"][0]["message"]["content"]
    text = []
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, headers=headers, timeout=60) as r:
        assert r.status_code == 200
        cid = r.headers[HEADER]
        for line in r.iter_lines():
            if line.startswith("data: {"):
                ev = json.loads(line[6:])
                for c in ev.get("choices", []):
                    text.append(c["delta"].get("content") or "")
    return cid, "".join(text)


def saved(base: str, cid: str) -> dict:
    r = httpx.get(f"{base}/v1/chimera/chats/{cid}")
    assert r.status_code == 200, r.text
    return r.json()


def test_exchanges_saved_with_exact_text_and_threading(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    db = tmp_path / "chats.db"
    s = start_server("-m", str(smollm), "--persist-chats", "--chat-db", str(db)).wait_ready()
    cid, first = chat(s.base, [{"role": "user", "content": "Tell me about owls"}])
    assert saved(s.base, cid)["messages"][-1]["content"] == first
    msgs = [{"role": "user", "content": "Tell me about owls"}, {"role": "assistant", "content": first},
            {"role": "user", "content": "And about hawks?"}]
    cid2, second = chat(s.base, msgs, chat_id=cid, stream=True)
    assert cid2 == cid
    msgs += [{"role": "assistant", "content": second}, {"role": "user", "content": "Which is bigger?"}]
    _, third = chat(s.base, msgs, chat_id=cid)
    c = saved(s.base, cid)
    assert [m["role"] for m in c["messages"]] == ["user", "assistant"] * 3, "three turns, no duplicates"
    assert [m["content"] for m in c["messages"][1::2]] == [first, second, third], "exactly what the client received"
    # FTS over message text finds the chat by a word of its reply
    word = next(w.strip(".,!?") for w in (first + " " + second).split() if len(w.strip(".,!?")) > 4)
    found = httpx.get(s.base + "/v1/chimera/chats", params={"q": word}).json()["data"]
    assert cid in [x["id"] for x in found]
    assert httpx.get(s.base + "/v1/chimera/chats", params={"q": "zzyzxquux"}).json()["data"] == []
    # export in both formats
    as_json = httpx.get(f"{s.base}/v1/chimera/chats/{cid}/export?format=json").json()
    assert as_json["messages"] == c["messages"]
    md = httpx.get(f"{s.base}/v1/chimera/chats/{cid}/export?format=markdown")
    assert md.headers["content-type"].startswith("text/markdown") and "## assistant" in md.text and first in md.text
    # status: the CLI reads the same file the server writes
    api = httpx.get(s.base + "/v1/chimera/db").json()
    cli = json.loads(subprocess.run([sys.executable, "-m", "chimera", "db", "status", "--chat-db", str(db)],
                                    capture_output=True, text=True, check=True).stdout)
    assert cli["schema_version"] == api["schema_version"] == 2 and cli["tables"] == api["tables"]
    assert api["tables"]["messages"] == 6
    # unknown / malformed chat ids are refused before any generation
    for bad in ("chat_" + "0" * 32, "nonsense"):
        r = httpx.post(s.base + "/v1/chat/completions", json={"messages": msgs}, headers={HEADER: bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == HEADER
    # delete
    assert httpx.delete(f"{s.base}/v1/chimera/chats/{cid}").json()["deleted"] is True
    assert httpx.get(f"{s.base}/v1/chimera/chats/{cid}").status_code == 404


def test_sixteen_concurrent_conversations(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    s = start_server("-m", str(smollm), "--persist-chats", "--chat-db", str(tmp_path / "c.db"), "-np", "8").wait_ready()
    got: dict[int, tuple[str, str]] = {}

    def one(i: int) -> None:
        got[i] = chat(s.base, [{"role": "user", "content": f"Conversation {i}: say something"}], stream=i % 2 == 0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(got) == 16
    for cid, text in got.values():
        assert saved(s.base, cid)["messages"][-1]["content"] == text
    assert "database is locked" not in s.output()


def test_kill_9_loses_nothing_acknowledged(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    s = start_server("-m", str(smollm), "--persist-chats", "--chat-db", str(db)).wait_ready()
    done = [chat(s.base, [{"role": "user", "content": f"Kill test {i}"}], stream=i == 1) for i in range(3)]
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait(10)
    s2 = start_server("-m", str(smollm), "--persist-chats", "--chat-db", str(db)).wait_ready()
    for cid, text in done:
        assert saved(s2.base, cid)["messages"][-1]["content"] == text


def test_failing_store_never_breaks_a_response(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    db = tmp_path / "ro.db"
    s = start_server("-m", str(smollm), "--persist-chats", "--chat-db", str(db)).wait_ready()
    chat(s.base, [{"role": "user", "content": "first"}])
    os.chmod(tmp_path, 0o555)  # the directory turns read-only: WAL/journal writes fail
    for p in tmp_path.iterdir():
        os.chmod(p, 0o444)
    try:
        if os.geteuid() == 0:
            # root ignores file modes: make the store fail another way, by removing its tables
            os.chmod(tmp_path, 0o755)
            for p in tmp_path.iterdir():
                os.chmod(p, 0o644)
            import apsw

            con = apsw.Connection(str(db))
            con.execute("DROP TRIGGER messages_ai; DROP TABLE messages_fts; DROP TABLE messages")
            con.close()
        _, text = chat(s.base, [{"role": "user", "content": "second"}])
        _, text2 = chat(s.base, [{"role": "user", "content": "third"}], stream=True)
        assert text and text2
    finally:
        os.chmod(tmp_path, 0o755)
    fams = {f.name: f for f in text_string_to_metric_families(httpx.get(s.base + "/metrics").text)}
    assert fams["chimera_persist_errors"].samples[0].value >= 2
    assert "could not save chat" in s.output()


def test_migration_keeps_rows(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    from chimera.store.chats import connect, migrate

    db = tmp_path / "old.db"
    assert migrate(db, target=1) == 1  # a database from the first schema
    con = connect(db)
    con.execute("INSERT INTO chats VALUES ('chat_" + "a" * 32 + "', 1, 1, 'old-model', 'old chat')")
    con.execute("INSERT INTO messages(chat_id, seq, role, content, created_at) VALUES ('chat_" + "a" * 32 + "', 0, 'user', 'ancient penguins', 1)")
    con.close()
    s = start_server("-m", str(smollm), "--persist-chats", "--chat-db", str(db)).wait_ready()
    assert httpx.get(s.base + "/v1/chimera/db").json()["schema_version"] == 2
    c = saved(s.base, "chat_" + "a" * 32)
    assert c["messages"][0]["content"] == "ancient penguins"
    assert httpx.get(s.base + "/v1/chimera/chats", params={"q": "penguins"}).json()["data"][0]["title"] == "old chat"


def test_chats_routes_need_the_flag(start_server: type[Server], smollm: Path) -> None:
    s = start_server("-m", str(smollm)).wait_ready()
    r = httpx.get(s.base + "/v1/chimera/chats")
    assert r.status_code == 501 and "--persist-chats" in r.json()["error"]["message"]
    r = httpx.post(s.base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]},
                   headers={HEADER: "chat_" + "0" * 32})
    assert r.status_code == 501


def test_abandoned_stream_saved_as_incomplete(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    import time

    s = start_server("-m", str(smollm), "--persist-chats", "--chat-db", str(tmp_path / "a.db")).wait_ready()
    body = {"messages": [{"role": "user", "content": "Tell me a very long story"}], "max_tokens": 500,
            "ignore_eos": True, "stream": True}
    received = []
    with httpx.stream("POST", s.base + "/v1/chat/completions", json=body, timeout=60) as r:
        cid = r.headers[HEADER]
        for line in r.iter_lines():
            if line.startswith("data: {"):
                received.append(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
            if len(received) > 6:
                break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = httpx.get(f"{s.base}/v1/chimera/chats/{cid}")
        if r.status_code == 200:
            break
        time.sleep(0.1)
    last = r.json()["messages"][-1]
    assert last["role"] == "assistant" and last.get("incomplete") is True
    assert last["content"].startswith("".join(received)), "saved as far as it went"


def test_anthropic_and_responses_traffic_saved(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    import anthropic
    import openai

    s = start_server("-m", str(smollm), "--persist-chats", "--chat-db", str(tmp_path / "p.db")).wait_ready()
    claude = anthropic.Anthropic(base_url=s.base, api_key="none", max_retries=0, _strict_response_validation=True)
    raw = claude.messages.with_raw_response.create(model="m", max_tokens=8, messages=[{"role": "user", "content": "Hello Claude"}])
    msg = raw.parse()
    cid = raw.headers[HEADER]
    assert saved(s.base, cid)["messages"][-1]["content"] == msg.content[0].text
    with claude.messages.stream(model="m", max_tokens=8, messages=[{"role": "user", "content": "Hello again"}]) as st:
        final = st.get_final_message()
        scid = st.response.headers[HEADER]
    assert saved(s.base, scid)["messages"][-1]["content"] == final.content[0].text
    client = openai.OpenAI(base_url=s.base + "/v1", api_key="none", max_retries=0, _strict_response_validation=True)
    rraw = client.responses.with_raw_response.create(model="m", input="Hello responses", max_output_tokens=8)
    resp = rraw.parse()
    assert saved(s.base, rraw.headers[HEADER])["messages"][-1]["content"] == resp.output_text


def test_list_pagination_with_cursor(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    s = start_server("-m", str(smollm), "--persist-chats", "--chat-db", str(tmp_path / "pg.db")).wait_ready()
    ids = [chat(s.base, [{"role": "user", "content": f"page test {i}"}], max_tokens=2)[0] for i in range(5)]
    seen, cursor = [], None
    for _ in range(5):  # a page's next_cursor goes back as cursor
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = httpx.get(s.base + "/v1/chimera/chats", params=params).json()
        seen += [c["id"] for c in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == ids[::-1], "newest first, every chat once"
    first = httpx.get(s.base + "/v1/chimera/chats", params={"limit": 2}).json()
    older = httpx.get(s.base + "/v1/chimera/chats", params={"limit": 2, "after": first["next_cursor"]}).json()
    assert [c["id"] for c in older["data"]] == ids[::-1][2:4], "'after' is the older name for the cursor"
    assert httpx.get(s.base + "/v1/chimera/chats", params={"limit": 0}).status_code == 400
    bad = httpx.get(s.base + "/v1/chimera/chats", params={"cursor": "garbage"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cursor"
