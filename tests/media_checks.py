"""Helpers shared by the tests that compare media files."""

from __future__ import annotations

from pathlib import Path

import av


def packets(path: Path, kind: str) -> list[list[bytes]]:
    """Payload bytes of every packet, per stream of ``kind`` ('audio', 'subtitle')."""
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type == kind]
        out: dict[int, list[bytes]] = {s.index: [] for s in streams}
        for p in c.demux(streams):
            if p.size:
                out[p.stream.index].append(bytes(p))
        return [out[s.index] for s in streams]
