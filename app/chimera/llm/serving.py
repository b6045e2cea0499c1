"""Serving logic between the routes and the engine: build sequences, run them, shape results.

Returns plain dicts or raises ChimeraError; knows nothing of HTTP.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import trio

from ..errors import ChimeraError
from ..protocol.openai import GenerationFields
from .engine import Engine
from .sequence import Delta, Finished, Sequence


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


@dataclass
class Choice:
    index: int
    text: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    finished: Finished | None = None


class Generation:
    """The sequences of one request (prompts × n) sharing one event channel."""

    def __init__(self, engine: Engine, prompts: list[list[int]], req: GenerationFields, n_probs: int, param: str,
                 render_special: bool = False, media: Any = None) -> None:
        self.engine = engine
        self.prompts = prompts
        self.n = req.n
        limit = req.limit()
        self.media = media  # a MediaPrompt: its placeholders are not vocabulary ids
        self.media_tokens = sum(m.n_tokens for m in media.media.values()) if media is not None else 0
        for p in prompts:
            if media is None:
                engine.model.check_tokens(p, param)
            engine.check_fits(len(p), limit, param)
        lora_key = engine.lora_key(getattr(req, "lora", None))
        send, self.receive = trio.open_memory_channel[Delta | Finished](math.inf)
        self.seqs: list[Sequence] = []
        with send:
            for i, p in enumerate(prompts):
                for j in range(req.n):
                    self.seqs.append(Sequence(
                        prompt=p, params=req.sampling(engine.model.n_vocab), max_tokens=limit,
                        stops=req.stop_list(), n_probs=n_probs, cache_prompt=req.cache_prompt,
                        index=i * req.n + j, send=send.clone(), render_special=render_special, lora_key=lora_key,
                        media=media.media if media is not None else {},
                    ))
            engine.submit(self.seqs)
        self.id = ""
        self.created = int(time.time())

    def cancel(self) -> None:
        for s in self.seqs:
            s.cancelled = True
        self.receive.close()
        if self.media is not None:
            self.engine.free_later(self.media, self.seqs)
            self.media = None
        self.engine.wake()

    async def events(self) -> AsyncIterator[Delta | Finished]:
        async for ev in self.receive:
            if isinstance(ev, Finished) and ev.reason == "error":
                raise ev.error if isinstance(ev.error, ChimeraError) else ChimeraError(f"generation failed: {ev.error}")
            yield ev

    async def collect(self) -> list[Choice]:
        """Every choice, whole; the generation is released when this returns or raises."""
        choices = {s.index: Choice(s.index) for s in self.seqs}
        try:
            async for ev in self.events():
                c = choices[ev.index]
                if isinstance(ev, Delta):
                    c.text.append(ev.text)
                    if ev.logprobs:
                        c.logprobs.extend(ev.logprobs)
                else:
                    c.finished = ev
        finally:
            self.cancel()
        return [choices[i] for i in sorted(choices)]

    def usage(self, finished: list[Finished]) -> dict[str, Any]:
        prompt = sum(len(p) for p in self.prompts)
        completion = sum(f.usage["completion_tokens"] for f in finished)
        by_index = {f.index: f for f in finished}
        cached = sum(
            by_index[i * self.n].usage["prompt_tokens_details"]["cached_tokens"]
            for i in range(len(self.prompts)) if i * self.n in by_index
        )
        details: dict[str, Any] = {"cached_tokens": min(cached, prompt)}
        if self.media_tokens:
            details["image_tokens"] = self.media_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": details,
        }


def _piece_str(engine: Engine, tok: int) -> str:
    return engine.model.piece(tok).decode("utf-8", "replace")


def chat_logprobs(engine: Engine, entries: list[dict[str, Any]], top_n: int) -> dict[str, Any]:
    content = []
    for e in entries:
        content.append({
            "token": _piece_str(engine, e["id"]),
            "logprob": e["logprob"],
            "bytes": e["bytes"],
            "top_logprobs": [
                {"token": _piece_str(engine, t), "logprob": lp, "bytes": list(engine.model.piece(t))}
                for t, lp in e["top"][:top_n]
            ],
        })
    return {"content": content}


def completion_logprobs(engine: Engine, entries: list[dict[str, Any]], top_n: int, offset: int) -> dict[str, Any]:
    tokens, lps, tops, offsets = [], [], [], []
    for e in entries:
        s = _piece_str(engine, e["id"])
        tokens.append(s)
        lps.append(e["logprob"])
        tops.append({_piece_str(engine, t): lp for t, lp in e["top"][:top_n]})
        offsets.append(offset)
        offset += len(s)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}
