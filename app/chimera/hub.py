"""Model downloads: llama-server's `-hf REPO[:QUANT]`, `--hf-file`, `-mu URL`, and `chimera pull`.

Through huggingface_hub: its file URLs, auth headers, metadata (etag, size, redirects) and HTTP
download with retries; `HF_ENDPOINT` and `HF_TOKEN` are honoured. Files go to
`<models cache>/hub/<owner>/<repo>/<file>`. A download is written to `<file>.part` beside it and
resumes from there (within a run after a dropped connection, and in a later run after an
interrupted one), and is checked against the hub's checksum (the sha256 of an LFS file, the git blob
hash of a small one) before it is moved into place: a file that does not match is deleted and
refused. A file already complete is used without downloading again; with `--offline`, or when the
hub cannot be reached, the cached copy is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

log = logging.getLogger("chimera.hub")

DEFAULT_QUANT = "Q4_K_M"  # llama-server's default tag
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.I)


@dataclass(frozen=True)
class Fetched:
    model: Path
    mmproj: Path | None = None


def parse_repo(text: str) -> tuple[str, str | None]:
    """`owner/name[:QUANT]` → (repo, quant)."""
    repo, _, quant = text.partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ConfigError(f"--hf-repo: expected <user>/<model>[:quant], got {text!r}")
    return repo, quant or None


def pick_files(files: list[str], quant: str | None) -> tuple[list[str], str | None]:
    """The GGUF files of a repository that make the model (every part of a split model) for
    this quant, and the projector to go with it (None if the repo has none). As llama-server:
    the quant is matched case-insensitively in the file name, Q4_K_M by default, else the first
    model file."""
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf"))
    projectors = [f for f in ggufs if "mmproj" in Path(f).name.lower()]
    models = [f for f in ggufs if f not in projectors]
    if not models:
        raise ConfigError("this repository has no GGUF model file")

    def tagged(tag: str) -> list[str]:
        pat = re.compile(rf"(^|[-._/]){re.escape(tag)}([-._]|$)", re.I)
        return [f for f in models if pat.search(Path(f).name.removesuffix(".gguf"))]

    if quant:
        chosen = tagged(quant)
        if not chosen:
            names = ", ".join(Path(f).name for f in models)
            raise ConfigError(f"no {quant} file in this repository (it has {names})")
    else:
        chosen = tagged(DEFAULT_QUANT) or models[:1]
    first = chosen[0]
    m = _SPLIT.search(first)
    if m:  # every part of the split model
        stem = first[: m.start()]
        parts = [f for f in chosen if f.startswith(stem) and _SPLIT.search(f)]
        chosen = sorted(parts)
    else:
        chosen = [first]
    projector = None
    if projectors:
        by_pref = sorted(projectors, key=lambda f: (0 if "f16" in f.lower() else 1 if "bf16" in f.lower() else 2, f))
        projector = by_pref[0]
    return chosen, projector


class Hub:
    def __init__(self, cache: Path, token: str | None = None, endpoint: str | None = None, offline: bool = False,
                 progress: bool | None = None) -> None:
        self.root = cache / "hub"
        self.token = token or os.environ.get("HF_TOKEN") or None
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        self.offline = offline
        self.progress = sys.stderr.isatty() if progress is None else progress

    # -- repositories -------------------------------------------------------------------------
    def fetch_repo(self, repo: str, quant: str | None = None, file: str | None = None, projector: bool = True,
                   revision: str = "main") -> Fetched:
        """Download (or find in the cache) a repository's model for this quant or file, and its
        projector when it has one and `projector` is on."""
        files = self._list(repo, revision)
        if file is not None:
            if files and file not in files:
                raise ConfigError(f"--hf-file: {repo} has no file {file!r}")
            parts = [file]
            m = _SPLIT.search(file)
            if m and files:
                parts = sorted(f for f in files if f.startswith(file[: m.start()]) and _SPLIT.search(f))
            _, mm = pick_files(files, None) if files else ([], None)
        else:
            if not files:
                raise ConfigError(f"{repo}: not in the cache, and the hub cannot be asked ({'offline' if self.offline else 'unreachable'})")
            parts, mm = pick_files(files, quant)
        paths = [self.fetch_file(repo, f, revision) for f in parts]
        mmproj = self.fetch_file(repo, mm, revision) if (mm and projector) else None
        return Fetched(paths[0], mmproj)

    def _list(self, repo: str, revision: str) -> list[str]:
        """The repository's files: from the hub, or from the cache when offline or unreachable."""
        local = self.root / repo
        cached = sorted(str(p.relative_to(local)) for p in local.rglob("*.gguf")) if local.is_dir() else []
        if self.offline:
            return cached
        from huggingface_hub import HfApi
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

        try:
            api = HfApi(endpoint=self.endpoint, token=self.token or False)
            return sorted(api.list_repo_files(repo, revision=revision))
        except GatedRepoError:
            raise ConfigError(f"{repo} is gated: accept its terms on the hub and pass --hf-token (or HF_TOKEN)") from None
        except RepositoryNotFoundError:
            raise ConfigError(f"{repo}: no such repository on {self.endpoint} (or it is private: pass --hf-token)") from None
        except RevisionNotFoundError:
            raise ConfigError(f"{repo}: no revision {revision!r}") from None
        except Exception as e:  # noqa: BLE001 - the network: fall back to the cache
            if cached:
                log.warning("%s: cannot list the repository (%s); using the cached files", repo, _reason(e))
                return cached
            raise ConfigError(f"{repo}: cannot reach {self.endpoint}: {_reason(e)}") from None

    # -- files ----------------------------------------------------------------------------------
    def fetch_file(self, repo: str, filename: str, revision: str = "main") -> Path:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.errors import EntryNotFoundError

        dest = self.root / repo / filename
        done = _read_json(_sidecar(dest))
        if self.offline:
            if dest.is_file() and done:
                return dest
            raise ConfigError(f"{repo}/{filename}: not in the cache (--offline)")
        url = hf_hub_url(repo, filename, revision=revision, endpoint=self.endpoint)
        try:
            meta = get_hf_file_metadata(url, token=self.token or False, endpoint=self.endpoint)
        except EntryNotFoundError:
            raise ConfigError(f"{repo} has no file {filename!r}") from None
        except Exception as e:  # noqa: BLE001
            if dest.is_file() and done:
                log.warning("%s/%s: cannot reach the hub (%s); using the cached copy", repo, filename, _reason(e))
                return dest
            raise ConfigError(f"{repo}/{filename}: cannot reach {self.endpoint}: {_reason(e)}") from None
        etag = meta.etag or ""
        if not etag:
            log.warning("%s/%s: the hub gave no checksum; the download is checked by its size only", repo, filename)
        if dest.is_file() and done.get("etag") == etag:
            return dest
        self._download(meta.location, dest, etag, meta.size, f"{repo}/{filename}")
        return dest

    def fetch_url(self, url: str) -> Path:
        """-mu URL: a plain download (checked against its size only), cached by URL."""
        name = Path(url.split("?", 1)[0]).name or "model.gguf"
        dest = self.root / "urls" / hashlib.sha256(url.encode()).hexdigest()[:16] / name
        if dest.is_file() and _read_json(_sidecar(dest)):
            return dest
        if self.offline:
            raise ConfigError(f"{url}: not in the cache (--offline)")
        self._download(url, dest, "", None, name)
        return dest

    def _download(self, url: str, dest: Path, etag: str, size: int | None, label: str) -> None:
        from huggingface_hub.utils import build_hf_headers

        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        part_meta = _sidecar(part)
        if part.exists() and _read_json(part_meta).get("etag") != etag:
            part.unlink()  # a partial download of another version
        part_meta.write_text(json.dumps({"etag": etag, "url": url}))
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have > size:
            part.unlink()
            have = 0
        if have:
            log.info("%s: resuming at %d of %s bytes", label, have, size if size is not None else "?")
        else:
            log.info("%s: downloading %s bytes", label, size if size is not None else "?")
        headers = build_hf_headers(token=self.token or False) if url.startswith(self.endpoint) else {}
        try:
            _get(url, part, headers, size, Path(label).name, self.progress)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - what is written stays, for the next try to resume
            raise ConfigError(f"{label}: download failed: {_reason(e)} (run again to resume)") from None
        problem = _verify(part, etag, size)
        if problem:
            part.unlink()
            part_meta.unlink(missing_ok=True)
            raise ConfigError(f"{label}: refused, {problem}; the download was deleted")
        os.replace(part, dest)
        part_meta.unlink(missing_ok=True)
        _sidecar(dest).write_text(json.dumps({"etag": etag, "size": dest.stat().st_size}))


