"""OpenAI image routes: generations (JSON), edits and variations (multipart), and the LoRA list.

Progress: with `"stream": true` (a form field `stream=true` for multipart routes) or an
`Accept: text/event-stream` header, the reply is an SSE stream: one `event: progress` per sampling
step, `data: {"type": "progress", "step": k, "steps": N, "image_index": i}` (k counts from 1), then
`event: result` whose data is the same JSON object a plain request gets (with `"type": "result"`),
then `data: [DONE]`. A failure after the stream began is `event: error`, `data: {"error": {...}}`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from quart import Blueprint, Response, request

from ..errors import BadRequest, ChimeraError, Loading, NotEnabled
from ..images.params import ImageRequest, form_to_fields
from ..images.pool import ImagePool
from .advice import for_client
from .common import SSE_DONE, json_object, json_response, parse_model, services, sse_event, sse_response

blueprint = Blueprint("images", __name__)


def _pool() -> ImagePool:
    s = services()
    if not s.settings.sd_enabled():
        raise NotEnabled("image generation is off", feature="images")
    if s.images is None:
        raise Loading()
    return s.images


def _wants_stream(req: ImageRequest) -> ImageRequest:
    if not req.stream and "text/event-stream" in request.headers.get("Accept", ""):
        return req.model_copy(update={"stream": True})
    return req


def _body(result: dict[str, Any], req: ImageRequest) -> dict[str, Any]:
    size = f"{result['width']}x{result['height']}"
    body: dict[str, Any] = {
        "created": int(time.time()),
        "data": [{"b64_json": im["b64_json"], "revised_prompt": None, "seed": im["seed"]} for im in result["images"]],
        "size": size,
        "output_format": req.output_format,
        "background": "opaque",
        "seed": result["seed"],
    }
    if req.size is not None and req.size.replace(" ", "").lower() != size:
        body["requested_size"] = req.size  # both sides are rounded up to multiples of 16
    return body


async def _sse(first: dict[str, Any] | None, events: AsyncGenerator[dict[str, Any], None], req: ImageRequest) -> AsyncIterator[bytes]:
    async with aclosing(events):
        frame = first
        try:
            while frame is not None:
                if "images" in frame:
                    yield sse_event({"type": "result", **_body(frame, req)}, event="result")
                    break
                yield sse_event({"type": "progress", **frame}, event="progress")
                frame = await anext(events, None)
        except ChimeraError as e:
            yield sse_event(for_client(e).to_openai(), event="error")
        yield SSE_DONE


async def _answer(pool: ImagePool, req: ImageRequest, kind: str, files: dict[str, list[bytes]]) -> Response:
    header, data = pool.job(req, kind, files)
    if req.stream:
        events = pool.stream(header, data)
        try:
            first = await anext(events)  # input errors arrive before the first event: a plain 4xx
        except BaseException:
            await events.aclose()
            raise
        return sse_response(_sse(first, events, req))
    result = await pool.request(header, data)
    headers = {"Server-Timing": f"generate;dur={1000 * float(result['elapsed']):.1f}"}  # the engine call alone
    body = _body(result, req)
    if "requested_size" in body:
        headers["X-Chimera-Size-Adjusted"] = f"{body['requested_size']} -> {body['size']}"
    return json_response(body, headers=headers)


async def _multipart() -> tuple[dict[str, Any], dict[str, list[bytes]]]:
    ctype = request.headers.get("Content-Type", "")
    if not ctype.startswith("multipart/form-data"):
        raise BadRequest("send the image as multipart/form-data with an 'image' file field", param="image")
    form = await request.form
    uploads = await request.files
    files: dict[str, list[bytes]] = {}
    for key in uploads.keys():
        name = key[:-2] if key.endswith("[]") else key
        if name in ("image", "mask", "control_image", "pm_id_images"):
            files.setdefault("pm_id" if name == "pm_id_images" else name, []).extend(f.read() for f in uploads.getlist(key))
    if len(files.get("mask", [])) > 1:
        raise BadRequest("send one 'mask'", param="mask")
    return form_to_fields(form), files


@blueprint.post("/v1/images/generations")
async def generations() -> Response:
    pool = _pool()
    req = _wants_stream(parse_model(ImageRequest, await json_object()))
    return await _answer(pool, req, "generate", {})


@blueprint.post("/v1/images/edits")
async def edits() -> Response:
    pool = _pool()
    fields, files = await _multipart()
    req = _wants_stream(parse_model(ImageRequest, fields))
    if not req.prompt.strip():
        raise BadRequest("'prompt' is required", param="prompt")
    return await _answer(pool, req, "edit", files)


@blueprint.post("/v1/images/variations")
async def variations() -> Response:
    pool = _pool()
    fields, files = await _multipart()
    files.pop("mask", None)
    req = _wants_stream(parse_model(ImageRequest, fields))
    return await _answer(pool, req, "variation", {"image": files.get("image", [])[:1], **{
        k: v for k, v in files.items() if k not in ("image",)}})


@blueprint.get("/v1/images/lora-adapters")
async def lora_adapters() -> Response:
    s = services()
    if not s.settings.sd_enabled():
        return json_response([])
    return json_response([{"id": i, "name": name} for i, name in enumerate(sorted(_pool().setup.loras))])
