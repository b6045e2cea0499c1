"""The web UI in a real browser (headless Chromium) against a real server with every feature on:
chat streaming, saved conversations across reloads and browsers, search, rename, export, edit and
regenerate, speech and documents in the conversation, image generation with progress, the server
view, the model picker with models on demand, the API-key flow, and inert model output. No page
may request anything from another origin.

Screenshots (desktop and phone width, light and dark) go to $CHIMERA_UI_SHOTS when it is set
(`make ui-shots` sets it to docs/ui/)."""

from __future__ import annotations

import base64
import gzip
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import Browser, require_browser

from conftest import REPO, Server, module_server, sd_args, shared_model

SHOTS = Path(os.environ["CHIMERA_UI_SHOTS"]) if os.environ.get("CHIMERA_UI_SHOTS") else None
WEBUI = REPO / "app" / "chimera" / "webui"
HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smollm: Path, minilm: Path, whisper_model: Path,
           sd_models: Path) -> Iterator[Server]:
    require_browser()
    d = tmp_path_factory.mktemp("webui")
    yield from module_server(
        "-m", str(smollm), "-np", "2", "-c", "4096", "--persist-chats", "--chat-db", str(d / "chats.db"),
        "--whisper-model", str(whisper_model), "--rag-model", str(minilm), "--rag-db", str(d / "rag.db"),
        *sd_args(sd_models, "--sd-max-pixels", "65536", "--sd-max-steps", "4"))


@pytest.fixture
def browser(server: Server) -> Iterator[Browser]:
    b = Browser(server.base)
    yield b
    try:
        assert_same_origin(b, server.base)
    finally:
        b.quit()


def assert_same_origin(b: Browser, base: str) -> None:
    foreign = [u for u in b.requested() if not (u.startswith(base + "/") or u == base or u.startswith(("data:", "blob:")))]
    assert not foreign, f"requests that left the server: {foreign}"


def shoot(b: Browser, name: str) -> None:
    if SHOTS is not None:
        b.shot(SHOTS / f"{name}.png")


def settings(b: Browser, **values: Any) -> None:
    b.find("#settings").click()
    for key, value in values.items():
        field = b.find(f"#set-{key.replace('_', '-')}")
        field.clear()
        field.send_keys(str(value))
    b.find("#set-save").click()


def send(b: Browser, text: str) -> list[int]:
    """Type and send a message; the lengths the reply had while it streamed."""
    before = len(b.all(".msg.assistant"))
    b.type("#input", text, enter=True)
    b.wait(lambda: len(b.all(".msg.assistant")) > before, what="the reply to start")
    seen: list[int] = []
    deadline = time.monotonic() + 120
    while b.js("return !document.getElementById('stop').hidden") and time.monotonic() < deadline:
        n = b.js("const m = document.querySelectorAll('.msg.assistant .content'); return m.length ? m[m.length-1].textContent.length : 0")
        if n and (not seen or n != seen[-1]):
            seen.append(int(n))
        time.sleep(0.03)
    b.wait(lambda: b.js("return document.getElementById('stop').hidden"), what="the reply to end")
    return seen


def chats(server: Server, q: str | None = None) -> list[dict[str, Any]]:
    params = {"q": q} if q else {}
    return list(server.http().get("/v1/chimera/chats", params=params).json()["data"])


