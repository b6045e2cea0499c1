"""create_app(services): the Quart-Trio app, its guards (host, auth, CORS, size) and error mapping."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import time

from quart import Response, g, request
from quart_cors import cors
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..errors import (
    AuthenticationFailed,
    BadRequest,
    ChimeraError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from ..services import Services
from .common import error_response
from .openapi import describe

log = logging.getLogger("chimera.http")

PUBLIC_PATHS = frozenset({"/health", "/v1/health", "/"})
PUBLIC_ENDPOINTS = frozenset({"webui.index", "webui.asset", "predict.health"})  # the UI's files (it asks for the key); Vertex AI's probe
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _host_allowed(host_header: str, services: Services) -> bool:
    allowed = services.settings.allow_host
    if "*" in allowed:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6]:port
        name = host[1 : host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if not name:
        return False
    if name in LOCAL_NAMES or name in {h.lower() for h in services.settings.hosts()} or name in {a.lower() for a in allowed}:
        return True
    try:  # DNS rebinding needs a name; an address literal cannot be rebound
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name.endswith(".localhost")


def _key_matches(given: str, keys: tuple[str, ...]) -> bool:
    ok = False
    for key in keys:  # compare with every key, in constant time each
        ok |= hmac.compare_digest(given.encode(), key.encode())
    return ok


def _presented_key() -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("X-Api-Key")


def _http_exception_to_error(e: HTTPException) -> ChimeraError:
    code = e.code or 500
    if code == 404:
        return NotFound(f"no route for {request.method} {request.path}")
    if code == 405:
        return MethodNotAllowed(f"method {request.method} is not allowed on {request.path}")
    if code == 413:
        return PayloadTooLarge("request body is larger than the server's --max-body-size")
    if code == 415:
        return UnsupportedMediaType(e.description or "unsupported media type")
    if code == 400:
        return BadRequest(e.description or "bad request")
    err = ChimeraError(e.description or e.name)
    err.status = code
    return err


LOOPBACK_ORIGIN = re.compile(r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?$")


TOOL_HEADERS = ("X-Tool-Cwd", "X-Tool-Runtime", "X-Resp-Type")  # POST /tools reads them


def cors_origins(given: tuple[str, ...]) -> str | list[str | re.Pattern[str]]:
    """--cors-origins as quart-cors takes them: `*` for any origin; `localhost` for every
    loopback origin on any port (localhost, 127.0.0.1, [::1]), as llama-server reads it."""
    if "*" in given:
        return "*"
    return [LOOPBACK_ORIGIN if o == "localhost" else o for o in given]


def create_app(services: Services) -> QuartTrio:
    app = QuartTrio("chimera", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = services.settings.max_body_size
    app.config["BODY_TIMEOUT"] = services.settings.timeout  # llama-server's --timeout
    app.config["RESPONSE_TIMEOUT"] = None
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["chimera"] = services

    @app.before_request
    async def guards() -> Response | None:
        g.started = time.perf_counter()
        services.metrics.in_flight.inc()
        g.counted = True
        if not _host_allowed(request.headers.get("Host", ""), services):
            raise Forbidden("Host header not allowed; start the server with --allow-host to accept it")
        if request.content_length is not None and request.content_length > services.settings.max_body_size:
            raise PayloadTooLarge("request body is larger than the server's --max-body-size")
        if request.method == "OPTIONS" or request.path in PUBLIC_PATHS or not services.api_keys:
            return None
        if request.url_rule is not None and request.url_rule.endpoint in PUBLIC_ENDPOINTS:
            return None
        given = _presented_key()
        if given is None:
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer KEY' or 'X-Api-Key: KEY'")
        if not _key_matches(given, services.api_keys):
            raise AuthenticationFailed("invalid API key")
        return None

    @app.after_request
    async def record(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        services.metrics.requests.labels(rule, request.method, str(response.status_code)).inc()
        if "started" in g:
            services.metrics.latency.labels(rule).observe(time.perf_counter() - g.started)
        return response

    @app.teardown_request
    async def done(exc: BaseException | None) -> None:
        if g.get("counted"):
            services.metrics.in_flight.dec()
            g.counted = False

    @app.errorhandler(ChimeraError)
    async def on_chimera_error(e: ChimeraError) -> Response:
        return error_response(e)

    @app.errorhandler(HTTPException)
    async def on_http_exception(e: HTTPException) -> Response:
        return error_response(_http_exception_to_error(e))

    @app.errorhandler(Exception)
    async def on_unexpected(e: Exception) -> Response:
        if isinstance(e, RecursionError):  # a request body whose structure is nested too deeply
            return error_response(BadRequest("the request is nested too deeply to process"))
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(ChimeraError(f"internal server error ({type(e).__name__}); see the server log"))

    from .anthropic import blueprint as anthropic_bp
    from .audio import blueprint as audio_bp
    from .chat import blueprint as chat_bp
    from .chats import blueprint as chats_bp
    from .cors_proxy import blueprint as cors_proxy_bp
    from .images import blueprint as images_bp
    from .infill import blueprint as infill_bp
    from .llm import blueprint as llm_bp
    from .meta import blueprint as meta_bp
    from .models import blueprint as models_bp
    from .ollama import blueprint as ollama_bp
    from .rerank import blueprint as rerank_bp
    from .responses import blueprint as responses_bp
    from .streams import blueprint as streams_bp
    from .tools import blueprint as tools_bp
    from .vector_stores import blueprint as vector_stores_bp
    from .webui import blueprint as webui_bp
    from .webui import site_for

    app.register_blueprint(meta_bp)
    app.register_blueprint(models_bp)
    app.register_blueprint(chat_bp)
    app.register_blueprint(llm_bp)
    app.register_blueprint(anthropic_bp)
    app.register_blueprint(responses_bp)
    app.register_blueprint(infill_bp)
    app.register_blueprint(rerank_bp)
    app.register_blueprint(chats_bp)
    app.register_blueprint(audio_bp)
    app.register_blueprint(vector_stores_bp)
    app.register_blueprint(images_bp)
    app.register_blueprint(ollama_bp)
    app.register_blueprint(cors_proxy_bp)
    app.register_blueprint(streams_bp)
    app.register_blueprint(tools_bp)
    app.register_blueprint(webui_bp)  # GET / and the UI's files; every other route comes first
    if services.settings.predict_route:  # Vertex AI (AIP_MODE=PREDICTION)
        from .meta import health
        from .predict import predict

        app.add_url_rule(services.settings.predict_route, "predict.predict", predict, methods=["POST"])
        if services.settings.predict_health_route:
            app.add_url_rule(services.settings.predict_health_route, "predict.health", health, methods=["GET"])
    app.extensions["webui"] = site_for(services.settings)
    describe(app, api_keys=bool(services.api_keys))
    # quart-schema installed its JSON provider: keep the order of keys as written
    app.json.sort_keys = False  # type: ignore[attr-defined]

    # with tools for agents on, the default is loopback origins only (as llama-server): a web page
    # elsewhere must not reach tools that act on this machine
    origins = services.settings.cors_origins or (("localhost",) if services.settings.tools_enabled() else ())
    if origins:
        app = cors(
            app,
            allow_origin=cors_origins(origins),
            allow_headers=["Authorization", "Content-Type", "X-Api-Key", "X-Chimera-Chat-Id", *TOOL_HEADERS],
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            expose_headers=["X-Chimera-Chat-Id"],
            max_age=600,
        )
    return app
