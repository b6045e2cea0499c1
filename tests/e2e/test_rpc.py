"""llama.cpp's RPC backend from the same executable: two local `chimera rpc-server` helpers and
`chimera serve --rpc` with the model's layers on them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import REPO, Server, free_port

PROMPT = [{"role": "user", "content": "Name three colours of the rainbow."}]


class Helper:
    """`chimera rpc-server` on a free loopback port."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="chimera-rpc-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "chimera", "rpc-server", "-p", str(self.port), "-t", "1", *extra],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> Helper:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise AssertionError(f"rpc-server not listening after {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def helpers() -> Iterator[list[Helper]]:
    hs = [Helper(), Helper()]
    try:
        yield [h.wait_ready() for h in hs]
    finally:
        for h in hs:
            h.stop()


def greedy(s: Server, n: int = 24) -> str:
    r = s.http().post("/v1/chat/completions", json={"messages": PROMPT, "max_tokens": n, "temperature": 0})
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


def test_layers_on_two_helpers_match_a_local_run(helpers: list[Helper], start_server: type[Server], smollm: Path) -> None:
    local = start_server("-m", str(smollm), "-c", "1024", "-np", "1").wait_ready()
    want = greedy(local)
    local.stop()
    rpc = ",".join(h.endpoint for h in helpers)
    # `chimera info` lists the helpers' devices (a helper serves one client at a time: before the server)
    cli = subprocess.run([sys.executable, "-m", "chimera", "info", "--rpc", rpc], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert cli.returncode == 0, cli.stderr
    listed = [d for d in json.loads(cli.stdout)["llama_cpp"]["devices"] if d["rpc"]]
    assert sorted(d["description"] for d in listed) == sorted(h.endpoint for h in helpers)
    s = start_server("-m", str(smollm), "-c", "1024", "-np", "1", "--rpc", rpc, "-ngl", "99").wait_ready()
    assert greedy(s) == want
    # the devices, with the memory their servers report
    info = s.http().get("/v1/chimera/info").json()
    devs = [d for d in info["llama_cpp"]["devices"] if d["rpc"]]
    assert sorted(d["description"] for d in devs) == sorted(h.endpoint for h in helpers)
    assert all(d["memory_total"] > 0 for d in devs)
    metrics = s.http().get("/metrics").text
    for d in devs:
        assert f'chimera_device_memory_bytes{{device="{d["name"]}",endpoint="{d["description"]}",kind="total"}}' in metrics
    assert "RPC device" in s.output() and helpers[0].endpoint in s.output()
    # while this server holds them, another client waits: a clear message, not a hang
    busy = subprocess.run([sys.executable, "-m", "chimera", "info", "--rpc", helpers[0].endpoint], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert busy.returncode == 2 and "serves one client at a time" in busy.stderr, busy.stderr
    # (that the layers really are on the helpers: killing one breaks the model, below)


def test_unreachable_endpoint_is_a_clear_error(start_server: type[Server], smollm: Path) -> None:
    closed = free_port()
    t0 = time.monotonic()
    s = start_server("-m", str(smollm), "--rpc", f"127.0.0.1:{closed}", "-ngl", "99")
    assert s.proc.wait(60) == 2, s.output()
    assert time.monotonic() - t0 < 30
    assert f"--rpc 127.0.0.1:{closed}: unreachable" in s.output()
    bad = start_server("-m", str(smollm), "--rpc", "nohostport")
    assert bad.proc.wait(60) == 2 and "not HOST:PORT" in bad.output()


def test_not_an_rpc_server(start_server: type[Server], smollm: Path) -> None:
    """Something else listens there (an HTTP server): refused by name, llama.cpp never sees it."""
    other = start_server("-m", str(smollm), "-c", "512", "-np", "1").wait_ready()
    s = start_server("-m", str(smollm), "--rpc", f"127.0.0.1:{other.port}", "-ngl", "99")
    assert s.proc.wait(60) == 2, s.output()
    assert f"--rpc 127.0.0.1:{other.port}:" in s.output()


def test_helper_killed_mid_stream(helpers: list[Helper], start_server: type[Server], smollm: Path) -> None:
    rpc = ",".join(h.endpoint for h in helpers)
    s = start_server("-m", str(smollm), "-c", "2048", "-np", "2", "--rpc", rpc, "-ngl", "99").wait_ready()
    body = {"messages": PROMPT, "max_tokens": 400, "ignore_eos": True, "stream": True}
    events: list[dict[str, object]] = []
    with s.http().stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            events.append(json.loads(line[6:]))
            if len(events) == 5:
                helpers[1].proc.send_signal(signal.SIGKILL)
    assert len(events) < 400
    err = events[-1].get("error")
    assert isinstance(err, dict) and helpers[1].endpoint in str(err["message"]) and "RPC" in str(err["message"]), events[-1]
    assert helpers[0].endpoint not in str(err["message"])  # the live helper is not blamed
    # the server is up, says what happened, and answers the model's requests with the reason
    h = httpx.get(s.base + "/health", timeout=10)
    assert h.status_code == 503 and helpers[1].endpoint in h.json()["error"]
    r2 = s.http().post("/v1/chat/completions", json={"messages": PROMPT, "max_tokens": 4})
    assert r2.status_code == 503 and r2.json()["error"]["code"] == "device_lost", r2.text
    listed = s.http().get("/v1/models").json()["data"]
    assert listed[0]["status"]["value"] == "failed"
    info = s.http().get("/v1/chimera/info", timeout=30)
    assert info.status_code == 200  # the dead device's memory is not asked for (that would wait for ever)
    assert s.stop() == 0


def test_rpc_server_refuses_a_network_bind_without_the_flag(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "chimera", "rpc-server", "-H", "0.0.0.0", "-p", str(free_port())],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 2 and "--allow-network" in p.stderr and "no authentication" in p.stderr
    unknown = subprocess.run([sys.executable, "-m", "chimera", "rpc-server", "-d", "NOPE", "-p", str(free_port())],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    assert unknown.returncode == 2 and "no device 'NOPE'" in unknown.stderr and "CPU" in unknown.stderr
    # with the flag it listens, after upstream's warning
    h = Helper("-H", "0.0.0.0", "--allow-network", "--cache", "--cache-dir", str(tmp_path / "c"), "-d", "CPU")
    try:
        h.wait_ready()
        assert "Never expose the RPC server to an open network" in h.output()
        assert (tmp_path / "c").is_dir()
    finally:
        h.stop()


def test_preset_rpc_key_per_model(helpers: list[Helper], start_server: type[Server], smollm: Path, tmp_path: Path) -> None:
    """The preset's `rpc` key: one model on a helper, another on this machine alone; a helper
    that dies takes only its model; a model whose helper does not answer fails alone, naming it."""
    from conftest import shared_model

    models = tmp_path / "models"
    models.mkdir()
    (models / "remote.gguf").symlink_to(smollm)
    (models / "local.gguf").symlink_to(shared_model("tiny-random-llama-spm.gguf"))
    (models / "nowhere.gguf").symlink_to(smollm)
    closed = free_port()
    preset = tmp_path / "preset.toml"
    preset.write_text(f'[defaults]\nctx-size = 1024\nparallel = 1\n\n[remote]\nrpc = "{helpers[0].endpoint}"\n\n'
                      f'[nowhere]\nrpc = ["127.0.0.1:{closed}"]\n')
    s = start_server("--models-dir", str(models), "--models-preset", str(preset), "-ngl", "99").wait_ready()
    http = s.http()

    def ask(model: str, n: int = 12) -> httpx.Response:
        return http.post("/v1/chat/completions", json={"model": model, "messages": PROMPT, "max_tokens": n, "temperature": 0})

    assert ask("local").status_code == 200
    # nothing registered yet: the helper's devices come with the model that names it
    devs = http.get("/v1/chimera/info").json()["llama_cpp"]["devices"]
    assert not [d for d in devs if d["rpc"]]
    r = ask("remote", 24)
    assert r.status_code == 200, r.text
    devs = http.get("/v1/chimera/info").json()["llama_cpp"]["devices"]
    assert [d["description"] for d in devs if d["rpc"]] == [helpers[0].endpoint]
    bad = ask("nowhere")
    assert bad.status_code == 503 and f"127.0.0.1:{closed}" in bad.json()["error"]["message"], bad.text
    # the remote model's helper dies: that model is lost, the local one serves on
    helpers[0].proc.kill()
    helpers[0].proc.wait()
    lost = ask("remote")  # its decode meets the dead helper
    assert lost.status_code == 503 and lost.json()["error"]["code"] == "device_lost", lost.text
    again = ask("remote")
    assert again.status_code == 503 and again.json()["error"]["code"] == "device_lost", again.text
    assert helpers[0].endpoint in again.json()["error"]["message"]
    assert ask("local").status_code == 200
    assert s.stop() == 0