def fetch_for(settings: Any) -> Any:
    """Settings with -hf / -mu resolved to local files (downloaded first if need be)."""
    if not settings.hf_repo and not settings.model_url:
        return settings
    from .models import default_models_dir

    hub = Hub(default_models_dir(settings.models_cache), settings.hf_token, offline=settings.offline)
    if settings.model_url:
        return settings.model_copy(update={"model": hub.fetch_url(settings.model_url), "model_url": None})
    repo, quant = parse_repo(settings.hf_repo)
    got = hub.fetch_repo(repo, quant, settings.hf_file, projector=settings.mmproj is None and not settings.no_mmproj)
    update: dict[str, Any] = {"model": got.model, "hf_repo": None, "hf_file": None}
    if got.mmproj is not None:
        update["mmproj"] = got.mmproj
    return settings.model_copy(update=update)


CHUNK = 1 << 20
RETRIES = 5


def _get(url: str, part: Path, headers: dict[str, str], size: int | None, name: str, progress: bool) -> None:
    """Append the bytes of `url` to `part` from where it ends, with Range; a dropped connection
    is resumed (RETRIES times without progress); each MiB is on disk once received."""
    import time

    import httpx2
    from huggingface_hub.utils import hf_raise_for_status, http_stream_backoff

    have = part.stat().st_size if part.exists() else 0
    bar = _bar(progress)(total=size, initial=have, unit="B", unit_scale=True, desc=name)
    failures = 0
    try:
        with part.open("ab") as f:
            while size is None or have < size:
                h = dict(headers)
                if have:
                    h["Range"] = f"bytes={have}-"
                try:
                    with http_stream_backoff("GET", url, headers=h, retry_on_exceptions=(),
                                             retry_on_status_codes=(408, 429)) as r:
                        hf_raise_for_status(r)
                        if have and r.status_code == 200:  # the server ignored Range: start over
                            f.seek(0)
                            f.truncate()
                            bar.update(-have)
                            have = 0
                        for chunk in r.iter_bytes(CHUNK):
                            f.write(chunk)
                            f.flush()
                            have += len(chunk)
                            bar.update(len(chunk))
                            failures = 0
                    if size is None:
                        return
                    if have < size:
                        raise httpx2.RemoteProtocolError("the response ended early")
                except (httpx2.TransportError, httpx2.RemoteProtocolError) as e:
                    failures += 1
                    if failures > RETRIES:
                        raise
                    log.warning("%s: %s; resuming at %d bytes", name, _reason(e), have)
                    time.sleep(min(0.5 * 2 ** failures, 8))
    finally:
        bar.close()


def _verify(path: Path, etag: str, size: int | None) -> str | None:
    """Why the file is not what the hub said (None when it is)."""
    n = path.stat().st_size
    if size is not None and n != size:
        return f"the file has {n} bytes where the hub said {size}"
    tag = etag.strip('"').removeprefix("W/").strip('"').lower()
    if re.fullmatch(r"[0-9a-f]{64}", tag):
        h = hashlib.sha256()
    elif re.fullmatch(r"[0-9a-f]{40}", tag):
        h = hashlib.sha1(f"blob {n}\0".encode(), usedforsecurity=False)  # git's blob hash
    else:
        return None  # no checksum to check (a plain URL)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != tag:
        return f"its checksum {h.hexdigest()[:16]}… does not match the hub's {tag[:16]}…"
    return None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _reason(e: BaseException) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def _bar(show: bool) -> Any:
    from huggingface_hub.utils import tqdm

    class Bar(tqdm):
        def __init__(self, *a: Any, **kw: Any) -> None:
            kw["disable"] = not show
            super().__init__(*a, **kw)

    return Bar
