"""How a domain error reads to an HTTP client: the server flags that would change the outcome.

Layers below HTTP say what is missing (a feature, a slot too small, an unknown chat); only here
does that become the command-line flag or the header name a user can act on.
"""

from __future__ import annotations

from ..errors import ChimeraError, ContextTooSmall, NotEnabled, UnknownChat

FLAGS = {
    "embeddings": "--embeddings",
    "reranker": "--rerank-model PATH",
    "rerank": "--rerank-model PATH (or --reranking)",
    "speech-to-text": "--whisper-model PATH",
    "images": "--sd-model PATH",
    "vector-stores": "--rag-model PATH (or --embeddings)",
    "ollama-embeddings": "--embeddings (or --rag-model PATH)",
    "slot-files": "--slot-save-path DIR",
    "saved-chats": "--persist-chats",
    "props": "--props",
    "slots": "--slots, or without --no-slots",
    "tools": "--tools NAMES, or MCP servers with --mcp-servers-json / --mcp-servers-config",
}
CHAT_HEADER = "X-Chimera-Chat-Id"


def for_client(e: ChimeraError) -> ChimeraError:
    """`e` with what the client can do about it in its message (the same object, amended)."""
    if getattr(e, "_advised", False):
        return e
    if isinstance(e, NotEnabled):
        e.message = f"{e.message} (start the server with {FLAGS.get(e.feature, e.feature)})"
    elif isinstance(e, ContextTooSmall):
        e.message = f"{e.message} ({'raise -c or lower -np' if e.split else 'raise -c'})"
    elif isinstance(e, UnknownChat):
        e.message = f"{CHAT_HEADER}: {e.message}"
        e.param = CHAT_HEADER
    e._advised = True  # type: ignore[attr-defined]
    return e
