"""The web UI at `/`: static files from the package (`chimera/webui/`) or from `--webui-path`,
with ETags, gzip and a Content-Security-Policy that allows only the server's own origin.

`GET /` answers the UI to a browser (a request that accepts text/html); anything else, and every
request with `--no-webui`, gets Ollama's liveness answer, which Ollama clients probe. The UI's
files are public (the page asks for the API key itself); the data it loads is not.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from quart import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RoutingException

from ..config import Settings
from ..errors import MethodNotAllowed, NotFound

blueprint = Blueprint("webui", __name__)

BUILT_IN = Path(__file__).resolve().parent.parent / "webui"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")
TYPES = {".js": "application/javascript", ".mjs": "application/javascript", ".css": "text/css",
         ".html": "text/html", ".svg": "image/svg+xml", ".json": "application/json", ".png": "image/png",
         ".ico": "image/x-icon", ".webmanifest": "application/manifest+json", ".txt": "text/plain"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    etag: str
    content_type: str


def _asset(path: Path) -> Asset:
    body = path.read_bytes()
    kind = TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
        kind += "; charset=utf-8"
    packed = gzip.compress(body, 9, mtime=0) if kind.startswith(COMPRESSIBLE) and len(body) > 512 else None
    return Asset(body, packed, '"' + hashlib.sha256(body).hexdigest()[:20] + '"', kind)


class Site:
    """The files of one folder. The built-in UI is read once, at start; a user's folder
    (`--webui-path`) is read on each request, so edits show on reload."""

    def __init__(self, root: Path, *, cached: bool) -> None:
        self.root = root.resolve()
        self.cached = cached
        self._assets: dict[str, Asset] = {}
        if cached:
            for p in self.root.rglob("*"):
                if p.is_file():
                    self._assets[p.relative_to(self.root).as_posix()] = _asset(p)

    def get(self, name: str) -> Asset | None:
        if self.cached:
            return self._assets.get(name)
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None  # nothing outside the folder, whatever the name says
        return _asset(path)

    def size(self) -> tuple[int, int]:
        """(bytes, gzipped bytes) of every file: what the UI costs to load."""
        return (sum(len(a.body) for a in self._assets.values()),
                sum(len(a.gzipped or a.body) for a in self._assets.values()))


def site_for(settings: Settings) -> Site | None:
    if settings.no_webui:
        return None
    if settings.webui_path is not None:
        return Site(settings.webui_path, cached=False)
    return Site(BUILT_IN, cached=True)


def _site() -> Site | None:
    site: Site | None = current_app.extensions.get("webui")
    return site


def _serve(asset: Asset) -> Response:
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding",
               "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
    if asset.etag in (t.strip() for t in request.headers.get("If-None-Match", "").split(",")):
        return Response(b"", status=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, content_type=asset.content_type, headers=headers)


@blueprint.route("/", methods=["GET", "HEAD"])
async def index() -> Response:
    site = _site()
    page = site.get("index.html") if site is not None else None
    if page is None or "text/html" not in request.headers.get("Accept", ""):
        return Response("Ollama is running", content_type="text/plain; charset=utf-8")  # Ollama clients' probe
    return _serve(page)


@blueprint.route("/<path:name>", methods=["GET", "HEAD"])
async def asset(name: str) -> Response:
    """A file of the UI; any other path is the JSON 404 (or 405) every unknown route gets."""
    site = _site()
    found = site.get(name) if site is not None else None
    if found is not None:
        return _serve(found)
    adapter = current_app.url_map.bind("localhost")
    for method in ("POST", "DELETE", "PUT", "PATCH"):
        try:
            adapter.match("/" + name, method=method)
        except (HTTPException, RoutingException):
            continue
        raise MethodNotAllowed(f"method {request.method} is not allowed on /{name}")
    raise NotFound(f"no route for {request.method} /{name}")
