"""One exception tree; every failure the API reports is one of these.

    ChimeraError                      500 api_error            (anything unexpected)
    ├── BadRequest                    400 invalid_request_error (param names the field)
    │   └── ContextLengthExceeded     400 code=context_length_exceeded
    │       └── ContextTooSmall           type=exceed_context_size_error, n_prompt_tokens, n_ctx
    ├── AuthenticationFailed          401 authentication_error
    ├── Forbidden                     403 permission_error
    ├── NotFound                      404 not_found_error
    │   └── ModelNotFound             404 code=model_not_found
    ├── MethodNotAllowed              405 invalid_request_error
    ├── Conflict                      409 invalid_request_error
    ├── PayloadTooLarge               413 invalid_request_error
    ├── UnsupportedMediaType          415 invalid_request_error
    ├── Unsupported                   501 not_implemented_error
    │   └── NotEnabled                501 (flag names the switch that enables it)
    ├── BadGateway                    502 api_error             (a proxied request failed)
    └── Unavailable                   503 unavailable_error     (retry_after seconds)
        ├── Loading
        ├── Overloaded
        └── ModelFailed               code=model_failed
    (and InsufficientMemory          507, a model that cannot fit)

Each class knows its HTTP status and its error type in the OpenAI and the Anthropic shapes, so
the HTTP layer renders any of them without a lookup table.
"""

from __future__ import annotations

from typing import Any


class ChimeraError(Exception):
    status = 500
    openai_type = "api_error"
    anthropic_type = "api_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def headers(self) -> dict[str, str]:
        return {}

    def to_openai(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.openai_type,
                "param": self.param,
                "code": self.code if self.code is not None else self.status,
            }
        }

    def to_anthropic(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.anthropic_type, "message": self.message}}


class BadRequest(ChimeraError):
    status = 400
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class ContextLengthExceeded(BadRequest):
    def __init__(self, message: str, *, param: str | None = "messages") -> None:
        super().__init__(message, param=param, code="context_length_exceeded")


class ContextTooSmall(ContextLengthExceeded):
    """A prompt leaves no room in a slot (the slots' size is a server setting). Typed as
    llama-server types it (`exceed_context_size_error`, with `n_prompt_tokens` and `n_ctx`), so
    clients written for it work; OpenAI's `code` stays."""

    openai_type = "exceed_context_size_error"

    def __init__(self, n_prompt: int, n_ctx_slot: int, *, param: str | None = "messages", split: bool = True) -> None:
        super().__init__(f"the prompt ({n_prompt} tokens) exceeds the available context size: "
                         f"{'a slot holds' if split else 'the context holds'} {n_ctx_slot} tokens", param=param)
        self.n_ctx_slot = n_ctx_slot
        self.n_prompt = n_prompt
        self.split = split  # the cache is split over the slots (fewer slots would give each more)

    def to_openai(self) -> dict[str, Any]:
        body = super().to_openai()
        body["error"] |= {"n_prompt_tokens": self.n_prompt, "n_ctx": self.n_ctx_slot}
        return body


class UnknownChat(BadRequest):
    """A saved chat id that is malformed or names no chat."""

    def __init__(self, chat_id: str, malformed: bool) -> None:
        super().__init__(f"chat id {chat_id!r} is " + ("malformed (expected chat_ and 32 hex digits)" if malformed
                                                      else "not a known chat"))
        self.chat_id = chat_id


class AuthenticationFailed(ChimeraError):
    status = 401
    openai_type = "authentication_error"
    anthropic_type = "authentication_error"


class Forbidden(ChimeraError):
    status = 403
    openai_type = "permission_error"
    anthropic_type = "permission_error"


class NotFound(ChimeraError):
    status = 404
    openai_type = "not_found_error"
    anthropic_type = "not_found_error"


class MethodNotAllowed(ChimeraError):
    status = 405
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class UnknownAdapter(BadRequest):
    """A request names a LoRA adapter the server did not load."""

    def __init__(self, adapter: int, loaded: int, position: int) -> None:
        what = f"ids 0..{loaded - 1}" if loaded else "none is loaded (start the server with --lora)"
        super().__init__(f"lora[{position}]: no LoRA adapter with id {adapter}: {what}", param=f"lora.{position}.id")


class ModelNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no model {name!r} here (GET /v1/models lists them)", param="model", code="model_not_found")


class ModelNotLoaded(BadRequest):
    """A request names a model that is not loaded, on a server that does not load on request."""

    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} is not loaded (this server does not load models on request: "
                         "POST /models/load first)", param="model", code="model_not_loaded")


class Conflict(ChimeraError):
    status = 409
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class PayloadTooLarge(ChimeraError):
    status = 413
    openai_type = "invalid_request_error"
    anthropic_type = "request_too_large"


class UnsupportedMediaType(ChimeraError):
    status = 415
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class Unsupported(ChimeraError):
    """Something this server (or its model) cannot do."""

    status = 501
    openai_type = "not_implemented_error"
    anthropic_type = "api_error"


class NotEnabled(Unsupported):
    """A feature this server was not started with. `feature` names it (a key of
    http/advice.py's FLAGS, which says the flag that turns it on)."""

    def __init__(self, message: str, *, feature: str) -> None:
        super().__init__(message, code="not_enabled")
        self.feature = feature


class BadGateway(ChimeraError):
    """A request this server made on the client's behalf (/cors-proxy) got no answer."""

    status = 502


class Unavailable(ChimeraError):
    status = 503
    openai_type = "unavailable_error"
    anthropic_type = "overloaded_error"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Loading(Unavailable):
    def __init__(self) -> None:
        super().__init__("the model is still loading", retry_after=1, code="loading")


class Overloaded(Unavailable):
    def __init__(self, message: str = "the server is overloaded: the request queue is full") -> None:
        super().__init__(message, retry_after=1, code="overloaded")


class ModelFailed(Unavailable):
    """A model that failed to load; its requests say why until it is loaded again."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"model {model} failed to load: {reason}", retry_after=60, code="model_failed")


class DeviceLost(Unavailable):
    """A model whose layers were on a device that is gone (an RPC server that died): its
    requests end with this until the server is restarted."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"model {model} lost a device: {reason}; restart the server once the RPC server is back",
                         retry_after=60, code="device_lost")


class InsufficientMemory(ChimeraError):
    """Loading a model would need more memory than is free, even after unloading idle ones."""

    status = 507
    openai_type = "insufficient_storage"
    anthropic_type = "overloaded_error"

    def __init__(self, model: str, need: int, free: int) -> None:
        super().__init__(f"model {model} needs about {need / 2**30:.1f} GiB to load and {free / 2**30:.1f} GiB is free",
                         code="insufficient_memory")


class ConfigError(Exception):
    """A bad flag, environment variable or config file value: the CLI exits with code 2."""


def leaf_error(exc: BaseException, cls: type[BaseException]) -> BaseException | None:
    """The first `cls` inside an exception group from a trio nursery (or `exc` itself), if any."""
    if isinstance(exc, cls):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = leaf_error(inner, cls)
            if found is not None:
                return found
    return None
