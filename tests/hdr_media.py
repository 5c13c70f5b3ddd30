"""HDR test clips made with PyAV: 10-bit HEVC, BT.2020 / PQ, with HDR10 static metadata
(x265 SEI), optionally an HDR10+ SEI on the first frame or a Dolby Vision codec tag."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: x265 units: chromaticity in 1/50000, luminance in 1/10000 cd/m2 (the BT.2020 primaries,
#: D65, 1000 / 0.005 cd/m2)
MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
MAX_CLL = (1000, 400)


def _bits(fields: list[tuple[int, int]]) -> bytes:
    """``(value, width)`` fields packed MSB first, zero-padded to whole bytes."""
    acc = "".join(format(value, f"0{width}b") for value, width in fields)
    acc += "0" * (-len(acc) % 8)
    return int(acc, 2).to_bytes(len(acc) // 8, "big")


def _escape(rbsp: bytes) -> bytes:
    """Emulation prevention: 0x03 after two zero bytes when the next byte is <= 3."""
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def hdr10_plus_sei() -> bytes:
    """An Annex B HEVC prefix SEI NAL with one SMPTE ST 2094-40 (HDR10+) message: one
    window, no percentiles, no tone mapping."""
    body = _bits(
        [
            (1, 8),  # application_version
            (1, 2),  # num_windows
            (400, 27),  # targeted_system_display_maximum_luminance
            (0, 1),  # targeted_system_display_actual_peak_luminance_flag
            (10000, 17),  # maxscl R
            (9000, 17),  # maxscl G
            (8000, 17),  # maxscl B
            (1000, 17),  # average_maxrgb
            (0, 4),  # num_distribution_maxrgb_percentiles
            (0, 10),  # fraction_bright_pixels
            (0, 1),  # mastering_display_actual_peak_luminance_flag
            (0, 1),  # tone_mapping_flag
            (0, 1),  # color_saturation_mapping_flag
        ]
    )
    # ITU-T T.35: USA, Samsung, ST 2094-40, application identifier 4
    payload = bytes([0xB5, 0x00, 0x3C, 0x00, 0x01, 0x04]) + body
    sei = bytes([4, len(payload)]) + payload + b"\x80"  # user_data_registered_itu_t_t35
    return b"\x00\x00\x00\x01" + bytes([39 << 1, 1]) + _escape(sei)


def make_hdr_clip(
    path: Path,
    *,
    width: int = 64,
    height: int = 48,
    frames: int = 8,
    rate: Fraction = Fraction(24),
    master_display: str | None = MASTER_DISPLAY,
    max_cll: tuple[int, int] | None = MAX_CLL,
    hdr10_plus: bool = False,
    codec_tag: str | None = None,
) -> Path:
    """A 10-bit HEVC clip (libx265, ``yuv420p10le``) tagged BT.2020 / smpte2084 /
    bt2020nc, limited range, with the given x265 ``master-display`` and ``max-cll``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    params = ["log-level=error"]
    if master_display:
        params.append(f"master-display={master_display}")
    if max_cll:
        params.append(f"max-cll={max_cll[0]},{max_cll[1]}")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx265", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p10le"
        if codec_tag:
            stream.codec_tag = codec_tag
        ctx = stream.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = 9, 16, 9, 1
        ctx.options = {"preset": "ultrafast", "x265-params": ":".join(params)}
        tb = 1 / rate
        yy, xx = np.mgrid[0:height, 0:width]
        packets = []
        for i in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p10le")
            luma = (64 + (xx * 12 + yy * 5 + i * 40) % 876).astype(np.uint16)
            chroma = np.full((height // 2, width // 2), 512 + i * 8, np.uint16)
            for plane, data in zip(frame.planes, (luma, chroma, chroma), strict=True):
                row = plane.line_size // 2
                view = np.frombuffer(plane, np.uint16).reshape(plane.height, row)
                view[:, : plane.width] = data
            frame.pts, frame.time_base = i, tb
            packets += stream.encode(frame)
        packets += stream.encode(None)
        for n, packet in enumerate(packets):
            if hdr10_plus and n == 0:  # the first packet is the first frame's (IDR)
                data = hdr10_plus_sei() + bytes(packet)
                new = av.Packet(data)
                new.pts, new.dts, new.time_base = packet.pts, packet.dts, packet.time_base
                new.is_keyframe = packet.is_keyframe
                new.stream = stream
                packet = new
            out.mux(packet)
    return path
