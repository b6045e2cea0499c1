"""Images and audio in prompts, through llama.cpp's mtmd (`--mmproj`).

A chat message's media parts become the projector's marker in the rendered prompt; mtmd splits
the prompt into text and media chunks. The engine sees one token list in which each media chunk
is a run of placeholder ids (negative, derived from the media's hash, so the same image gives the
same run and prefix reuse works across requests), plus the chunks to evaluate at those places.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadRequest, Unsupported

MAX_MEDIA_BYTES = 32 * 1024 * 1024


@dataclass
class MediaChunk:
    start: int  # index in the prompt's token list
    n_tokens: int
    chunk: Any  # mtmd_input_chunk_p (owned by MediaPrompt.chunks)


@dataclass
class MediaPrompt:
    tokens: list[int]
    media: dict[int, MediaChunk] = field(default_factory=dict)
    chunks: Any = None  # mtmd_input_chunks_p, freed with free()

    def free(self, mt: Any) -> None:
        if self.chunks:
            mt.mtmd_input_chunks_free(self.chunks)
            self.chunks = None


@dataclass(frozen=True)
class MediaSources:
    """Where the media of a message may come from besides data: URLs: http(s) when `remote`
    (--allow-remote-media), file:// paths relative to `local_dir` (--media-path)."""

    remote: bool = False
    local_dir: Path | None = None

    def is_instant(self, url: str) -> bool:
        """Read without I/O that could wait (a data: URL): no worker thread needed."""
        return url.startswith("data:")

    def read(self, url: str, param: str) -> bytes:
        return media_bytes(url, self, param)

    def local_file(self, url: str, param: str) -> Path:
        """The file a file:// URL names, inside local_dir only (no `..`, no link out of it)."""
        if self.local_dir is None:
            raise BadRequest("file:// URLs are not read by this server unless it is started with --media-path",
                             param=param)
        rel = url[len("file://"):]
        parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            raise BadRequest(f"file path is not allowed: {rel}", param=param)
        base = self.local_dir.resolve()
        path = base.joinpath(*parts).resolve()
        if not path.is_relative_to(base):
            raise BadRequest(f"file path is not allowed: {rel}", param=param)
        if not path.is_file():
            raise BadRequest(f"file does not exist or cannot be opened: {rel}", param=param)
        return path


def media_bytes(url: str, sources: MediaSources, param: str) -> bytes:
    """The bytes of an image_url / input_audio source: a data URL, http(s) or file:// when allowed."""
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        if ";base64" not in head:
            raise BadRequest("data URLs must be base64-encoded", param=param)
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("the data URL is not valid base64", param=param) from None
    elif url.startswith(("http://", "https://")):
        if not sources.remote:
            raise BadRequest("remote media URLs are not fetched by this server (start it with --allow-remote-media, "
                             "or send a data: URL)", param=param)
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                raw = resp.read(MAX_MEDIA_BYTES + 1)
        except OSError as e:
            raise BadRequest(f"could not fetch {url}: {e}", param=param) from None
    elif url.startswith("file://"):
        path = sources.local_file(url, param)
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_MEDIA_BYTES + 1)
        except OSError as e:
            raise BadRequest(f"file cannot be read: {url[len('file://'):]}: {e.strerror}", param=param) from None
    else:
        raise BadRequest("media must be a data: URL, an http(s) URL or a file:// path", param=param)
    if len(raw) > MAX_MEDIA_BYTES:
        raise BadRequest(f"media larger than {MAX_MEDIA_BYTES} bytes", param=param)
    if not raw:
        raise BadRequest("the media is empty", param=param)
    return raw


def _placeholder(chunk_id: bytes | None, index: int) -> int:
    key = chunk_id or f"media-{index}".encode()
    return -1 - (int.from_bytes(key[:8].ljust(8, b"\0"), "little") & 0x3FFFFFFF)


def tokenize(mt: Any, mctx: Any, text: str, media: list[bytes], add_special: bool) -> MediaPrompt:
    """Engine thread: decode the media and split the prompt into text and media chunks."""
    bitmaps = []
    try:
        for i, data in enumerate(media):
            buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
            bmp = mt.mtmd_helper_bitmap_init_from_buf(mctx, buf, len(data), False)
            if not bmp:
                raise BadRequest(f"media #{i + 1} could not be decoded (not an image or audio format the projector reads)",
                                 param="messages")
            bitmaps.append(bmp)
        chunks = mt.mtmd_input_chunks_init()
        raw = text.encode()
        it = mt.mtmd_input_text(raw, len(raw), add_special, True)
        arr = (mt.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
        rc = mt.mtmd_tokenize(mctx, chunks, ctypes.byref(it), arr, len(bitmaps))
        if rc != 0:
            mt.mtmd_input_chunks_free(chunks)
            raise BadRequest("the media markers and the media do not match (one media part per marker)", param="messages")
    finally:
        for b in bitmaps:
            mt.mtmd_bitmap_free(b)
    prompt = MediaPrompt(tokens=[], chunks=chunks)
    for i in range(mt.mtmd_input_chunks_size(chunks)):
        c = mt.mtmd_input_chunks_get(chunks, i)
        n = int(mt.mtmd_input_chunk_get_n_tokens(c))
        if mt.mtmd_input_chunk_get_type(c) == 0:  # text
            count = ctypes.c_size_t(0)
            ptr = mt.mtmd_input_chunk_get_tokens_text(c, ctypes.byref(count))
            prompt.tokens.extend(int(ptr[k]) for k in range(count.value))
            continue
        if int(mt.mtmd_input_chunk_get_n_pos(c)) != n:
            prompt.free(mt)
            raise Unsupported("this projector places media with their own positions (M-RoPE), which this server does not run yet")
        prompt.media[len(prompt.tokens)] = MediaChunk(len(prompt.tokens), n, c)
        prompt.tokens.extend([_placeholder(mt.mtmd_input_chunk_get_id(c), i)] * n)
    if prompt.media and max(m.start + m.n_tokens for m in prompt.media.values()) >= len(prompt.tokens):
        prompt.free(mt)
        raise BadRequest("the prompt must end with text after the last media part", param="messages")
    return prompt


def load_projector(mt: Any, path: str, model_ptr: Any, threads: int) -> Any:
    p = mt.mtmd_context_params_default()
    p.use_gpu = True
    p.n_threads = threads
    p.print_timings = False
    ctx = mt.mtmd_init_from_file(os.fsencode(path), model_ptr, p)
    if not ctx:
        raise RuntimeError(f"--mmproj: {path} is not a projector for this model")
    return ctx
