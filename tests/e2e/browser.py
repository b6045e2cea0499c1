"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven through Selenium, for the
web UI's tests: waits, screenshots, and every URL the page requested (read from Chrome's network
log), so a test can prove that nothing left the machine."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
SKIP_REASON = ("no browser: the web UI's tests need Debian's chromium and chromium-driver, which `make test` installs "
               "with apt-get when it runs as root (apt-get install chromium chromium-driver)")


def require_browser() -> None:
    if CHROMIUM is None or DRIVER is None:
        pytest.skip(SKIP_REASON)


class Browser:
    """One browser profile (its own storage: a second Browser is another browser)."""

    def __init__(self, base: str, *, width: int = 1280, height: int = 860, fake_microphone: bool = False) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        require_browser()
        opts = webdriver.ChromeOptions()
        opts.binary_location = str(CHROMIUM)
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-default-apps", "--metrics-recording-only"):
            opts.add_argument(arg)
        if fake_microphone:  # a generated tone instead of a microphone, and no permission prompt
            opts.add_argument("--use-fake-ui-for-media-stream")
            opts.add_argument("--use-fake-device-for-media-stream")
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(str(DRIVER)), options=opts)
        self.base = base
        self.urls: list[str] = []
        self.console: list[dict[str, Any]] = []

    # -- pages --------------------------------------------------------------------------------
    def open(self, path: str = "/", *, ready: bool = True) -> Browser:
        self.driver.get(self.base + path)
        if ready:
            self.wait(lambda: self.js("return document.body.dataset.ready === 'true'"), what="the UI to start")
        return self

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str) -> str:
        return str(self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent : ''", css))

    def wait(self, cond: Callable[[], Any], timeout: float = 90, what: str = "a condition", every: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got = cond()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; console: {self.logs()}")
            time.sleep(every)

    def type(self, css: str, text: str, enter: bool = False) -> None:
        from selenium.webdriver.common.keys import Keys

        el = self.find(css)
        el.send_keys(text)
        if enter:
            el.send_keys(Keys.ENTER)

    def attach(self, path: Path) -> None:
        self.find("#attach").send_keys(str(path))

    def shot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))

    def resize(self, width: int, height: int) -> None:
        self.driver.set_window_size(width, height)

    # -- what the page did ----------------------------------------------------------------------
    def logs(self) -> list[dict[str, Any]]:
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                self.urls.append(msg["params"]["request"]["url"])
        self.console += self.driver.get_log("browser")
        return self.console

    def requested(self) -> list[str]:
        self.logs()
        return list(self.urls)

    def quit(self) -> None:
        self.driver.quit()
