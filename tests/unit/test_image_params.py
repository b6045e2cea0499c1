"""The image request model and the closed LoRA set, without a server: coercion, sizes, aliases."""

from __future__ import annotations

from pathlib import Path

import pytest
from werkzeug.datastructures import MultiDict

from chimera.errors import BadRequest, ConfigError
from chimera.images.lora import parse_loras
from chimera.images.params import ImageRequest, check_size, form_to_fields, rounded, split_lora_tags
from chimera.images.pool import ImagePool
from chimera.images.setup import ImageSetup


def test_numbers_read_the_same_from_json_and_forms() -> None:
    a = ImageRequest.model_validate({"prompt": "x", "steps": 4, "seed": 7, "cfg_scale": 1.5, "n": 2, "stream": True})
    form = MultiDict([("prompt", "x"), ("steps", "4"), ("seed", "7"), ("cfg_scale", "1.5"), ("n", "2"),
                      ("stream", "true"), ("strength", "")])
    b = ImageRequest.model_validate(form_to_fields(form))
    assert a == b and b.strength is None  # an empty form field counts as absent


def test_form_arrays_are_json_text_or_repeated() -> None:
    f = form_to_fields(MultiDict([("loras", '[{"name": "a", "scale": "0.5"}]'), ("pm_id_images[]", "AAA"),
                                  ("pm_id_images[]", "BBB")]))
    req = ImageRequest.model_validate(f)
    assert [(r.name, r.scale) for r in req.loras] == [("a", 0.5)] and req.pm_id_images == ["AAA", "BBB"]
    with pytest.raises(BadRequest) as e:
        form_to_fields(MultiDict([("loras", "[{bad")]))
    assert e.value.param == "loras"


def test_sizes_round_up_to_16_and_are_bounded() -> None:
    assert rounded(72, 64) == (80, 64) and rounded(100, 60) == (112, 64)
    assert check_size(72, 64, 10_000) == (80, 64)
    with pytest.raises(BadRequest) as e:
        check_size(128, 128, 10_000)
    assert "--sd-max-pixels" in e.value.message and e.value.param == "size"


def test_lora_tags_in_the_prompt_become_alias_references() -> None:
    prompt, refs = split_lora_tags("a cat <lora:style:0.5> on a mat")
    assert prompt == "a cat  on a mat" and [(r.name, r.scale) for r in refs] == [("style", 0.5)]


def _pool(**kw: object) -> ImagePool:
    setup = ImageSetup(engine={"model_path": "m"}, threads=1, workers=1, max_pixels=512 * 512, max_steps=50, **kw)  # type: ignore[arg-type]
    return ImagePool(setup)


def test_job_maps_aliases_to_paths_and_refuses_unknown_ones() -> None:
    pool = _pool(loras={"style": "/models/style.safetensors"})
    header, data = pool.job(ImageRequest(prompt="a <lora:style:0.5>", loras=[{"name": "style"}]), "generate")  # type: ignore[list-item]
    assert header["loras"] == [["/models/style.safetensors", 1.5]] and header["prompt"] == "a" and data == b""
    assert header["size"] == [512, 512]
    with pytest.raises(BadRequest) as e:
        pool.job(ImageRequest(prompt="a <lora:/etc/passwd:1>"), "generate")
    assert "known LoRAs: style" in e.value.message


def test_job_names_the_missing_flag_and_packs_files() -> None:
    pool = _pool()
    with pytest.raises(BadRequest) as e:
        pool.job(ImageRequest(prompt="a", control_strength=0.5), "generate")
    assert "--sd-control-net" in e.value.message and e.value.code == "not_enabled"
    header, data = pool.job(ImageRequest(prompt="a"), "edit", {"image": [b"abc"], "mask": [b"de"]})
    assert header["blobs"] == [["image", 3], ["mask", 2]] and data == b"abcde" and header["strength"] == 1.0


def test_lora_flags_are_checked_before_anything_loads(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NAME=PATH"):
        parse_loras(("just-a-path.safetensors",))
    with pytest.raises(ConfigError, match="no such file"):
        parse_loras((f"a={tmp_path / 'none.safetensors'}",))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(ConfigError, match="not a safetensors file"):
        parse_loras((f"a={junk}",))
    twice = tmp_path / "x.gguf"
    twice.write_bytes(b"GGUF" + b"\0" * 60)
    with pytest.raises(ConfigError, match="given twice"):
        parse_loras((f"a={twice}", f"a={twice}"))