# --- static files ---------------------------------------------------------------------------------
def test_the_ui_is_served_offline_with_etags_gzip_and_a_csp(server: Server) -> None:
    page = httpx.get(server.base + "/", headers=HTML)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "the page names no other origin"
    assert httpx.get(server.base + "/").text == "Ollama is running"  # Ollama clients' probe still works
    assert httpx.head(server.base + "/").status_code == 200
    js = httpx.get(server.base + "/js/app.js", headers={"Accept-Encoding": "gzip"})
    assert js.status_code == 200 and js.headers["content-encoding"] == "gzip" and "javascript" in js.headers["content-type"]
    raw = httpx.get(server.base + "/js/app.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers and raw.content == (WEBUI / "js" / "app.js").read_bytes()
    assert int(js.headers.get("content-length", 0)) < len(raw.content)
    again = httpx.get(server.base + "/js/app.js", headers={"If-None-Match": js.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert js.headers["cache-control"] == "no-cache"
    files = [p for p in WEBUI.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    packed = sum(len(gzip.compress(p.read_bytes())) for p in files)
    print(f"web UI: {len(files)} files, {total / 1024:.0f} KiB, {packed / 1024:.0f} KiB gzipped")
    assert total <= 1024 * 1024


def test_other_paths_keep_their_json_errors(server: Server) -> None:
    for path in ("/nope", "/js/nope.js", "/..%2f..%2fetc/passwd", "/js/../../../../etc/passwd", "/%2e%2e/pyproject.toml"):
        r = httpx.get(server.base + path)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error", (path, r.text[:200])
    r = httpx.get(server.base + "/v1/chat/completions")  # a POST route: still 405, not 404
    assert r.status_code == 405 and r.json()["error"]["type"]


def test_no_webui_and_a_users_own_folder(start_server: type[Server], tmp_path: Path) -> None:
    off = start_server("-m", str(shared_model("tiny-random-smollm2-vocab.gguf")), "--no-webui").wait_ready()
    assert httpx.get(off.base + "/", headers=HTML).text == "Ollama is running"
    assert httpx.get(off.base + "/app.css").status_code == 404
    site = tmp_path / "site"
    (site / "css").mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html><title>mine</title><link rel=stylesheet href=css/a.css>")
    (site / "css" / "a.css").write_text("body { color: red }")
    (tmp_path / "secret.txt").write_text("not served")
    own = start_server("-m", str(shared_model("tiny-random-smollm2-vocab.gguf")), "--path", str(site), "--api-key", "k").wait_ready()
    assert "<title>mine</title>" in httpx.get(own.base + "/", headers=HTML).text  # public, like the built-in UI
    assert httpx.get(own.base + "/css/a.css").text == "body { color: red }"
    (site / "css" / "a.css").write_text("body { color: blue }")  # read on each request: edits show on reload
    assert httpx.get(own.base + "/css/a.css").text == "body { color: blue }"
    assert httpx.get(own.base + "/..%2fsecret.txt").status_code == 404
    assert httpx.get(own.base + "/v1/models").status_code == 401  # the data stays behind the key
    bad = start_server("--webui-path", str(tmp_path / "missing"), "--port", "0")
    assert bad.proc.wait(60) == 2 and "webui-path" in bad.output()


# --- chat -------------------------------------------------------------------------------------------
def test_a_reply_streams_renders_markdown_and_shows_its_numbers(browser: Browser, server: Server) -> None:
    b = browser.open()
    settings(b, max_tokens=48, temperature=0)
    seen = send(b, "Write a Python function that adds two numbers, in a code block.")
    assert len(seen) >= 3 and seen == sorted(seen), f"the reply grew as it streamed: {seen}"
    stats = b.text(".msg.assistant:last-child .stats")
    assert re.search(r"\d+ tokens · [\d.]+ tok/s · prompt \d+", stats), stats
    body = b.find(".msg.assistant:last-child .content")
    assert body.text.strip()
    if b.all(".msg.assistant:last-child pre code"):  # a fenced block: highlighted, with a copy button
        assert b.all(".msg.assistant:last-child pre .copy")
    saved = chats(server)[0]
    assert saved["message_count"] == 2 and b.text("#chat-title").startswith("Write a Python function")
    shoot(b, "chat-desktop-light")


def test_conversations_live_on_the_server_across_reloads_and_browsers(browser: Browser, server: Server) -> None:
    b = browser.open()
    settings(b, max_tokens=8)
    send(b, "Remember the word zucchini.")
    chat_id = chats(server)[0]["id"]
    b.open()  # reload: the sidebar is the server's history
    b.wait(lambda: b.all(f'#conversations li[data-id="{chat_id}"]'), what="the saved chat in the sidebar")
    assert "on the server" in b.text("#storage-note")
    other = Browser(server.base)  # another browser: nothing in its storage
    try:
        other.open()
        other.wait(lambda: other.all(f'#conversations li[data-id="{chat_id}"]'), what="the chat in a second browser")
        other.find(f'#conversations li[data-id="{chat_id}"]').click()
        other.wait(lambda: "zucchini" in other.text(".msg.user"), what="its messages")
        settings(other, max_tokens=8)
        send(other, "And now?")
        assert_same_origin(other, server.base)
    finally:
        other.quit()
    chat = server.http().get(f"/v1/chimera/chats/{chat_id}").json()
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "user", "assistant"]  # one conversation, continued


def test_search_rename_export_and_delete(browser: Browser, server: Server) -> None:
    b = browser.open()
    settings(b, max_tokens=4)
    send(b, "A question about xylophones.")
    chat_id = chats(server, "xylophones")[0]["id"]
    b.type("#search", "xylophones")
    b.wait(lambda: [li.get_attribute("data-id") for li in b.all("#conversations li")] == [chat_id], what="the search to find only it")
    b.find("#rename").click()
    alert = b.driver.switch_to.alert
    alert.send_keys("Music questions")
    alert.accept()
    b.wait(lambda: server.http().get(f"/v1/chimera/chats/{chat_id}").json()["title"] == "Music questions", what="the rename")
    b.js("window.__exported = null; const orig = URL.createObjectURL;"
         "URL.createObjectURL = (blob) => { blob.text().then((t) => { window.__exported = t; }); return orig(blob); };")
    b.find("#export").click()
    md = b.wait(lambda: b.js("return window.__exported"), what="the export")
    assert md.startswith("# Music questions") and "xylophones" in md
    b.find("#delete").click()
    b.driver.switch_to.alert.accept()
    b.wait(lambda: server.http().get(f"/v1/chimera/chats/{chat_id}").status_code == 404, what="the delete")


def test_edit_a_message_and_regenerate_a_reply(browser: Browser, server: Server) -> None:
    b = browser.open()
    settings(b, max_tokens=6)
    send(b, "First version of the question about walruses.")
    chat_id = chats(server, "walruses")[0]["id"]
    b.find(".msg.user .edit").click()
    box = b.find(".msg.user .edit-box")
    box.clear()
    box.send_keys("Second version, about narwhals.")
    b.find(".msg.user .row .primary").click()

    def saved() -> list[dict[str, Any]]:
        return list(server.http().get(f"/v1/chimera/chats/{chat_id}").json()["messages"])

    b.wait(lambda: len(saved()) == 2 and "narwhals" in saved()[0]["content"], what="the edited turn saved")
    b.wait(lambda: b.js("return document.getElementById('stop').hidden"), what="its reply")
    msgs = saved()
    assert [m["role"] for m in msgs] == ["user", "assistant"] and "narwhals" in msgs[0]["content"]  # the old turn is gone
    settings(b, temperature=1.5, seed=7)
    first_reply = msgs[1]["created_at"]
    b.find(".msg.assistant .regenerate").click()
    b.wait(lambda: len(saved()) == 2 and saved()[1]["created_at"] != first_reply, what="the new reply saved")
    again = saved()
    assert [m["role"] for m in again] == ["user", "assistant"]  # replaced, not added


def test_stop_ends_the_reply_and_keeps_what_came(browser: Browser, server: Server) -> None:
    b = browser.open()
    settings(b, max_tokens=400)
    b.type("#input", "Tell me a very long story about the sea.", enter=True)
    b.wait(lambda: len(b.text(".msg.assistant .content")) > 10, what="some of the reply")
    b.find("#stop").click()
    b.wait(lambda: b.js("return document.getElementById('stop').hidden"), what="the stop")
    assert "stopped" in b.text(".msg.assistant .stats") or b.text(".msg.assistant .content")


# --- attachments ----------------------------------------------------------------------------------
def test_an_audio_file_is_transcribed_into_the_message(browser: Browser, models_dir: Path) -> None:
    b = browser.open()
    b.attach(models_dir / "jfk.wav")
    b.wait(lambda: "Transcribed jfk.wav" in b.text("#composer-status"), what="the transcript")
    text = b.js("return document.getElementById('input').value").lower()
    assert "ask not what your country can do for you" in text, text


def test_the_microphone_records_and_transcribes(server: Server) -> None:
    b = Browser(server.base, fake_microphone=True)
    try:
        b.open()
        b.find("#mic").click()
        b.wait(lambda: "Recording" in b.text("#composer-status"), what="the recording to start")
        time.sleep(1.5)
        b.find("#mic").click()
        b.wait(lambda: "Transcribed recording.webm" in b.text("#composer-status"), what="the recording's transcript")
        assert_same_origin(b, server.base)
    finally:
        b.quit()


def _pdf(path: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, "The lighthouse keeper of Skerryvore is named Alasdair Quillan. He keeps bees on the rock "
                         "and paints the lamp room blue every spring.")
    pdf.output(str(path))
    return path


def test_a_pdf_goes_into_the_conversation_and_the_reply_cites_it(browser: Browser, tmp_path: Path, server: Server) -> None:
    b = browser.open()
    settings(b, max_tokens=24)
    b.attach(_pdf(tmp_path / "lighthouse.pdf"))
    b.wait(lambda: "passages ready" in b.text("#composer-status"), what="the document to be ingested")
    send(b, "Who is the lighthouse keeper of Skerryvore?")
    b.wait(lambda: b.all(".msg.assistant .citations"), what="the sources")
    sources = b.text(".msg.assistant .citations")
    assert "lighthouse.pdf" in sources and "Quillan" in sources  # the cited passage is shown
    shoot(b, "chat-documents-desktop-light")


def test_an_image_needs_a_projector_and_the_button_says_so(browser: Browser, tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (200, 0, 0)).save(png)
    b = browser.open()
    b.attach(png)
    b.wait(lambda: "--mmproj" in b.text("#toast"), what="the reason")
    assert not b.all(".attachments .chip")


# --- images ---------------------------------------------------------------------------------------
def test_an_image_is_generated_with_progress_then_shown(browser: Browser) -> None:
    b = browser.open()
    b.find('.tab[data-view="images"]').click()
    b.type("#image-prompt", "a red square")
    b.js("document.getElementById('image-size').value = '256x256'")
    steps = b.find("#image-steps")
    steps.clear()
    steps.send_keys("4")
    b.find("#image-seed").send_keys("42")
    b.find("#image-go").click()
    progress = b.wait(lambda: b.js("const p = document.getElementById('image-progress'); return !p.hidden && p.value > 0 ? p.value : 0"),
                      what="progress", every=0.01)
    assert 0 < progress <= 1
    b.wait(lambda: b.all("#gallery figure img"), what="the image")
    src = b.find("#gallery figure img").get_attribute("src")
    assert src.startswith("data:image/png;base64,") and len(base64.b64decode(src.split(",", 1)[1])) > 100
    assert "seed 42" in b.text("#gallery figcaption") and "256x256" in b.text("#gallery figcaption")
    shoot(b, "images-desktop-light")


# --- server view and models -----------------------------------------------------------------------
def test_the_server_view_shows_slots_models_and_versions(browser: Browser) -> None:
    import chimera

    b = browser.open()
    b.find('.tab[data-view="server"]').click()
    b.wait(lambda: len(b.all("#server-slots tr")) == 3, what="two slots")  # header + -np 2
    b.wait(lambda: chimera.__version__ in b.text("#server-versions"), what="the versions")
    assert "slots busy" in b.text("#server-gen") and "SmolLM2" in b.text("#server-models")
    shoot(b, "server-desktop-light")


def test_the_model_picker_loads_and_unloads_on_demand(start_server: type[Server], tmp_path: Path) -> None:
    require_browser()
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny-a.gguf").symlink_to(shared_model("tiny-random-smollm2-vocab.gguf"))
    (folder / "tiny-b.gguf").symlink_to(shared_model("tiny-random-llama-spm.gguf"))
    vision = folder / "tiny-vision"  # a model with its projector: images go to it
    vision.mkdir()
    (vision / "model.gguf").symlink_to(shared_model("tiny-random-llama-spm.gguf"))
    (vision / "mmproj-tiny.gguf").symlink_to(shared_model("tiny-random-mmproj-64.gguf"))
    s = start_server("--models-dir", str(folder), "-c", "512", "-np", "1").wait_ready()
    b = Browser(s.base)
    try:
        b.open()
        options = [o.get_attribute("value") for o in b.all("#model option")]
        assert options == ["tiny-a", "tiny-b", "tiny-vision"]
        assert b.text("#model-status") == "unloaded" and b.find("#model-load").is_displayed()
        b.find("#model-load").click()
        b.wait(lambda: b.text("#model-status") == "loaded", what="the load")
        assert s.http().get("/v1/models").json()["data"][0]["status"]["value"] == "loaded"
        b.find("#model-unload").click()
        b.wait(lambda: b.text("#model-status") == "unloaded", what="the unload")
        b.js("document.getElementById('model').value = 'tiny-b'; document.getElementById('model').dispatchEvent(new Event('change'))")
        b.type("#input", "hi", enter=True)  # a request loads the model it names; the badge follows the events
        b.wait(lambda: b.text("#model-status") == "loaded", what="tiny-b loaded by the request")
        b.wait(lambda: b.js("return document.getElementById('stop').hidden"), what="the reply")
        # a vision model takes the image: it is shown in the message and counted in the prompt
        from PIL import Image

        png = tmp_path / "red.png"
        Image.new("RGB", (48, 48), (200, 0, 0)).save(png)
        b.js("document.getElementById('model').value = 'tiny-vision'; document.getElementById('model').dispatchEvent(new Event('change'))")
        b.find("#new-chat").click()  # the last reply filled tiny-b's context: start afresh
        b.attach(png)
        b.wait(lambda: b.all(".attachments .chip img"), what="the image chip")
        b.find("#settings").click()
        b.find("#set-max-tokens").send_keys("3")
        b.find("#set-save").click()
        b.type("#input", "What colour is this?", enter=True)
        b.wait(lambda: b.all(".msg.user img.attached"), what="the image in the message")
        b.wait(lambda: b.js("return document.getElementById('stop').hidden") and "prompt" in b.text(".msg.assistant:last-child .stats"),
               what="the reply about the image")
        prompt = int(re.search(r"prompt (\d+)", b.text(".msg.assistant:last-child .stats")).group(1))  # type: ignore[union-attr]
        assert prompt > 20, "the image's tokens count in the prompt"
        assert_same_origin(b, s.base)
    finally:
        b.quit()


def test_tool_calls_in_a_conversation_show_as_calls(browser: Browser, server: Server) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    r = server.http().post("/v1/chat/completions", json={"max_tokens": 2, "messages": [
        {"role": "user", "content": "Weather in Oslo?"}, {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"}, {"role": "user", "content": "thanks"}]})
    chat_id = r.headers["X-Chimera-Chat-Id"]
    b = browser.open()
    b.wait(lambda: b.all(f'#conversations li[data-id="{chat_id}"]'), what="the chat")
    b.find(f'#conversations li[data-id="{chat_id}"]').click()
    b.wait(lambda: b.all(".tool-call"), what="the call")
    assert "get_weather" in b.text(".tool-call") and "Oslo" in b.text(".tool-call")


# --- security -------------------------------------------------------------------------------------
EVIL = ('<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
        '[click me](javascript:window.__xss=3) <a href="javascript:window.__xss=4">raw</a> '
        '<iframe src="javascript:window.__xss=5"></iframe>\n\n![remote](http://198.51.100.7/pixel.png) **bold**')


def test_model_and_document_markup_stays_inert(browser: Browser, server: Server) -> None:
    # a chat whose history holds hostile markup (saved as the client sent it), opened in the UI
    r = server.http().post("/v1/chat/completions", json={"max_tokens": 2, "messages": [
        {"role": "user", "content": "<img src=x onerror=\"window.__xss = 6\">hello"},
        {"role": "assistant", "content": EVIL}, {"role": "user", "content": "ok"}]})
    chat_id = r.headers["X-Chimera-Chat-Id"]
    b = browser.open()
    b.wait(lambda: b.all(f'#conversations li[data-id="{chat_id}"]'), what="the chat")
    b.find(f'#conversations li[data-id="{chat_id}"]').click()
    b.wait(lambda: b.all(".msg.assistant strong"), what="the rendered reply")
    for a in b.all(".msg.assistant a"):
        b.driver.execute_script("arguments[0].click()", a)
    time.sleep(0.5)
    assert b.js("return window.__xss") is None
    assert not b.all(".messages script, .messages iframe, .messages [onerror]")
    assert all(not (a.get_attribute("href") or "").startswith("javascript:") for a in b.all(".messages a"))
    assert all(not img.get_attribute("src") for img in b.all(".msg.assistant img"))  # no remote image is fetched
    assert "<img src=x" in b.text(".msg.user")  # a user's text is text


def test_the_api_key_is_asked_once_kept_and_never_put_in_a_url(start_server: type[Server]) -> None:
    require_browser()
    s = start_server("-m", str(shared_model("tiny-random-smollm2-vocab.gguf")), "--api-key", "s3cret-key").wait_ready()
    b = Browser(s.base)
    try:
        b.open(ready=False)
        b.wait(lambda: b.js("return document.getElementById('key-dialog').open"), what="the key dialog")
        b.type("#key-input", "wrong", enter=True)
        b.wait(lambda: b.js("return document.getElementById('key-dialog').open && !document.getElementById('key-error').hidden"),
               what="the wrong key refused")
        b.find("#key-input").send_keys("s3cret-key")
        b.find("#key-save").click()
        b.wait(lambda: b.js("return document.body.dataset.ready === 'true'"), what="the UI with the key")
        assert b.js("return localStorage.getItem('chimera.apiKey')") == "s3cret-key"
        b.open()  # kept: no second question
        assert not b.js("return document.getElementById('key-dialog').open")
        assert all("s3cret" not in u for u in b.requested())
        assert_same_origin(b, s.base)
    finally:
        b.quit()


# --- screenshots ----------------------------------------------------------------------------------
def test_phone_width_and_dark_theme(browser: Browser, server: Server) -> None:
    b = browser.open()
    settings(b, max_tokens=40, temperature=0)
    send(b, "Give me three tips for keeping basil alive, as a list.")
    b.find("#theme").click()
    assert b.js("return document.documentElement.dataset.theme") == "dark"
    shoot(b, "chat-desktop-dark")
    b.resize(390, 844)
    time.sleep(0.3)
    assert not b.find("#sidebar").is_displayed() or b.js("return getComputedStyle(document.getElementById('sidebar')).transform") != "none"
    assert b.find("#input").is_displayed() and b.find("#send").is_displayed()
    width = b.js("return document.documentElement.scrollWidth")
    assert width <= 390, f"nothing wider than the phone: {width}"
    shoot(b, "chat-phone-dark")
    b.find("#theme").click()
    shoot(b, "chat-phone-light")
    b.find("#menu").click()
    b.wait(lambda: b.js("return document.getElementById('sidebar').classList.contains('open')"), what="the drawer")
    time.sleep(0.3)
    shoot(b, "sidebar-phone-light")
