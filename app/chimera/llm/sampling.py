"""Per-request sampling parameters and the native llama.cpp sampler chain built from them."""

from __future__ import annotations

import ctypes
import random
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest

DEFAULT_DRY_BREAKERS = ("\n", ":", '"', "*")


@dataclass
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    top_n_sigma: float = -1.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = -1
    dry_sequence_breakers: tuple[str, ...] = DEFAULT_DRY_BREAKERS
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    ignore_eos: bool = False
    grammar: str | None = None

    def resolved_seed(self) -> int:
        if self.seed is None or self.seed < 0:
            return random.getrandbits(32)
        return self.seed & 0xFFFFFFFF

    def public(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["dry_sequence_breakers"] = list(self.dry_sequence_breakers)
        d["logit_bias"] = {str(k): v for k, v in self.logit_bias.items()}
        return d


def build_chain(ll: Any, model: Any, p: SamplingParams, eog_tokens: list[int], n_ctx_slot: int) -> Any:
    """A native sampler chain for `p`. The caller frees it with llama_sampler_free."""
    chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
    add = ll.llama_sampler_chain_add
    try:
        if p.grammar:
            g = ll.llama_sampler_init_grammar(model.vocab, p.grammar.encode(), b"root")
            if not g:
                raise BadRequest("the grammar could not be parsed (see the server log for the position)", param="grammar")
            add(chain, g)
        bias = dict(p.logit_bias)
        if p.ignore_eos:
            for t in eog_tokens:
                bias[t] = float("-inf")
        if bias:
            arr = (ll.llama_logit_bias * len(bias))()
            for i, (tok, b) in enumerate(bias.items()):
                arr[i].token = tok
                arr[i].bias = b
            add(chain, ll.llama_sampler_init_logit_bias(model.n_vocab, len(bias), arr))
        last_n = n_ctx_slot if p.repeat_last_n == -1 else p.repeat_last_n
        if p.repeat_penalty != 1.0 or p.presence_penalty != 0.0 or p.frequency_penalty != 0.0:
            add(chain, ll.llama_sampler_init_penalties(model.n_vocab, last_n, p.repeat_penalty, p.frequency_penalty,
                                                       p.presence_penalty))
        if p.dry_multiplier > 0.0:
            breakers = [b.encode() for b in p.dry_sequence_breakers]
            arr_b = (ctypes.c_char_p * len(breakers))(*breakers)
            dry_last = n_ctx_slot if p.dry_penalty_last_n == -1 else p.dry_penalty_last_n
            add(chain, ll.llama_sampler_init_dry(model.vocab, p.dry_multiplier, p.dry_base, p.dry_allowed_length, dry_last, arr_b, len(breakers)))
        if p.temperature <= 0.0:
            add(chain, ll.llama_sampler_init_greedy())
            return chain
        if p.top_n_sigma > 0.0:
            add(chain, ll.llama_sampler_init_top_n_sigma(p.top_n_sigma))
        if p.top_k > 0:
            add(chain, ll.llama_sampler_init_top_k(p.top_k))
        if p.typical_p < 1.0:
            add(chain, ll.llama_sampler_init_typical(p.typical_p, 1))
        if p.top_p < 1.0:
            add(chain, ll.llama_sampler_init_top_p(p.top_p, 1))
        if p.min_p > 0.0:
            add(chain, ll.llama_sampler_init_min_p(p.min_p, 1))
        seed = p.resolved_seed()
        if p.xtc_probability > 0.0:
            add(chain, ll.llama_sampler_init_xtc(p.xtc_probability, p.xtc_threshold, 1, seed))
        add(chain, ll.llama_sampler_init_temp(p.temperature))
        add(chain, ll.llama_sampler_init_dist(seed))
        return chain
    except BaseException:
        ll.llama_sampler_free(chain)
        raise


# llama-server's flag → the SamplingParams field it sets by default
SERVER_DEFAULTS = {
    "temp": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "typical": "typical_p",
    "top_nsigma": "top_n_sigma", "repeat_penalty": "repeat_penalty", "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty", "dry_multiplier": "dry_multiplier",
    "dry_base": "dry_base", "dry_allowed_length": "dry_allowed_length", "dry_penalty_last_n": "dry_penalty_last_n",
    "xtc_probability": "xtc_probability", "xtc_threshold": "xtc_threshold", "seed": "seed",
}
