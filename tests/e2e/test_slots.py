"""Slot KV-cache files: save → erase → restore → cache hit; path tricks refused."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from conftest import Server

PROMPT = {"messages": [{"role": "system", "content": "You are a careful assistant. " * 20},
                       {"role": "user", "content": "Hello"}], "max_tokens": 2}


def test_save_erase_restore_gives_cache_hit(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    s = start_server("-m", str(smollm), "-np", "1", "-c", "2048", "--slot-save-path", str(tmp_path / "slots")).wait_ready()
    http = httpx.Client(base_url=s.base, timeout=60)
    first = http.post("/v1/chat/completions", json=PROMPT).json()
    saved = http.post("/slots/0?action=save", json={"filename": "greeting.bin"})
    assert saved.status_code == 200, saved.text
    assert saved.json()["n_saved"] > 100 and (tmp_path / "slots" / "greeting.bin").is_file()
    erased = http.post("/slots/0?action=erase").json()
    assert erased["n_erased"] == saved.json()["n_saved"]
    assert http.get("/slots").json()[0]["n_cached_tokens"] == 0
    restored = http.post("/slots/0?action=restore", json={"filename": "greeting.bin"}).json()
    assert restored["n_restored"] == saved.json()["n_saved"]
    again = http.post("/v1/chat/completions", json=PROMPT).json()
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] >= first["usage"]["prompt_tokens"] - 1

    missing = http.post("/slots/0?action=restore", json={"filename": "nope.bin"})
    assert missing.status_code == 404
    (tmp_path / "slots" / "junk.bin").write_bytes(b"not a slot file")
    junk = http.post("/slots/0?action=restore", json={"filename": "junk.bin"})
    assert junk.status_code == 400
    ok = http.post("/v1/chat/completions", json=PROMPT)
    assert ok.status_code == 200, "a failed restore leaves the slot usable"


def test_busy_slot_is_409(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    import threading

    s = start_server("-m", str(smollm), "-np", "1", "-c", "2048", "--slot-save-path", str(tmp_path)).wait_ready()
    t = threading.Thread(target=lambda: httpx.post(s.base + "/v1/completions", timeout=60,
                                                   json={"prompt": "Once", "max_tokens": 300, "ignore_eos": True}))
    t.start()
    for _ in range(100):
        if httpx.get(s.base + "/slots").json()[0]["is_processing"]:
            break
    r = httpx.post(s.base + "/slots/0?action=save", json={"filename": "busy.bin"})
    assert r.status_code == 409
    assert not (tmp_path / "busy.bin").exists()
    t.join(60)


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden/../x", "", "x" * 200, "/etc/passwd", 5])
def test_path_tricks_are_400(start_server: type[Server], smollm: Path, tmp_path: Path, name: object) -> None:
    s = start_server("-m", str(smollm), "-np", "1", "--slot-save-path", str(tmp_path)).wait_ready()
    r = httpx.post(s.base + "/slots/0?action=save", json={"filename": name})
    assert r.status_code == 400 and r.json()["error"]["param"] == "filename"
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent / "evil").exists()


def test_slot_errors(start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    s = start_server("-m", str(smollm), "-np", "1", "--no-slots").wait_ready()
    listing = httpx.get(s.base + "/slots")  # --no-slots: the listing is off (the actions are --slot-save-path's)
    assert listing.status_code == 501 and "--no-slots" in listing.json()["error"]["message"], listing.text
    r = httpx.post(s.base + "/slots/0?action=save", json={"filename": "x.bin"})
    assert r.status_code == 501 and "--slot-save-path" in r.json()["error"]["message"]
    assert httpx.post(s.base + "/slots/0?action=fly").status_code == 400
    assert httpx.post(s.base + "/slots/7?action=erase").status_code == 404
