"""A local stand-in for the Hugging Face hub's file endpoints, for download tests without network.

It answers what huggingface_hub asks: the repository tree (`/api/models/{repo}/tree/{rev}`), a
file's metadata (`HEAD /{repo}/resolve/{rev}/{path}`: X-Repo-Commit, X-Linked-Etag, X-Linked-Size,
and for LFS files a redirect to a content URL as the hub does) and its bytes with `Range`. Faults on
demand: a connection dropped after some bytes, errors after that, bytes that do not match the
checksum, a gated repository that wants a token. Every request is logged.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Blob:
    data: bytes
    lfs: bool = True
    drop_after: int | None = None  # the next GET of the bytes closes the connection after this many
    fail_after_drop: int = 0  # then this many GETs answer 503
    corrupt: bool = False  # serve other bytes than the checksum describes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_sha1(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass
class Hub:
    repos: dict[str, dict[str, Blob]] = field(default_factory=dict)
    gated: dict[str, str] = field(default_factory=dict)  # repo -> the token it wants
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Range header)
    urls: dict[str, Blob] = field(default_factory=dict)  # plain download URLs (-mu)
    server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def gets(self, name: str) -> list[str]:
        """The Range headers of the GETs of a file's bytes ('' for a whole-file GET)."""
        return [r for m, p, r in self.log if m == "GET" and p.endswith("/" + name)]

    def start(self) -> Hub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                self.handle_any(head=True)

            def do_GET(self) -> None:  # noqa: N802
                self.handle_any(head=False)

            def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def handle_any(self, head: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                hub.log.append(("HEAD" if head else "GET", path, self.headers.get("Range", "")))
                parts = path.strip("/").split("/")
                if path.startswith("/api/models/") and "/tree/" in path:
                    repo = "/".join(parts[2:4])
                    if not self.allowed(repo):
                        return
                    files = hub.repos.get(repo)
                    if files is None:
                        return self.reply(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
                    tree = [{"type": "file", "oid": b.git_sha1, "size": len(b.data), "path": name,
                             **({"lfs": {"oid": b.sha256, "size": len(b.data), "pointerSize": 134}} if b.lfs else {})}
                            for name, b in sorted(files.items())]
                    return self.reply(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, head)
                if path.startswith("/cdn/"):  # an LFS file's bytes, where the hub redirects to
                    repo, name = "/".join(parts[1:3]), "/".join(parts[3:])
                    return self.send_bytes(hub.repos[repo][name], head)
                if path.startswith("/urls/"):
                    blob = hub.urls.get(path)
                    return self.send_bytes(blob, head) if blob else self.reply(404, head=head)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, name = "/".join(parts[:2]), "/".join(parts[4:])
                    if not self.allowed(repo):
                        return
                    files = hub.repos.get(repo)
                    assert hub.server is not None
                    if files is None:
                        return self.reply(404, head=head, headers={"X-Error-Code": "RepoNotFound"})
                    blob = files.get(name)
                    if blob is None:
                        return self.reply(404, head=head, headers={"X-Error-Code": "EntryNotFound"})
                    meta = {"X-Repo-Commit": COMMIT}
                    if blob.lfs:
                        meta |= {"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data)),
                                 "ETag": f'"{blob.git_sha1}"',
                                 # another host name, as the hub's CDN: huggingface_hub does not follow it for metadata
                                 "Location": f"http://localhost:{hub.server.server_address[1]}/cdn/{repo}/{name}"}
                        return self.reply(302, head=head, headers=meta)
                    meta["ETag"] = f'"{blob.git_sha1}"'
                    return self.send_bytes(blob, head, meta)
                self.reply(404, head=head)

            def allowed(self, repo: str) -> bool:
                want = hub.gated.get(repo)
                if want is not None and self.headers.get("Authorization") != f"Bearer {want}":
                    self.reply(401, b'{"error": "Access to this repository is restricted"}',
                               {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to this repository is restricted"})
                    return False
                return True

            def send_bytes(self, blob: Blob, head: bool, extra: dict[str, str] | None = None) -> None:
                data = blob.data
                if blob.corrupt:
                    data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
                start = 0
                rng = self.headers.get("Range", "")
                if rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0] or 0)
                if not head and blob.fail_after_drop and blob.drop_after is None:
                    blob.fail_after_drop -= 1
                    return self.reply(503, b"busy")
                body = data[start:]
                self.send_response(206 if start else 200)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if head:
                    return
                if blob.drop_after is not None:
                    cut, blob.drop_after = blob.drop_after, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
