"""Request fields that reach sampling come from one definition: SamplingParams."""

from __future__ import annotations

import dataclasses

from chimera.llm.sampling import SamplingParams
from chimera.protocol.params import SAMPLING_FIELDS, GenerationFields


def test_every_sampling_field_is_a_request_field() -> None:
    assert set(SAMPLING_FIELDS) <= set(GenerationFields.model_fields)
    names = {f.name for f in dataclasses.fields(SamplingParams)}
    assert set(SAMPLING_FIELDS) | {"logit_bias", "dry_sequence_breakers", "ignore_eos"} == names


def test_every_sampling_field_reaches_the_spec() -> None:
    values = {"temperature": 0.3, "top_k": 7, "top_p": 0.5, "min_p": 0.2, "typical_p": 0.9, "top_n_sigma": 1.5,
              "repeat_penalty": 1.2, "repeat_last_n": 12, "presence_penalty": 0.4, "frequency_penalty": 0.6,
              "dry_multiplier": 0.7, "dry_base": 2.0, "dry_allowed_length": 3, "dry_penalty_last_n": 9,
              "xtc_probability": 0.25, "xtc_threshold": 0.3, "seed": 11, "grammar": "root ::= \"x\""}
    assert set(values) == set(SAMPLING_FIELDS)
    spec = GenerationFields.model_validate(values | {"max_tokens": 5, "stop": ["a"], "n": 2,
                                                     "lora": [{"id": 0, "scale": 0.5}]}).spec(1000, 3)
    assert {k: getattr(spec.sampling, k) for k in values} == values
    assert (spec.max_tokens, spec.stops, spec.n, spec.n_probs, spec.lora) == (5, ["a"], 2, 3, [(0, 0.5)])
