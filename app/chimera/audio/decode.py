"""Any common audio container/codec → 16 kHz mono float32, with PyAV (FFmpeg's decoders and
resampler, bundled in the wheel). Runs inside the audio worker.

Errors are `WorkerInputError`s: 415 when the bytes are not a container we recognise (or hold no
audio), 400 when a recognised container is corrupt, 413 when the audio is longer than allowed.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..workers.frames import WorkerInputError

RATE = 16_000
ACCEPTED = "wav, mp3, flac, ogg/opus, m4a/mp4/aac, webm"

# leading bytes of the containers clients send; anything else that FFmpeg cannot open is a 415
_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"ID3", b"fLaC", b"OggS", b"\x1a\x45\xdf\xa3", b"FORM", b"caff", b"#!AMR")


def _recognised(data: bytes) -> bool:
    if data.startswith(_MAGIC) or data[4:8] == b"ftyp":
        return True
    # a bare MPEG audio frame (mp3 without ID3) or ADTS AAC: 11 sync bits set
    return len(data) > 1 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0


def decode(data: bytes, max_seconds: float) -> np.ndarray:
    import av

    if not data:
        raise WorkerInputError("the audio file is empty", param="file")
    try:
        with av.open(io.BytesIO(data)) as opened:
            container: Any = opened  # an input container (PyAV types both kinds as one)
            streams = [s for s in container.streams if s.type == "audio"]
            if not streams:
                raise WorkerInputError(f"the file holds no audio stream (accepted: {ACCEPTED})", 415, "file")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
            chunks: list[np.ndarray] = []
            total = 0
            for frame in container.decode(streams[0]):
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(-1)
                    chunks.append(arr)
                    total += arr.size
                    if total > max_seconds * RATE:
                        raise WorkerInputError(
                            f"the audio is longer than the server's --max-audio-seconds ({max_seconds:g} s)", 413, "file")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except WorkerInputError:
        raise
    except Exception as e:  # noqa: BLE001 - FFmpeg's many error types all mean "not decodable"
        if not _recognised(data):
            raise WorkerInputError(f"unsupported or unrecognised audio format (accepted: {ACCEPTED})", 415, "file") from None
        raise WorkerInputError(f"the audio could not be decoded: {e}", param="file") from None
    if not chunks:
        raise WorkerInputError("the audio stream holds no samples", param="file")
    return np.concatenate(chunks).astype(np.float32)
