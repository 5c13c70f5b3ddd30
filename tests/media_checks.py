"""Helpers shared by the tests that compare media files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np


def packets(path: Path, kind: str) -> list[list[bytes]]:
    """Payload bytes of every packet, per stream of ``kind`` ('audio', 'subtitle')."""
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type == kind]
        out: dict[int, list[bytes]] = {s.index: [] for s in streams}
        for p in c.demux(streams):
            if p.size:
                out[p.stream.index].append(bytes(p))
        return [out[s.index] for s in streams]


def mux_mono_audio(out: Any, stream: Any, samples: np.ndarray, rate: int = 48000) -> None:
    """Encode ``samples`` (float32 mono) with ``stream`` in 1024-sample frames and mux
    them into ``out``, then flush the encoder."""
    for start in range(0, len(samples), 1024):
        chunk = samples[start : start + 1024].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
