"""ChatRun: a prepared chat turn running on the engine, as typed events (streamed) or whole
results, with reasoning split from the reply, tool calls parsed, the parallel-call policy
applied, usage counted, and the exchange saved before the client sees the end of it.

Cancellation handling: leaving `events()` early (the client went away) cancels the generation and
saves what was produced, marked incomplete; cancelling `collect()` cancels the generation. `close()`
ends the run's hold on its model (events() does at its end; a plain response's handler once it
has built the response).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import trio

from ..errors import BadRequest, ContextLengthExceeded
from ..llm.generation import GenerationSpec
from ..llm.media import MediaSources
from ..llm.reasoning import split_with
from ..llm.sequence import Delta, TokenLogprobs
from ..llm.toolcalls import Call, StreamParser
from .engine import ChatEngine, ChatGeneration
from .events import Calls, ChoiceResult, Content, Done, Event, FinishReason, Progress, Reasoning, TokenLogprob, ToolCall, Usage
from .turn import ChatTurn, Prepared

Saver = Callable[[dict[str, Any]], Awaitable[None]]


def _logprobs(entries: list[TokenLogprobs] | None) -> list[TokenLogprob]:
    return [TokenLogprob(e["id"], e["logprob"], [(t, lp) for t, lp in e["top"]]) for e in entries or []]


def _tool_calls(calls: list[Call], parallel: bool) -> list[ToolCall]:
    return [ToolCall("call_" + uuid.uuid4().hex[:24], c["name"], c["arguments"]) for c in (calls if parallel else calls[:1])]


def _within(limit: int, n_prompt: int, max_tokens: int) -> int:
    """The most tokens a request may generate inside its own context size."""
    if n_prompt >= limit:
        raise ContextLengthExceeded(f"the prompt has {n_prompt} tokens, the request's context {limit}")
    room = limit - n_prompt
    return room if max_tokens < 0 else min(max_tokens, room)


class _Transcript:
    """Choice 0 as the client received it, in the shape saved chats keep."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: list[ToolCall] = []
        self.done: Done | None = None

    def reply(self, usage: Usage, incomplete: bool) -> dict[str, Any]:
        return {
            "content": "".join(self.content), "reasoning_content": "".join(self.reasoning) or None,
            "tool_calls": [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                           for c in self.calls] or None,
            "finish_reason": self.done.reason if self.done else None,
            "usage": {"prompt_tokens": usage.prompt, "completion_tokens": usage.completion, "total_tokens": usage.total,
                      "cached_tokens": usage.cached},
            "timings": self.done.timings if self.done else None,
            "incomplete": incomplete,
        }


