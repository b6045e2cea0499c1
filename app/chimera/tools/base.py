"""A tool as GET /tools lists it and POST /tools calls it.

A call is bound first (`Tool.bind`): its parameters are read (a missing or mistyped one is a 400)
and its runtime resolved (an unknown one is a 500), before any response starts; then the bound
call runs, once, to a JSON result (`{"plain_text_response": ...}`, other fields, or
`{"error": ...}` for a tool that ran and failed), or, for a tool that streams, to text chunks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest

Json = dict[str, Any]


@dataclass(frozen=True)
class Context:
    """What a call gets besides its parameters: from the request's headers, not from the model."""

    cwd: str = ""  # x-tool-cwd: relative paths resolve here, commands run here
    runtime: str = ""  # x-tool-runtime, else --tools-runtime: where the tool runs
    resp_type: str = ""  # x-resp-type: "base64" makes read_file return the bytes
    stop: Callable[[], bool] | None = None  # true once the server is shutting down


@dataclass
class Bound:
    """A call ready to run: `result()` once, or `chunks()` once for a tool that streams."""

    result: Callable[[], Awaitable[Json]]
    chunks: Callable[[], AsyncGenerator[str, None]] | None = None


class Tool(ABC):
    name: str
    display_name: str
    kind = "server"  # "server" for a built-in tool, "mcp" for an MCP server's
    write = False  # it changes something: a client should ask the user first
    streams = False
    uses_cwd = False

    @abstractmethod
    def definition(self) -> Json:
        """The OpenAI function definition a client hands to the model."""

    @abstractmethod
    def bind(self, params: Json, ctx: Context) -> Bound:
        """Read the parameters (BadRequest) and resolve the runtime (ChimeraError), run nothing."""

    def describe(self) -> Json:
        return {"display_name": self.display_name, "tool": self.name, "type": self.kind,
                "permissions": {"write": self.write}, "uses_cwd": self.uses_cwd, "definition": self.definition()}


def function(name: str, description: str, properties: dict[str, Json], required: tuple[str, ...] = ()) -> Json:
    params: Json = {"type": "object", "properties": properties}
    if required:
        params["required"] = list(required)
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


def clean(text: str) -> str:
    """Text that encodes as UTF-8: JSON may carry lone surrogates, which become U+FFFD."""
    try:
        text.encode()
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace")


class Params:
    """A call's parameters, read with their types checked: a problem is a 400 naming the field."""

    def __init__(self, data: Json) -> None:
        self.data = data

    def _bad(self, key: str, what: str) -> BadRequest:
        return BadRequest(f"'params.{key}' {what}", param=f"params.{key}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise self._bad(key, "is required")
        if not isinstance(value, str):
            raise self._bad(key, "must be a string")
        return value

    def integer(self, key: str, default: int) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            raise self._bad(key, "must be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise self._bad(key, "must be an integer")

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self._bad(key, "must be a boolean")

    def array(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            raise self._bad(key, "is required")
        if not isinstance(value, list):
            raise self._bad(key, "must be an array")
        return value
