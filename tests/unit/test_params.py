"""Request fields that reach sampling come from one definition: SamplingParams."""

from __future__ import annotations

import dataclasses

import pytest

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


def test_logit_bias_in_openai_and_llama_server_forms() -> None:
    from chimera.errors import BadRequest
    from chimera.protocol.params import GenerationFields

    words = {"Hello": [5, 6], " world": [7]}

    def bias(value: object) -> dict[int, float]:
        return GenerationFields(logit_bias=value).sampling(100, tokenize=lambda t: words[t]).logit_bias  # type: ignore[arg-type]

    assert bias({"3": 2.5, "4": -200}) == {3: 2.5, 4: -100.0}  # OpenAI's: ids as strings, clamped to +-100
    assert bias([[3, 1.0], ["Hello", -2.0], [" world", False]]) == {3: 1.0, 5: -2.0, 6: -2.0, 7: float("-inf")}
    assert bias({"Hello": 1.5}) == {5: 1.5, 6: 1.5}  # text keys: every token of the text
    for bad in ([[3]], [[3, "x"]], {"500": 1.0}, [[None, 1.0]]):
        with pytest.raises(BadRequest):
            bias(bad)
    with pytest.raises(BadRequest, match="token ids"):  # text needs a tokenizer
        GenerationFields(logit_bias={"Hello": 1.0}).sampling(100)