class ChatRun:
    def __init__(self, gen: ChatGeneration, prepared: Prepared, saver: Saver | None, model_id: str = "",
                 on_end: Callable[[], None] | None = None) -> None:
        self.gen = gen
        self.prepared = prepared
        self.saver = saver
        self.model_id = model_id
        self._on_end = on_end  # called once, when the run has ended (its model's lease)
        self.engine: Any = None  # the engine it runs on (for the encoders' token texts)
        self.spec: GenerationSpec | None = None  # what it asked of the engine
        self.load_seconds = 0.0  # how long the request waited for its model to load
        self._done: list[Done] = []
        self._saved = False

    @classmethod
    async def start(cls, engine: ChatEngine, turn: ChatTurn, prepared: Prepared, *, media: MediaSources,
                    saver: Saver | None = None, model_id: str = "", on_end: Callable[[], None] | None = None) -> ChatRun:
        n_probs = max(1, turn.top_logprobs) if turn.logprobs else (turn.params.n_probs or 0)
        spec = turn.params.spec(engine.n_vocab, n_probs, engine.defaults, engine.text_tokens)
        render_special = prepared.plan is not None or prepared.thinking is not None
        if not prepared.media:
            bos = not turn.prefix_tokens  # a returned context starts with its own
            prompt = turn.prefix_tokens + engine.tokenize_prompt(prepared.text, bos=bos)
            if turn.ctx_limit is not None:
                spec.max_tokens = _within(turn.ctx_limit, len(prompt), spec.max_tokens)
            run = cls(engine.generate([prompt], spec, "messages", render_special), prepared, saver, model_id, on_end)
            run.engine, run.spec = engine, spec
            return run
        for kind, _, param in prepared.media:
            if (kind == "image" and not engine.vision) or (kind == "audio" and not engine.audio):
                raise BadRequest(f"the loaded projector does not read {kind}", param=param)
        blobs = []
        for _, src, param in prepared.media:  # a remote fetch must not block the event loop
            fetch = partial(media.read, src, param)
            blobs.append(fetch() if media.is_instant(src) else await trio.to_thread.run_sync(fetch, abandon_on_cancel=True))
        run = cls(await engine.generate_with_media(prepared.text, blobs, spec, render_special), prepared, saver, model_id,
                  on_end)
        run.engine, run.spec = engine, spec
        return run

    @property
    def n_choices(self) -> int:
        return len(self.gen.seqs)

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p) for p in self.gen.prompts)

    def usage(self) -> Usage:
        completion = sum(d.completion_tokens for d in self._done)
        first = {d.index: d for d in self._done}
        cached = sum(first[i * self.gen.n].cached_tokens for i in range(len(self.gen.prompts)) if i * self.gen.n in first)
        prompt = self.prompt_tokens
        return Usage(prompt=prompt, completion=completion, cached=min(cached, prompt), media=self.gen.media_tokens)

    async def _save(self, transcript: _Transcript, incomplete: bool) -> None:
        if self._saved or self.saver is None:
            return
        self._saved = True
        await self.saver(transcript.reply(self.usage(), incomplete))

    async def events(self) -> AsyncIterator[Event]:
        """Every choice's events in the order they happen; each choice ends with Done."""
        p = self.prepared
        splitters = {s.index: p.thinking() for s in self.gen.seqs} if p.thinking is not None else {}
        parsers = {s.index: StreamParser(p.plan.family) for s in self.gen.seqs} if p.plan is not None else {}
        transcript = _Transcript()
        finished = False
        try:
            async for ev in self.gen.events():
                i = ev.index
                if isinstance(ev, Delta):
                    if ev.progress is not None:
                        yield Progress(i, **ev.progress, timings=ev.timings)
                        continue
                    thought, text = splitters[i].feed(ev.text) if splitters else ("", ev.text)
                    text = parsers[i].feed(text) if parsers else text
                    for out in self._say(transcript, i, thought, text, _logprobs(ev.logprobs) or None, ev.timings):
                        yield out
                    continue
                thought, rest = splitters[i].finish() if splitters else ("", "")
                calls: list[ToolCall] = []
                if parsers:
                    rest = parsers[i].feed(rest) if rest else ""
                    tail, found = parsers[i].finish()
                    rest += tail
                    calls = _tool_calls(found, p.plan.parallel if p.plan else True)
                for out in self._say(transcript, i, thought, rest, None):
                    yield out
                if calls:
                    if i == 0:
                        transcript.calls = calls
                    yield Calls(i, calls)
                reason: FinishReason = "tool_calls" if calls else ev.reason  # type: ignore[assignment]
                done = Done(i, reason, ev.stop_word, ev.usage["completion_tokens"],
                            ev.usage["prompt_tokens_details"]["cached_tokens"], ev.timings, ev.truncated)
                self._done.append(done)
                if i == 0:
                    transcript.done = done
                yield done
            finished = True
            await self._save(transcript, incomplete=False)  # before the client sees the end
        finally:
            if not finished:
                with trio.CancelScope(shield=True):
                    await self._save(transcript, incomplete=True)
            self.close()

    @staticmethod
    def _say(transcript: _Transcript, i: int, thought: str, text: str, lps: list[TokenLogprob] | None,
             timings: dict[str, Any] | None = None) -> list[Event]:
        out: list[Event] = []
        if thought:
            out.append(Reasoning(i, thought, timings))
        if text or lps:
            out.append(Content(i, text, lps, timings))
        if i == 0:
            transcript.reasoning.append(thought)
            transcript.content.append(text)
        return out

    async def collect(self) -> list[ChoiceResult]:
        """Every choice, whole (the same reasoning split and call parsing as a stream makes)."""
        p = self.prepared
        choices = await self.gen.collect()
        results = []
        for c in choices:
            f = c.finished
            text = "".join(c.text)
            thought = ""
            if p.thinking is not None:
                thought, text = split_with(p.thinking(), text)
            calls: list[ToolCall] = []
            if p.plan is not None:
                parsed = p.plan.family.parse(text)
                if parsed.calls:
                    text, calls = parsed.content, _tool_calls(parsed.calls, p.plan.parallel)
            done = None
            if f is not None:
                reason: FinishReason = "tool_calls" if calls else f.reason  # type: ignore[assignment]
                done = Done(c.index, reason, f.stop_word, f.usage["completion_tokens"],
                            f.usage["prompt_tokens_details"]["cached_tokens"], f.timings, f.truncated)
                self._done.append(done)
            results.append(ChoiceResult(c.index, text, thought, calls, _logprobs(c.logprobs), done))
        if results:
            transcript = _Transcript()
            first = results[0]
            transcript.content, transcript.reasoning = [first.content], [first.reasoning]
            transcript.calls, transcript.done = first.calls, first.done
            await self._save(transcript, incomplete=False)  # before the reply is sent
        return results

    def close(self) -> None:
        """Stop the generation (if it still runs) and end the run's hold on its model: once its
        response has been built or sent (an engine's output is read until then)."""
        self.gen.cancel()
        if self._on_end is not None:
            on_end, self._on_end = self._on_end, None
            on_end()
