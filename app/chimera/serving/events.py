"""What the serving core reports, in no API's shape: the events of a chat generation, the
usage it cost, and the whole result of one choice. Each dialect encodes these its own way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "tool_calls", "cancelled"]


@dataclass(frozen=True)
class Usage:
    """Tokens of one request: the prompt (of which `cached` came from a slot's KV cache and
    `media` are projector tokens) and the completion, over every choice."""

    prompt: int
    completion: int
    cached: int = 0
    media: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    @property
    def computed(self) -> int:
        """Prompt tokens that were evaluated, not served from the cache."""
        return self.prompt - self.cached


@dataclass(frozen=True)
class TokenLogprob:
    token: int
    logprob: float
    top: list[tuple[int, float]]  # the most likely tokens at this place, best first


@dataclass(frozen=True)
class ToolCall:
    id: str  # call_…
    name: str
    arguments: str  # JSON text


@dataclass(frozen=True)
class Reasoning:
    index: int
    text: str
    timings: dict[str, Any] | None = None  # the timings so far, when the request asked for them per token


@dataclass(frozen=True)
class Content:
    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None
    timings: dict[str, Any] | None = None  # the timings so far, when the request asked for them per token


@dataclass(frozen=True)
class Progress:
    """How far the prompt has been read (llama-server's return_progress, streamed): its tokens
    (`total`), those from the cache, those in the KV cache now, and the time since it started."""

    index: int
    total: int
    cache: int
    processed: int
    time_ms: float
    timings: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        return {"total": self.total, "cache": self.cache, "processed": self.processed, "time_ms": self.time_ms}


@dataclass(frozen=True)
class Calls:
    """The tool calls of a choice, once its output is complete (before its Done)."""

    index: int
    calls: list[ToolCall]


@dataclass(frozen=True)
class Done:
    index: int
    reason: FinishReason
    stop_word: str | None  # the stop string that ended the choice, if one did
    completion_tokens: int
    cached_tokens: int
    timings: dict[str, Any]
    truncated: bool = False  # the context ran out (ended at its end, or shifted)


Event = Reasoning | Content | Calls | Done | Progress


@dataclass
class ChoiceResult:
    """One choice, whole."""

    index: int
    content: str = ""
    reasoning: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    done: Done | None = None

    @property
    def reason(self) -> FinishReason:
        return self.done.reason if self.done is not None else "stop"
