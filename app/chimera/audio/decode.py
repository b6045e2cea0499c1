"""Any common audio container/codec → 16 kHz mono float32, with PyAV (FFmpeg's decoders and
resampler, bundled in the wheel). Runs inside the audio worker."""

from __future__ import annotations

import io

import numpy as np

RATE = 16_000


class AudioError(ValueError):
    """The bytes are not audio we can decode (→ 400 / 415)."""


def decode(data: bytes, max_seconds: float) -> np.ndarray:
    import av

    if not data:
        raise AudioError("the audio file is empty")
    try:
        with av.open(io.BytesIO(data)) as container:
            streams = [s for s in container.streams if s.type == "audio"]
            if not streams:
                raise AudioError("the file has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
            chunks: list[np.ndarray] = []
            total = 0
            for frame in container.decode(streams[0]):
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(-1)
                    chunks.append(arr)
                    total += arr.size
                    if total > max_seconds * RATE:
                        raise AudioError(f"the audio is longer than the server's --max-audio-seconds ({max_seconds:g} s)")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except Exception as e:  # noqa: BLE001 - FFmpeg's many error types all mean "not decodable"
        raise AudioError(f"the audio could not be decoded: {e}") from None
    if not chunks:
        raise AudioError("the audio stream holds no samples")
    return np.concatenate(chunks).astype(np.float32)
