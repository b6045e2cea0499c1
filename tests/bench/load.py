"""Load generator: N concurrent clients streaming chat completions; aggregate tok/s and TTFT."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass

import httpx
import trio

WORDS = ("river mountain lantern harbor violet engine meadow copper falcon orchard whisper canyon "
         "glacier saddle thunder velvet compass ember pillar tundra").split()


def prompt_for(i: int, words: int = 12) -> str:
    """Distinct prompts, so no two requests share a cached prefix beyond the template."""
    pick = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(words)]
    return f"Request {i}: write a short story about " + " ".join(pick) + f" (variant {i * 2654435761 % 1000003})."


@dataclass
class Result:
    tokens: int
    ttft: float
    total: float


async def one_request(client: httpx.AsyncClient, url: str, i: int, max_tokens: int, model: str) -> Result:
    body = {
        "model": model, "stream": True, "max_tokens": max_tokens, "temperature": 0.8, "seed": i,
        "ignore_eos": True, "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": prompt_for(i)}],
    }
    t0 = time.perf_counter()
    ttft = 0.0
    tokens = 0
    chunks = 0
    async with client.stream("POST", url, json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if "error" in ev:
                raise RuntimeError(ev["error"])
            for c in ev.get("choices", []):
                if c.get("delta", {}).get("content"):
                    chunks += 1
                    if not ttft:
                        ttft = time.perf_counter() - t0
            if ev.get("usage"):
                tokens = ev["usage"]["completion_tokens"]
    return Result(tokens or chunks, ttft, time.perf_counter() - t0)


async def run_load(
    base: str, concurrency: int, requests: int, max_tokens: int, model: str = "m", stagger: float = 0.2,
    first_index: int = 0,
) -> dict[str, float]:
    url = base + "/v1/chat/completions"
    results: list[Result] = []
    # every request of every run gets a prompt no server has seen (llama-server keeps a prompt
    # cache in host memory; a repeated prompt would measure that cache, not the serving path)
    counter = iter(range(first_index, first_index + requests))

    async def worker(client: httpx.AsyncClient, k: int) -> None:
        # staggered starts: clients that arrive in lock-step would all prefill in the same step,
        # which measures the arrival pattern more than the server
        await trio.sleep(k * stagger)
        for i in counter:
            results.append(await one_request(client, url, i, max_tokens, model))

    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        # warm-up: one request not counted
        await one_request(client, url, 10_000_000 + first_index, 8, model)
        t0 = time.perf_counter()
        async with trio.open_nursery() as n:
            for k in range(concurrency):
                n.start_soon(worker, client, k)
        wall = time.perf_counter() - t0
    ttfts = sorted(r.ttft for r in results)
    total_tokens = sum(r.tokens for r in results)
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "tokens": total_tokens,
        "tok_s": total_tokens / wall,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p95": ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))],
    }
