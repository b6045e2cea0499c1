"""Slot KV-cache snapshots: save, restore and erase a slot (POST /slots/{id}?action=...).

Every operation runs on the engine thread between steps (`Engine.run_job`), so it never races a
decode. A slot that is processing a request answers 409 instead of being saved half-way or
overwritten. File names are checked before any path is built, and the final path must sit
directly in `--slot-save-path`: nothing outside that directory is read or written.
"""

from __future__ import annotations

import ctypes
import os
import re
import time
from pathlib import Path
from typing import Any

from ..errors import BadRequest, Conflict, NotEnabled, NotFound
from .engine import Engine

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def slot_file(directory: Path | None, filename: Any, action: str) -> Path:
    if directory is None:
        raise NotEnabled(f"slot {action} needs a directory for slot files", feature="slot-files")
    if not isinstance(filename, str) or not _NAME.match(filename) or ".." in filename:
        raise BadRequest("'filename' must be 1-128 characters of letters, digits, '_', '-' and '.', "
                         "with no path separators and no '..'", param="filename")
    root = directory.resolve()
    path = (root / filename).resolve()
    if path.parent != root:
        raise BadRequest("'filename' must name a file directly inside the slot save directory", param="filename")
    return path


def _slot(engine: Engine, slot_id: int) -> Any:
    if not 0 <= slot_id < engine.n_slots:
        raise NotFound(f"no slot {slot_id}: this server has slots 0..{engine.n_slots - 1}")
    slot = engine.slots[slot_id]
    if slot.seq is not None:
        raise Conflict(f"slot {slot_id} is processing a request; try again when it is idle")
    return slot


def save(engine: Engine, slot_id: int, path: Path) -> dict[str, Any]:
    """Engine thread."""
    slot = _slot(engine, slot_id)
    t0 = time.perf_counter()
    tokens = (ctypes.c_int32 * max(1, len(slot.cache)))(*slot.cache)
    tmp = path.with_name(path.name + ".tmp")
    written = int(engine.ll.llama_state_seq_save_file(engine.ctx, os.fsencode(tmp), slot.id, tokens, len(slot.cache)))
    if written == 0:
        tmp.unlink(missing_ok=True)
        raise BadRequest(f"slot {slot_id} could not be saved", param="filename")
    os.replace(tmp, path)  # a reader never sees a half-written file
    return {"id_slot": slot_id, "filename": path.name, "n_saved": len(slot.cache), "n_written": written,
            "timings": {"save_ms": round((time.perf_counter() - t0) * 1000, 3)}}


def restore(engine: Engine, slot_id: int, path: Path) -> dict[str, Any]:
    """Engine thread."""
    slot = _slot(engine, slot_id)
    if not path.is_file():
        raise NotFound(f"no slot file {path.name!r}")
    t0 = time.perf_counter()
    capacity = engine.n_ctx_slot
    tokens = (ctypes.c_int32 * capacity)()
    count = ctypes.c_size_t(0)
    engine.stepper.seq_rm(engine.stepper.mem, slot.id, -1, -1)
    slot.cache.clear()
    read = int(engine.ll.llama_state_seq_load_file(engine.ctx, os.fsencode(path), slot.id, tokens, capacity, ctypes.byref(count)))
    if read == 0:
        engine.stepper.seq_rm(engine.stepper.mem, slot.id, -1, -1)
        raise BadRequest(f"{path.name!r} is not a slot file for this model and slot size", param="filename")
    restored = tokens[: count.value]
    if engine.stepper.mtmd is None and any(t < 0 for t in restored):  # media chunks' placeholder ids
        engine.stepper.seq_rm(engine.stepper.mem, slot.id, -1, -1)
        raise BadRequest(f"{path.name!r} holds media (images or audio): Cannot restore media tokens without an mmproj "
                         "(start the server with --mmproj PATH)", param="filename")
    slot.cache.extend(restored)
    return {"id_slot": slot_id, "filename": path.name, "n_restored": count.value, "n_read": read,
            "timings": {"restore_ms": round((time.perf_counter() - t0) * 1000, 3)}}


def erase(engine: Engine, slot_id: int) -> dict[str, Any]:
    """Engine thread."""
    slot = _slot(engine, slot_id)
    n = len(slot.cache)
    engine.stepper.seq_rm(engine.stepper.mem, slot.id, -1, -1)
    slot.cache.clear()
    return {"id_slot": slot_id, "n_erased": n}
