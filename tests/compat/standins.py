"""Local stand-ins for the hub models that llama.cpp's server test suite names (`make compat`).

There is no model hub here, so every hub file the suite asks for is a local GGUF instead, laid out
as a Hugging Face hub cache (`models--OWNER--REPO/refs/main`, `snapshots/<commit>/<file>`), which is
where llama-server looks for `-hf`/`--hf-repo`/`--hf-file` models when it cannot download (and what
its router lists as `OWNER/REPO:TAG`). llama-server reads that cache through `LLAMA_CACHE`
unchanged; the compat launcher resolves the same flags against the same cache for chimera
(`resolve`), so both servers get the same files. Files the suite fetches with its own
`download_file(URL)` (into `tests/tmp/`) get stand-ins too (`DOWNLOADS`).

The stand-ins are the project's random-weight test models (tests/models): the weights are random,
so tests that check what a trained model says fail on both servers and drop out of the comparison.

    python tests/compat/standins.py ROOT     builds ROOT/hub and ROOT/downloads, prints the table
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))


@dataclass(frozen=True)
class StandIn:
    repo: str  # OWNER/REPO on the hub
    path: str  # the file's path in the repo
    source: str  # which local model stands in (a key of SOURCES)
    real: str  # what the real file is, for the report


# the hub files the suite names (outside its slow tests, which need 1-8B models and are not run)
HUB: list[StandIn] = [
    StandIn("ggml-org/test-model-stories260K", "stories260K-F32.gguf", "llama",
            "stories260K: a 260K-parameter Llama trained on TinyStories, SentencePiece vocab"),
    StandIn("ggml-org/test-model-stories260K-infill", "stories260K-infill-F32.gguf", "llama-fim",
            "stories260K with fill-in-the-middle tokens"),
    StandIn("ggml-org/models", "tinyllamas/stories260K.gguf", "llama", "stories260K (ServerProcess's default)"),
    StandIn("ggml-org/models", "tinyllamas/split/stories15M-q8_0-00001-of-00003.gguf", "llama-split-1",
            "stories15M in 3 shards"),
    StandIn("ggml-org/models", "tinyllamas/split/stories15M-q8_0-00002-of-00003.gguf", "llama-split-2", ""),
    StandIn("ggml-org/models", "tinyllamas/split/stories15M-q8_0-00003-of-00003.gguf", "llama-split-3", ""),
    StandIn("ggml-org/models", "bert-bge-small/ggml-model-f16.gguf", "minilm",
            "bge-small-en-v1.5: a BERT embedder, CLS pooling"),
    StandIn("ggml-org/models", "jina-reranker-v1-tiny-en/ggml-model-f16.gguf", "bert-rerank",
            "jina-reranker-v1-tiny-en: a BERT reranker"),
    StandIn("ggml-org/stories15M_MOE", "stories15M_MOE-F16.gguf", "llama", "stories15M_MOE: a 4-expert MoE Llama"),
    StandIn("ggml-org/tinygemma3-GGUF", "tinygemma3-Q8_0.gguf", "llama", "tinygemma3: a tiny Gemma 3 with a vision tower"),
    StandIn("ggml-org/tinygemma3-GGUF", "mmproj-tinygemma3.gguf", "mmproj-64", "tinygemma3's projector"),
]

# files the suite downloads itself with utils.download_file(URL) into tests/tmp/<name>
DOWNLOADS: dict[str, tuple[str, str]] = {
    "stories15M-q4_0.gguf": ("llama", "test_speculative's draft model (stories15M, same vocab as the main model)"),
}
# and the ones that get no stand-in (the tests need what a trained adapter does)
NO_STANDIN = {
    "moe_shakespeare15M.gguf": "test_lora's LoRA adapter for stories15M_MOE: its tests check Shakespearean words",
}

# the test images the suite fetches itself from the hub with requests.get (for base64 payloads):
# llama.cpp's tools/mtmd/test-1.jpeg as PNG, and that picture mirrored and hue-shifted as the second
IMAGES_URL = "https://huggingface.co/ggml-org/tinygemma3-GGUF/resolve/main/test/"
IMAGES = ("11_truck.png", "91_cat.png")

SOURCES: dict[str, str] = {
    "llama": "tiny-random-llama-spm.gguf (tests/models: 2-layer Llama, n_embd 64, llama.cpp's 32000-token SentencePiece vocab)",
    "llama-fim": "tiny-random-llama-spm.gguf's weights and vocab plus 3 FIM control tokens (<PRE> <SUF> <MID>)",
    "llama-split-1": "tiny-random-llama-spm.gguf cut into 3 shards (gguf's split writer)",
    "minilm": "all-MiniLM-L6-v2-f16.gguf (`chimera models prepare --which embed`: a real BERT embedder, mean pooling)",
    "bert-rerank": "tiny-random-bert-rerank.gguf (tests/models: 2-layer BERT, rank pooling and a classifier head)",
    "mmproj-64": "tiny-random-mmproj-64.gguf (tests/models: a LLaVA-style projector for the n_embd-64 tiny Llama)",
}

FAKE_COMMIT = hashlib.sha1(b"chimera compat stand-ins v1").hexdigest()


def _fim_llama(out: Path) -> None:
    """The tiny SentencePiece Llama with 3 control tokens for fill-in-the-middle, named by
    tokenizer.ggml.fim_{pre,suf,mid}_token_id (what llama-server's /infill needs)."""
    import gguf

    from models import tiny_model
    from models.tiny_gguf import Field, pad_vocab, read_tokenizer, vocab_size, write_llama

    tok = read_tokenizer(tiny_model("tiny-random-llama-spm.gguf"))
    n = vocab_size(tok)
    tok = pad_vocab(tok, n + 3)
    names = {"tokenizer.ggml.tokens": ["<PRE>", "<SUF>", "<MID>"]}
    tok = [Field(f.key, list(f.value[:n]) + names[f.key], f.vtype, f.sub_type) if f.key in names else f for f in tok]
    tok += [Field(f"tokenizer.ggml.fim_{k}_token_id", n + i, gguf.GGUFValueType.UINT32) for i, k in enumerate(("pre", "suf", "mid"))]
    donor = out.with_name(out.name + ".vocab.gguf")
    w = gguf.GGUFWriter(str(donor), "llama")
    for f in tok:
        w.add_key_value(f.key, f.value, f.vtype, f.sub_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    try:
        write_llama(out, donor, name="tiny-random-llama-fim")
    finally:
        donor.unlink()


def _split(src: Path, out_dir: Path, stem: str, n: int) -> list[Path]:
    """`src` rewritten as `n` shards `<stem>-0000i-of-0000n.gguf` (llama.cpp's split format)."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    per_shard = -(-len(reader.tensors) // n)
    w = gguf.GGUFWriter(str(out_dir / f"{stem}.gguf"), str(reader.fields["general.architecture"].contents()),
                        split_max_tensors=per_shard)
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = gguf.GGUFValueType(f.types[0])
        sub = gguf.GGUFValueType(f.types[-1]) if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, f.contents(), vtype, sub)
    for t in reader.tensors:
        w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    shards = sorted(out_dir.glob(f"{stem}-*-of-*.gguf"))
    if len(shards) != n:
        raise RuntimeError(f"expected {n} shards of {src}, got {shards}")
    return shards


def build_sources(root: Path) -> dict[str, Path]:
    """The local files, generated or prepared on first use (cached under root/files)."""
    from chimera.models import prepare

    from models import tiny_model

    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    out = {
        "llama": tiny_model("tiny-random-llama-spm.gguf"),
        "minilm": Path(prepare("embed")),
        "bert-rerank": tiny_model("tiny-random-bert-rerank.gguf"),
        "mmproj-64": tiny_model("tiny-random-mmproj-64.gguf"),
    }
    fim = files / "tiny-random-llama-fim.gguf"
    if not fim.exists():
        _fim_llama(fim)
    out["llama-fim"] = fim
    shards = sorted(files.glob("tiny-random-llama-split-*-of-00003.gguf"))
    if len(shards) != 3:
        shards = _split(out["llama"], files, "tiny-random-llama-split", 3)
    for i, s in enumerate(shards, 1):
        out[f"llama-split-{i}"] = s
    return out


def build_images(root: Path, test_jpeg: Path) -> Path:
    """root/images/<name> for IMAGES: PNGs made from llama.cpp's tools/mtmd/test-1.jpeg."""
    from PIL import Image, ImageOps

    out = root / "images"
    out.mkdir(parents=True, exist_ok=True)
    if not all((out / n).exists() for n in IMAGES):
        img = Image.open(test_jpeg).convert("RGB")
        img.save(out / IMAGES[0])
        r, g, b = ImageOps.mirror(img).split()
        Image.merge("RGB", (b, r, g)).save(out / IMAGES[1])
    return out


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        link.unlink()
    link.symlink_to(target)


def build(root: Path) -> tuple[Path, Path]:
    """root/hub (the hub cache, for LLAMA_CACHE) and root/downloads (files for tests/tmp/)."""
    sources = build_sources(root)
    hub = root / "hub"
    for s in HUB:
        repo_dir = hub / ("models--" + s.repo.replace("/", "--"))
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / "main").write_text(FAKE_COMMIT)
        _link(sources[s.source], repo_dir / "snapshots" / FAKE_COMMIT / s.path)
    downloads = root / "downloads"
    for name, (source, _) in DOWNLOADS.items():
        _link(sources[source], downloads / name)
    return hub, downloads


# --- resolving -hf flags the way llama-server does (common/download.cpp), against the cache ------
def _repo_files(hub: Path, repo: str) -> list[tuple[str, Path]]:
    snap = hub / ("models--" + repo.replace("/", "--")) / "snapshots" / FAKE_COMMIT
    if not snap.is_dir():
        return []
    return sorted((p.relative_to(snap).as_posix(), p) for p in snap.rglob("*") if p.is_file() or p.is_symlink())


def _is_model(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".gguf") and not any(s in name for s in ("mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-"))


def _first_shard(path: str) -> bool:
    m = re.search(r"-(\d{5})-of-(\d{5})\.gguf$", path)
    return m is None or int(m.group(1)) == 1


def resolve(hub: Path, repo_tag: str, hf_file: str | None) -> tuple[Path, Path | None]:
    """(model, mmproj or None) for `--hf-repo REPO[:TAG] [--hf-file F]`: the file named, else the
    first model file whose name has the tag (default Q4_K_M, then Q8_0, then any model file), as
    common_download_get_hf_plan picks it; the projector is the repo's mmproj file."""
    repo, _, tag = repo_tag.partition(":")
    files = _repo_files(hub, repo)
    if not files:
        raise FileNotFoundError(f"no stand-in for hub repo {repo} (the suite needs it from the hub)")
    model = None
    if hf_file:
        model = next((p for rel, p in files if rel == hf_file), None)
        if model is None:
            raise FileNotFoundError(f"no stand-in for {repo}/{hf_file}")
    else:
        for t in [tag] if tag else ["Q4_K_M", "Q8_0"]:
            pat = re.compile(re.escape(t) + r"[.-]", re.I)
            model = next((p for rel, p in files if _is_model(rel) and pat.search(rel) and _first_shard(rel)), None)
            if model:
                break
        if model is None and not tag:
            model = next((p for rel, p in files if _is_model(rel) and _first_shard(rel)), None)
        if model is None:
            raise FileNotFoundError(f"no stand-in for {repo_tag}")
    mmproj = next((p for rel, p in files if "mmproj" in rel.rsplit("/", 1)[-1] and rel.endswith(".gguf")), None)
    return model, mmproj


def cached_models(hub: Path) -> list[tuple[str, Path, Path | None]]:
    """What llama-server's router lists from the cache: (`OWNER/REPO:TAG`, model, mmproj), the tag
    being the last `-X`/`.X` of a model file's name (common_list_cached_models)."""
    out: list[tuple[str, Path, Path | None]] = []
    seen = set()
    for repo_dir in sorted(hub.glob("models--*")):
        repo = repo_dir.name[len("models--"):].replace("--", "/")
        files = _repo_files(hub, repo)
        for rel, _ in files:
            if not _is_model(rel) or not _first_shard(rel):
                continue
            prefix = re.sub(r"-\d{5}-of-\d{5}$", "", rel[:-len(".gguf")])
            m = re.search(r"[-.]([A-Za-z0-9_]+)$", prefix)
            if not m:
                continue
            name = f"{repo}:{m.group(1).upper()}"
            if name not in seen:
                seen.add(name)
                model, mmproj = resolve(hub, name, None)
                out.append((name, model, mmproj))
    return out


if __name__ == "__main__":
    hub_dir, dl = build(Path(sys.argv[1]))
    for s in HUB:
        print(f"{s.repo}/{s.path} -> {s.source}")
    for name, model, mmproj in cached_models(hub_dir):
        print(f"router lists {name}: {model} {mmproj or ''}")
