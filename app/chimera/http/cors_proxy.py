"""`/cors-proxy?url=...` (with `--ui-mcp-proxy`): llama-server's proxy that lets a web UI in the
browser reach MCP servers and other HTTP services that do not answer CORS preflights.

The target must be http(s) without credentials in the URL. Only the request headers the UI
names explicitly travel, as `X-Llama-Server-Proxy-Header-<name>: value`; the client's own
Authorization, API key and cookies for this server never do. The answer streams back as it
arrives (MCP's event streams), with its status and content headers. Off by default: with it on,
anyone who may call this server may make it fetch any URL it can reach.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
from quart import Blueprint, Response, request

from ..errors import BadGateway, BadRequest, Forbidden
from .common import services

blueprint = Blueprint("cors_proxy", __name__)

HEADER_PREFIX = "x-llama-server-proxy-header-"
PASSED_BACK = ("content-type", "content-encoding", "cache-control", "mcp-session-id", "mcp-protocol-version",
               "location", "www-authenticate", "retry-after")
TIMEOUT = httpx.Timeout(600.0, connect=30.0)  # as llama-server: reads and writes may take 10 minutes


def _target(url: str | None) -> str:
    if not url:
        raise BadRequest("give the target as ?url=http(s)://...", param="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BadRequest(f"unsupported URL scheme in target URL: {parts.scheme or '(none)'}", param="url")
    if not parts.hostname:
        raise BadRequest("invalid target URL: missing host", param="url")
    if parts.password is not None or parts.username is not None:
        raise BadRequest("authentication in target URL is not supported", param="url")
    return url


def _forwarded_headers() -> dict[str, str]:
    out = {}
    for name, value in request.headers.items():
        low = name.lower()
        if low.startswith(HEADER_PREFIX) and len(low) > len(HEADER_PREFIX):
            out[name[len(HEADER_PREFIX):]] = value
    return out


@blueprint.route("/cors-proxy", methods=["GET", "POST"])
async def cors_proxy() -> Response:
    s = services()
    if not s.settings.ui_mcp_proxy or s.settings.no_ui_mcp_proxy:
        raise Forbidden("the CORS proxy is off (start the server with --ui-mcp-proxy, on a trusted network only)")
    url = _target(request.args.get("url"))
    body = await request.get_data() if request.method == "POST" else None
    client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, trust_env=False)
    try:
        upstream = await client.send(
            client.build_request(request.method, url, headers=_forwarded_headers(), content=body), stream=True)
    except httpx.HTTPError as e:
        await client.aclose()
        raise BadGateway(f"the proxied request to {url} failed: {e}", code="proxy_error") from None

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()
            await client.aclose()

    headers = {k: v for k, v in upstream.headers.items() if k.lower() in PASSED_BACK}
    if upstream.status_code in (204, 304) or request.method == "HEAD":
        await upstream.aclose()
        await client.aclose()
        return Response(b"", status=upstream.status_code, headers=headers)
    return Response(relay(), status=upstream.status_code, headers=headers)
