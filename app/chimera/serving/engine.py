"""What the serving core needs from an engine: the narrow interface routes and the core use,
so both can run against a fake engine in tests. `llm.engine.Engine` is the real one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from ..llm.generation import Choice, GenerationDefaults, GenerationSpec
from ..llm.sequence import Delta, Finished, Sequence


class ChatGeneration(Protocol):
    """One request's sequences on the engine (llm.generation.Generation)."""

    prompts: list[list[int]]
    seqs: list[Sequence]
    n: int
    media_tokens: int

    def events(self) -> AsyncIterator[Delta | Finished]: ...
    async def collect(self) -> list[Choice]: ...
    def cancel(self) -> None: ...


class ChatEngine(Protocol):
    vision: bool  # the projector reads images
    audio: bool  # the projector reads audio
    defaults: GenerationDefaults  # the server's defaults for what a request leaves unset

    @property
    def projector(self) -> bool: ...
    @property
    def template_source(self) -> str: ...
    @property
    def n_vocab(self) -> int: ...
    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool, extra: dict[str, Any]) -> str: ...
    def tokenize_prompt(self, text: str, bos: bool = True) -> list[int]: ...
    def token_bytes(self, token: int) -> bytes: ...
    def text_tokens(self, text: str) -> list[int]: ...
    def generate(self, prompts: list[list[int]], spec: GenerationSpec, param: str,
                 render_special: bool = False) -> ChatGeneration: ...
    async def generate_with_media(self, text: str, media: list[bytes], spec: GenerationSpec,
                                  render_special: bool = False) -> ChatGeneration: ...
