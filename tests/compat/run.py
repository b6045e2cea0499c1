"""`make compat`: llama.cpp's own server test suite (tools/server/tests of the llama.cpp that the
pinned llama-cpp-python sdist vendors), run against llama-server built from the same sources and
against chimera, and docs/compat.md written from the two runs: per test file, how many of the tests
that pass against llama-server here also pass against chimera, and why each of the others fails.

    .venv/bin/python tests/compat/run.py [--write docs/compat.md] [--target both|llama-server|chimera]
                                         [-k EXPR] [FILE ...]      e.g. unit/test_tokenize.py
    .venv/bin/python tests/compat/run.py --report-only --write docs/compat.md   (from the last runs)

The suite is unpacked into ~/.cache/chimera/compat/ (never into the repository); the hub models it
names are local stand-ins (tests/compat/standins.py), the server binary it starts is
tests/compat/launcher.py. Two harness changes, the same for both servers, are made in a
unit/conftest.py of the unpacked copy: the session fixture that starts every preset once to
download its model is a no-op (the stand-ins are local files), and each test gets a time limit.
Tests marked `slow` are not run (they need 1-8B models from the hub), as the suite's tests.sh does.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import standins  # noqa: E402

CACHE = Path(os.environ.get("CHIMERA_CACHE") or Path.home() / ".cache" / "chimera")
ROOT = CACHE / "compat"
RESULTS = ROOT / "results"
TARGETS = ("llama-server", "chimera")
PORT = os.environ.get("COMPAT_PORT", "18080")

HARNESS_CONFTEST = '''\
# written by chimera's tests/compat/run.py (`make compat`); not part of llama.cpp's suite
import os
import signal

import pytest


@pytest.fixture(scope="session", autouse=True)
def load_server_presets():
    # the suite's fixture starts every preset once so that its hub model is downloaded before the
    # tests; the stand-ins are local files, so there is nothing to download
    yield


# the suite fetches two test images from the hub itself (requests.get, for base64 payloads): serve
# them from local files (COMPAT_IMAGES_URL -> COMPAT_IMAGES); every other request goes through
import requests  # noqa: E402

_get = requests.get


def _local_get(url, *args, **kwargs):
    base = os.environ.get("COMPAT_IMAGES_URL")
    if base and isinstance(url, str) and url.startswith(base):
        path = os.path.join(os.environ["COMPAT_IMAGES"], url[len(base):])
        res = requests.models.Response()
        res.url, res.status_code = url, 404
        if os.path.isfile(path):
            res.status_code = 200
            res.headers["Content-Type"] = "image/png"
            with open(path, "rb") as f:
                res._content = f.read()
        return res
    return _get(url, *args, **kwargs)


requests.get = _local_get

TIMEOUT = int(os.environ.get("COMPAT_TEST_TIMEOUT", "300"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    def on_alarm(signum, frame):
        raise TimeoutError(f"compat: the test ran over {TIMEOUT} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
'''


def llama_cpp_version() -> str:
    for line in (REPO / "native" / "versions.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "LLAMA_CPP_PYTHON_VERSION":
            return value.strip()
    raise RuntimeError("LLAMA_CPP_PYTHON_VERSION is not in native/versions.env")


def sdist() -> Path:
    v = llama_cpp_version()
    for name in (f"llama_cpp_python-{v}.tar.gz", f"llama-cpp-python-{v}.tar.gz"):
        if (CACHE / "sdist" / name).exists():
            return CACHE / "sdist" / name
    sys.path.insert(0, str(REPO / "tests"))
    from models.vocab import llama_cpp_sdist  # downloads it with pip, as the build does

    return llama_cpp_sdist()


def extract_suite() -> Path:
    """The suite (and what its tests read beside it: tools/, models/templates/) unpacked from the
    sdist; returns the tests folder. tests/tmp/ is emptied for each run."""
    src = sdist()
    dest = ROOT / src.name.removesuffix(".tar.gz")
    marker = dest / ".extracted"
    if not marker.exists():
        shutil.rmtree(dest, ignore_errors=True)
        wanted = ("/vendor/llama.cpp/tools/", "/vendor/llama.cpp/models/templates/")
        with tarfile.open(src) as tar:
            members = [m for m in tar if any(w in m.name for w in wanted)]
            tar.extractall(dest, members=members, filter="data")
        marker.write_text(str(src))
    (top,) = [p for p in dest.iterdir() if p.is_dir()]
    tests = top / "vendor" / "llama.cpp" / "tools" / "server" / "tests"
    (tests / "unit" / "conftest.py").write_text(HARNESS_CONFTEST)
    return tests


def ensure_requirements(tests: Path) -> list[str]:
    """pip-installs the suite's requirements that the venv lacks; returns notes on the ones present
    in another version (kept: chimera's own tests use them)."""
    missing, notes = [], []
    for line in (tests / "requirements.txt").read_text().splitlines():
        req = line.split("#")[0].strip()
        if not req:
            continue
        name = re.split(r"[<>=~!\[ ]", req, maxsplit=1)[0]
        try:
            have = importlib.metadata.version(name)
            notes.append(f"{req} (the venv has {have})")
        except importlib.metadata.PackageNotFoundError:
            missing.append(req)
    if missing:
        print(f"installing the suite's requirements: {' '.join(missing)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    return notes


def llama_server() -> Path:
    out = subprocess.run([str(REPO / "native" / "build-llama-server.sh"), "cpu"], check=True, capture_output=True, text=True,
                         env=dict(os.environ, PYTHON=sys.executable))
    return Path(out.stdout.strip().splitlines()[-1])


def run_suite(target: str, tests: Path, hub: Path, downloads: Path, ls_bin: Path, selection: list[str], k: str | None,
              timeout: int) -> Path:
    tmp = tests / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for f in downloads.iterdir():
        (tmp / f.name).symlink_to(f.resolve())
    RESULTS.mkdir(parents=True, exist_ok=True)
    xml, log = RESULTS / f"{target}.xml", RESULTS / f"{target}.launches.jsonl"
    log.unlink(missing_ok=True)
    wrapper = ROOT / "llama-server-launcher"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {HERE / 'launcher.py'} \"$@\"\n")
    wrapper.chmod(0o755)
    env = dict(os.environ, LLAMA_SERVER_BIN_PATH=str(wrapper), COMPAT_TARGET=target, COMPAT_LLAMA_SERVER=str(ls_bin),
               COMPAT_CHIMERA=str(Path(sys.executable).parent / "chimera"), LLAMA_CACHE=str(hub), COMPAT_LOG=str(log),
               COMPAT_SCRATCH=str(ROOT), PORT=PORT, PYTHONUNBUFFERED="1", COMPAT_IMAGES_URL=standins.IMAGES_URL,
               COMPAT_IMAGES=str(standins.build_images(ROOT, tests.parents[1] / "mtmd" / "test-1.jpeg")))
    if target == "chimera" and os.environ.get("COMPAT_CHIMERA_PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ["COMPAT_CHIMERA_PYTHONPATH"], env.get("PYTHONPATH")]))
    for var in ("DEBUG", "DEBUG_EXTERNAL", "SLOW_TESTS", "N_GPU_LAYERS"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "pytest", *(selection or ["unit"]), "-m", "not slow", "-p", "no:cacheprovider", "-p", "no:randomly",
           "-o", "junit_logging=all", "-o", "junit_family=xunit1", f"--junitxml={xml}", "-q", "-rN"]
    if k:
        cmd += ["-k", k]
    print(f"\n== {target}: {' '.join(cmd[3:])}", flush=True)
    try:
        subprocess.run(cmd, cwd=tests, env=env, timeout=timeout, stdout=open(RESULTS / f"{target}.out", "w"), stderr=subprocess.STDOUT)
    except subprocess.TimeoutExpired:
        print(f"{target}: the suite ran over {timeout} s and was stopped", flush=True)
    print(f"{target}: {summary_line(parse(xml))}", flush=True)
    return xml


# --- results ------------------------------------------------------------------------------------
@dataclass
class Result:
    file: str
    name: str
    outcome: str  # passed, failed, error, skipped
    message: str = ""
    output: str = ""
    seconds: float = 0.0

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


def parse(xml: Path) -> dict[str, Result]:
    out: dict[str, Result] = {}
    if not xml.exists():
        return out
    for tc in ET.parse(xml).getroot().iter("testcase"):
        file = tc.get("file") or (tc.get("classname", "").replace(".", "/") + ".py")
        r = Result(file, tc.get("name", ""), "passed", seconds=float(tc.get("time") or 0))
        for child in tc:
            if child.tag in ("failure", "error", "skipped"):
                r.outcome = "failed" if child.tag == "failure" else child.tag
                r.message = (child.get("message") or "") + "\n" + (child.text or "")
            elif child.tag in ("system-out", "system-err"):
                r.output += child.text or ""
        if r.id in out and out[r.id].outcome != "passed":  # a teardown error after a failure: keep the failure
            continue
        out[r.id] = r
    return out


def summary_line(res: dict[str, Result]) -> str:
    n: dict[str, int] = defaultdict(int)
    for r in res.values():
        n[r.outcome] += 1
    return ", ".join(f"{v} {k}" for k, v in sorted(n.items())) or "no results"


SERVER_ERROR = re.compile(r"^[\s|]*(chimera: error: .*|compat launcher: no stand-in.*|error: .*|"
                          r"[A-Za-z_][\w.]*(?:[Ee]rror|Exception)\w*: .*|.*\bERROR\b.*)$", re.M)


def reason(r: Result) -> str:
    """One line: why the test failed (paths in the scratch copy shortened)."""
    return re.sub(r"/\S*/tools/server/tests/", "<suite>/", _reason(r))


def _reason(r: Result) -> str:
    msg = r.message.strip()
    first = msg.splitlines()[0] if msg else r.outcome
    if "Server process died" in msg or "Server did not start" in msg:
        errs = [e.strip() for e in SERVER_ERROR.findall(r.output.split("Server process died")[0])]
        if errs:
            return f"the server did not start: {errs[-1][:140]}"
    # prefer the assertion line pytest marks with E
    e_lines = [ln[1:].strip() for ln in msg.splitlines() if ln.startswith("E ")]
    line = re.sub(r"\s+", " ", e_lines[0] if e_lines else first)[:200]
    if re.search(r"\b[45]\d\d\b", line):  # a status code: add the server's last error message
        said = [m for m in re.findall(r'"message": "((?:[^"\\]|\\.)*)"', r.output) if m != "Loading model"]
        if said:
            line += f' (server: "{said[-1][:160]}")'
    return line


# A cause (what chimera lacks or does differently), where its fix would go, and which failures it
# explains: a regular expression over "test id | reason". The first cause that matches wins;
# failures no cause matches are listed under "other" with their reasons.
@dataclass
class Cause:
    title: str
    where: str
    pattern: str
    tests: list[tuple[str, str]] = field(default_factory=list)


CAUSES: list[Cause] = []


def load_causes() -> list[Cause]:
    path = HERE / "causes.json"
    if not path.exists():
        return []
    return [Cause(c["title"], c.get("where", ""), c["pattern"]) for c in json.loads(path.read_text())]


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def translations(log: Path) -> dict[str, int]:
    notes: dict[str, int] = defaultdict(int)
    if log.exists():
        for line in log.read_text().splitlines():
            for n in json.loads(line)["notes"]:
                notes[n] += 1
    return notes


def collected(tests: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "unit", "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=tests,
                         capture_output=True, text=True, env=dict(os.environ, LLAMA_CACHE=str(ROOT / "hub")))
    return [ln.strip() for ln in out.stdout.splitlines() if "::" in ln]


def report(tests: Path, req_notes: list[str], ls_bin: str) -> str:
    ls, ch = parse(RESULTS / "llama-server.xml"), parse(RESULTS / "chimera.xml")
    meta = json.loads((RESULTS / "meta.json").read_text()) if (RESULTS / "meta.json").exists() else {}
    files = sorted({r.file for r in ls.values()} | {r.file for r in ch.values()})
    causes = load_causes()
    other: list[tuple[str, str]] = []
    rows, tot_ls, tot_ch = [], 0, 0
    for f in files:
        passed = [r for r in ls.values() if r.file == f and r.outcome == "passed"]
        ok = [r for r in passed if r.id in ch and ch[r.id].outcome == "passed"]
        for r in passed:
            c = ch.get(r.id)
            if c is None or c.outcome == "passed":
                continue
            why = reason(c) if c.outcome != "skipped" else f"skipped: {c.message.strip().splitlines()[0] if c.message.strip() else ''}"
            key = f"{r.id} | {why}"
            for cause in causes:
                if re.search(cause.pattern, key):
                    cause.tests.append((r.id, why))
                    break
            else:
                other.append((r.id, why))
        n_ls = len(passed)
        n_run = sum(1 for r in ls.values() if r.file == f and r.outcome != "skipped")
        tot_ls += n_ls
        tot_ch += len(ok)
        pct = f"{100 * len(ok) / n_ls:.0f} %" if n_ls else "–"
        rows.append(f"| {f.removeprefix('unit/')} | {n_run} | {n_ls} | {len(ok)} | {pct} |")
    all_ids = set(meta.get("collected", []))
    not_run = sorted(i for i in all_ids if i not in ls and i.split("::")[0] in files)

    out = [
        "# llama.cpp's server tests against chimera",
        "",
        f"`make compat` ({'tests/compat/run.py'}) runs the server test suite of the llama.cpp that chimera is built on "
        f"(`tools/server/tests` of llama-cpp-python {llama_cpp_version()}'s vendored llama.cpp) twice: against llama-server built "
        "from the same sources (`native/build-llama-server.sh`), then against `chimera serve`. A test counts for chimera only "
        "if it passes against llama-server here, with the same local stand-in models.",
        "",
        f"- Run: {meta.get('date', '?')} on {meta.get('machine', machine())}; llama-server `{Path(ls_bin).name}` "
        f"(`{Path(ls_bin).parent.parent.name}`), chimera {meta.get('chimera', '?')} at commit {meta.get('commit', '?')}.",
        f"- {meta.get('selection', 'all of unit/')}, `-m \"not slow\"`, one test at a time, {meta.get('timeout', 300)} s per test.",
        "",
        "| test file | run on llama-server | passed on llama-server | of those, passed on chimera | share |",
        "|---|---|---|---|---|",
        *rows,
        f"| **total** | {sum(1 for r in ls.values() if r.outcome != 'skipped')} | **{tot_ls}** | **{tot_ch}** | "
        f"**{100 * tot_ch / tot_ls:.0f} %** |" if tot_ls else "| **total** | | 0 | 0 | – |",
        "",
        "## Where chimera fails, by cause",
        "",
        "Every test that passes against llama-server and fails against chimera, with the first line of the failure.",
        "",
    ]
    for cause in [c for c in causes if c.tests]:
        out += [f"### {cause.title} ({len(cause.tests)})", ""]
        if cause.where:
            out += [f"Fix: {cause.where}", ""]
        out += [f"- `{t}`: {w}" for t, w in sorted(cause.tests)] + [""]
    if other:
        out += [f"### Other ({len(other)})", ""] + [f"- `{t}`: {w}" for t, w in sorted(other)] + [""]

    ls_fail = sorted((r for r in ls.values() if r.outcome in ("failed", "error")), key=lambda r: r.id)
    ls_skip = sorted((r for r in ls.values() if r.outcome == "skipped"), key=lambda r: r.id)
    by_file: dict[str, list[Result]] = defaultdict(list)
    for r in ls_fail:
        by_file[r.file].append(r)
    out += [
        "## Not in the comparison",
        "",
        f"### Failing against llama-server here ({len(ls_fail)})",
        "",
        "Mostly the stand-ins: their weights are random, so tests that check what a trained model writes "
        "(`match_regex` on the content, token counts of a trained tokenizer, a reranker's order) fail; the ones that need "
        "the network fail (`socket.gaierror`; the LoRA adapter; images the server fetches by URL, which also need a TLS build); "
        "and this llama-server is built without its web UI (`-DLLAMA_BUILD_WEBUI=OFF` in native/build-llama-server.sh), so "
        "the tests of `/` fail. Per file, with the distinct reasons:",
        "",
    ]
    for f, rs in sorted(by_file.items()):
        reasons: dict[str, int] = defaultdict(int)
        for r in rs:
            reasons[re.sub(r"\d+(\.\d+)?", "N", reason(r))[:140]] += 1
        top = "; ".join(f"{k} (×{v})" if v > 1 else k for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:4])
        out.append(f"- {f.removeprefix('unit/')} ({len(rs)}): {top}")
    out += ["", f"### Skipped by the suite ({len(ls_skip)})", ""]
    skip_reasons: dict[str, list[str]] = defaultdict(list)
    for r in ls_skip:
        skip_reasons[(r.message.strip().splitlines() or ["?"])[0][:160]].append(r.id.removeprefix("unit/"))
    out += [f"- {k}: {', '.join(v)}" for k, v in sorted(skip_reasons.items())]
    if not_run:
        slow_files: dict[str, int] = defaultdict(int)
        for i in not_run:
            slow_files[i.split("::")[0].removeprefix("unit/")] += 1
        out += ["", f"### Not run: marked `slow` ({len(not_run)})", "",
                "They need hub models of 0.5 to 8 B parameters (tool calling with real chat models, Phi-3.5, Qwen2.5-Coder, "
                "DeepSeek-R1-Distill, Llama-3.1-8B with a LoRA), which have no stand-in here: "
                + ", ".join(f"{f} ({n})" for f, n in sorted(slow_files.items())) + "."]
    out += [
        "",
        "## How the suite is run",
        "",
        "- **Stand-ins.** No hub here: each hub file the suite names is a local GGUF in a Hugging Face cache layout "
        "(`LLAMA_CACHE`), which llama-server reads itself, the way it does offline (tests/compat/standins.py):",
        "",
        "| hub file | real model | stand-in |",
        "|---|---|---|",
        *[f"| `{s.repo}/{s.path}` | {s.real} | {standins.SOURCES.get(s.source, standins.SOURCES.get(s.source.rsplit('-', 1)[0] + '-1', s.source))} |"
          for s in standins.HUB if s.real],
        *[f"| `tmp/{n}` (`download_file`) | {why} | {standins.SOURCES[src]} |" for n, (src, why) in standins.DOWNLOADS.items()],
        *[f"| `tmp/{n}` (`download_file`) | {why} | none: those tests fail on both |" for n, why in standins.NO_STANDIN.items()],
        "",
        "- **Launcher** (tests/compat/launcher.py, the suite's `LLAMA_SERVER_BIN_PATH`): llama-server gets the suite's command "
        "line unchanged. chimera gets it with these translations, and no others (a flag chimera does not take makes it exit, "
        "and the test fails with its message); launches of the chimera run that needed each:",
        "",
        *[f"  - `{n}`: {c}" for n, c in sorted(translations(RESULTS / "chimera.launches.jsonl").items())],
        "",
        "- **Harness** (a unit/conftest.py added to the unpacked suite, the same for both servers): the session fixture that "
        "starts every preset once to download its hub model does nothing (the stand-ins are local), and a test that runs "
        "over the time limit fails instead of hanging the run. The two test images the suite fetches from the hub with "
        f"`requests.get` ({', '.join(standins.IMAGES)}, for base64 payloads) are served from local PNGs made from "
        "llama.cpp's tools/mtmd/test-1.jpeg; images the server itself is asked to fetch by URL are not (no network).",
        f"- **Details.** Each run's junit XML (with every test's server output), its console output and a log of every "
        f"launch (argv in, argv out) are in `{RESULTS.relative_to(Path.home()) if RESULTS.is_relative_to(Path.home()) else RESULTS}` "
        "(under the home folder); `tests/compat/run.py --report-only` rewrites this page from them, and tests/compat/causes.json "
        "sorts the failures into the causes above.",
        "- **Python packages.** The suite's requirements.txt: the missing ones are installed into the venv; these are present "
        "in another version and kept: " + "; ".join(req_notes) + ".",
        "",
    ]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="test files or node ids, relative to the suite's folder (default: unit)")
    ap.add_argument("-k", default=None, help="pytest -k expression")
    ap.add_argument("--target", choices=("both", *TARGETS), default="both")
    ap.add_argument("--write", type=Path, default=None, help="write the report here (e.g. docs/compat.md)")
    ap.add_argument("--report-only", action="store_true", help="write the report from the last runs' results")
    ap.add_argument("--chimera-tree", choices=("working", "head"), default="working",
                    help="run chimera from the working tree (default) or from the last commit's app/ (git archive HEAD)")
    ap.add_argument("--test-timeout", type=int, default=300, help="seconds a test may take")
    ap.add_argument("--timeout", type=int, default=4 * 3600, help="seconds a whole run may take")
    args = ap.parse_args()

    tests = extract_suite()
    req_notes = ensure_requirements(tests)
    ls_bin = llama_server()
    if not args.report_only:
        hub, downloads = standins.build(ROOT)
        os.environ["COMPAT_TEST_TIMEOUT"] = str(args.test_timeout)
        meta = {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "chimera": importlib.metadata.version("chimera") if _has("chimera") else "?",
            "commit": _commit(args.chimera_tree),
            "selection": ("selected: " + " ".join(args.files) if args.files else "all of unit/") + (f" -k {args.k!r}" if args.k else ""),
            "timeout": args.test_timeout,
            "collected": collected(tests),
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "meta.json").write_text(json.dumps(meta, indent=1))
        for target in TARGETS if args.target == "both" else (args.target,):
            run_suite(target, tests, hub, downloads, ls_bin, args.files, args.k, args.timeout)
    text = report(tests, req_notes, str(ls_bin))
    if args.write:
        args.write.write_text(text)
        print(f"wrote {args.write}")
    else:
        print(text)


def _commit(tree: str) -> str:
    """The commit chimera runs from; with `head`, app/ of HEAD is unpacked and put first on PYTHONPATH."""
    if tree == "working":
        out = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True)
        return out.stdout.strip() + " (working tree)"
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    dest = ROOT / "chimera-head"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD", "app"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    os.environ["COMPAT_CHIMERA_PYTHONPATH"] = str(dest / "app")
    return commit + " (committed app/, without uncommitted changes)"


def _has(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


if __name__ == "__main__":
    main()
