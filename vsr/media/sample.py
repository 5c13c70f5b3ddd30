"""Generate small synthetic clips (and broken files) with PyAV alone.

:func:`make_sample_clip` is used by ``vsr demo`` and by the test fixtures: moving
gradients, hard-edged circles, text-like stripes and fine checker texture (so upscaling
is visible), a real sine-tone audio track, and optional subtitles, rotation, colour tags,
variable frame rate and 10-bit output.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vsr.media.color import apply_color, normalize_color, rgb_to_yuv, subsample, to_code
from vsr.media.encode import to_av_frame
from vsr.media.frame import PLANAR_FORMATS, ColorInfo
from vsr.media.routes import DEFAULT_ASS_HEADER

__all__ = ["damage_file", "make_corrupt_file", "make_sample_clip", "truncate_file"]

# Subtitle codec each container family writes for text.
_SUBTITLE_CODECS = {"matroska": "subrip", "mp4": "mov_text", "mov": "mov_text", "webm": "webvtt"}
_LANGUAGES = ("eng", "fra", "deu", "spa")
AUDIO_RATE = 48000


def _rgb_frame(
    i: int, t: float, width: int, height: int, glyphs: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """One RGB frame in [0, 1], shape (height, width, 3), for frame ``i`` at ``t`` seconds."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / max(width - 1, 1), y / max(height - 1, 1)
    rgb = np.empty((height, width, 3), dtype=np.float64)
    # Moving colour gradients.
    rgb[..., 0] = 0.5 + 0.4 * np.sin(2 * np.pi * (u + 0.25 * t))
    rgb[..., 1] = 0.15 + 0.7 * v
    rgb[..., 2] = 0.5 + 0.4 * np.cos(2 * np.pi * (u * 0.7 - v * 0.5 - 0.2 * t))
    rgb += noise  # a little static grain
    # Fine checker texture in the top-left quarter (period 4 px).
    checker = ((x.astype(int) // 2 + y.astype(int) // 2) % 2).astype(bool)
    quarter = (x < width / 4) & (y < height / 4)
    rgb[checker & quarter] = 0.9
    rgb[~checker & quarter] = 0.1
    # Hard-edged circles moving on Lissajous paths.
    r = max(3.0, min(width, height) / 6)
    for k, colour in enumerate(((1.0, 0.9, 0.1), (0.1, 0.9, 1.0), (1.0, 0.2, 0.6))):
        cx = width * (0.5 + 0.35 * np.sin(2 * np.pi * (0.3 + 0.1 * k) * t + k))
        cy = height * (0.5 + 0.35 * np.cos(2 * np.pi * (0.2 + 0.07 * k) * t + 2 * k))
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= (r * (1 - 0.2 * k)) ** 2
        rgb[inside] = colour
    # "Text": rows of dark glyph blocks on a light band, scrolling left.
    band_top, line_h = int(height * 0.7), max(2, height // 40)
    band_h = min(height - band_top, 3 * 2 * line_h)
    if band_h > 0:
        rgb[band_top : band_top + band_h] = 0.92
        shift = (2 * i) % glyphs.shape[1]
        rows = np.roll(glyphs, -shift, axis=1)
        for line in range(3):
            top = band_top + line * 2 * line_h + line_h // 2
            if top + line_h > band_top + band_h:
                break
            row = np.resize(rows[line], width)
            dark = np.repeat(row[None, :], line_h, axis=0)
            patch = rgb[top : top + line_h]
            patch[dark] = 0.05
    return np.clip(rgb, 0.0, 1.0)


def _glyph_rows(rng: np.random.Generator, width: int) -> np.ndarray:
    """Three rows of word-like on/off runs (True = ink), wider than the frame."""
    n = max(64, 2 * width)
    rows = np.zeros((3, n), dtype=bool)
    for line in range(3):
        pos = 0
        while pos < n:
            word = int(rng.integers(3, 9)) * 3
            for j in range(pos, min(pos + word, n)):
                rows[line, j] = (j - pos) % 3 != 2 and rng.random() < 0.85
            pos += word + 4
    return rows


def _audio_chunk(start: int, count: int, freq: float, channels: int) -> np.ndarray:
    """Sine tone with a slow amplitude wobble, float32 planar (channels, count)."""
    t = (start + np.arange(count)) / AUDIO_RATE
    amp = 0.25 + 0.15 * np.sin(2 * np.pi * 0.75 * t)
    tone = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(tone[None, :], channels, axis=0)


def _video_options(codec: str, bframes: bool) -> dict[str, str]:
    if codec in ("libx264", "libx265"):
        opts = {"preset": "veryfast"}
        if codec == "libx265":
            opts["x265-params"] = "log-level=error" + ("" if bframes else ":bframes=0")
        return opts
    if codec == "libvpx-vp9":
        return {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    if codec == "libsvtav1":
        return {"preset": "12", "svtav1-params": "progress=0"}
    return {}


def make_sample_clip(
    path: str | os.PathLike[str],
    *,
    width: int = 320,
    height: int = 240,
    frames: int = 48,
    rate: Fraction = Fraction(24),
    audio: bool = True,
    audio_tracks: int = 1,
    audio_codec: str | None = None,
    video_codec: str | None = None,
    pix_fmt: str = "yuv420p",
    vfr: bool = False,
    subtitles: bool = False,
    rotation: int = 0,
    color: ColorInfo | None = None,
    bframes: bool = True,
    seed: int = 0,
    faststart: bool = False,
) -> Path:
    """Write a short synthetic clip to ``path``; the container follows the extension.

    Video: ``frames`` frames of ``width`` x ``height`` ``pix_fmt`` at ``rate`` (time base
    ``1/rate``). With ``vfr`` the time base is ``1/(2*rate)`` and frame durations alternate
    1 and 2 ticks (average rate ``4/3 * rate``). Default codec: libvpx-vp9 for WebM and
    for odd sizes with subsampled chroma (x264 refuses those), libx264 otherwise
    (B-frames on unless ``bframes=False``). ``color`` tags the stream
    and is used for the RGB -> YUV conversion (untagged: BT.601/709 by height, limited).
    ``rotation`` (degrees counter-clockwise) is written as a display matrix.

    Audio: ``audio_tracks`` sine tones (440 Hz, 660 Hz, ...; first stereo, others mono,
    languages eng, fra, ...) at 48 kHz lasting as long as the video; codec Opus for WebM,
    AAC otherwise. ``subtitles`` adds a text track (SubRip in Matroska, mov_text in
    MP4/MOV, WebVTT in WebM) with a cue every half second. ``faststart`` puts the MP4
    index first (so a truncated copy stays readable).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    out_path = Path(path)
    if pix_fmt not in PLANAR_FORMATS:
        raise ValueError(f"pix_fmt must be one of {', '.join(PLANAR_FORMATS)}")
    rate = Fraction(rate)
    depth, sx, sy = PLANAR_FORMATS[pix_fmt]
    tags = normalize_color(color) if color is not None else ColorInfo()
    rng = np.random.default_rng(seed)
    glyphs = _glyph_rows(rng, width)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+faststart"} if faststart else {}
    container: Any = av.open(str(out_path), "w", options=options)
    try:
        fmt = container.format.name
        odd = (width % 2 and sx) or (height % 2 and sy)
        # x264/x265 refuse odd 4:2:0/4:2:2 sizes; VP9 takes them.
        vcodec = video_codec or ("libvpx-vp9" if fmt == "webm" or odd else "libx264")
        time_base = 1 / (2 * rate) if vfr else 1 / rate
        avg_rate = rate * Fraction(4, 3) if vfr else rate
        stream = container.add_stream(vcodec, rate=avg_rate)
        ctx = stream.codec_context
        ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
        ctx.time_base = time_base
        stream.time_base = time_base
        ctx.gop_size = 12
        ctx.max_b_frames = 2 if bframes else 0
        ctx.options = _video_options(vcodec, bframes)
        apply_color(ctx, tags)
        if rotation:
            stream.set_display_rotation(rotation)

        # Presentation times in ticks of time_base.
        if vfr:
            pts_list = [0]
            for k in range(1, frames):
                pts_list.append(pts_list[-1] + (1 if k % 2 else 2))
            end_ticks = pts_list[-1] + (1 if frames % 2 else 2)
        else:
            pts_list = list(range(frames))
            end_ticks = frames
        total_seconds = end_ticks * time_base
        total_samples = int(total_seconds * AUDIO_RATE)

        tracks: list[tuple[Any, float, int]] = []
        if audio:
            acodec = audio_codec or ("libopus" if fmt == "webm" else "aac")
            for k in range(max(1, audio_tracks)):
                channels = 2 if k == 0 else 1
                layout = "stereo" if channels == 2 else "mono"
                astream = container.add_stream(acodec, rate=AUDIO_RATE, layout=layout)
                astream.metadata["language"] = _LANGUAGES[k % len(_LANGUAGES)]
                freq = 440.0 * (1.5**k)
                astream.metadata["title"] = f"Tone {freq:g} Hz"
                tracks.append((astream, freq, channels))

        # Container title and two chapters (halves), so metadata copying can be checked.
        container.metadata["title"] = "vsr sample clip"
        total_ms = int(end_ticks * time_base * 1000)
        container.set_chapters(
            [
                {
                    "id": k + 1,
                    "start": k * total_ms // 2,
                    "end": (k + 1) * total_ms // 2,
                    "time_base": Fraction(1, 1000),
                    "metadata": {"title": f"Part {k + 1}"},
                }
                for k in range(2)
            ]
        )

        sub_stream = None
        if subtitles:
            sub_stream = container.add_stream(_SUBTITLE_CODECS.get(fmt, "subrip"))
            sub_stream.time_base = Fraction(1, 1000)
            sub_stream.codec_context.time_base = Fraction(1, 1000)
            sub_stream.codec_context.subtitle_header = DEFAULT_ASS_HEADER
            sub_stream.metadata["language"] = "eng"

        grain = rng.normal(0.0, 0.02, (height, width, 1))
        audio_done = 0
        chunk = 1024
        for i, pts in enumerate(pts_list):
            t = float(pts * time_base)
            rgb = _rgb_frame(i, t, width, height, glyphs, grain)
            y, u, v = rgb_to_yuv(rgb, tags, depth)
            planes = (
                to_code(y, depth),
                to_code(subsample(u, sx, sy), depth),
                to_code(subsample(v, sx, sy), depth),
            )
            vframe = to_av_frame(planes, pix_fmt)
            apply_color(vframe, tags)
            vframe.pts = pts
            vframe.time_base = time_base
            for packet in stream.encode(vframe):
                container.mux(packet)
            # Audio up to the end of this frame, so the muxer interleaves nicely.
            frame_end = pts_list[i + 1] if i + 1 < len(pts_list) else end_ticks
            until = min(total_samples, int(frame_end * time_base * AUDIO_RATE))
            while tracks and audio_done < until:
                n = min(chunk, total_samples - audio_done)
                for astream, freq, channels in tracks:
                    data = _audio_chunk(audio_done, n, freq, channels)
                    aframe = av.AudioFrame.from_ndarray(
                        data, format="fltp", layout="stereo" if channels == 2 else "mono"
                    )
                    aframe.sample_rate = AUDIO_RATE
                    aframe.pts = audio_done
                    aframe.time_base = Fraction(1, AUDIO_RATE)
                    for packet in astream.encode(aframe):
                        container.mux(packet)
                audio_done += n
        for packet in stream.encode(None):
            container.mux(packet)
        for astream, _, _ in tracks:
            for packet in astream.encode(None):
                container.mux(packet)
        if sub_stream is not None:
            step_ms = 500
            for cue, start in enumerate(range(0, max(total_ms - 100, 1), step_ms)):
                text = f"0,0,Default,,0,0,0,,Line {cue + 1}".encode()
                length = min(400, total_ms - start)
                cue_set = av.subtitles.subtitle.SubtitleSet.create(text, 0, length, pts=start)
                packet = sub_stream.codec_context.encode_subtitle(cue_set)
                packet.stream = sub_stream
                packet.time_base = Fraction(1, 1000)
                container.mux(packet)
    except BaseException:
        container.close()
        out_path.unlink(missing_ok=True)
        raise
    container.close()
    return out_path


def truncate_file(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], fraction: float
) -> Path:
    """Copy the first ``fraction`` (0..1) of ``src``'s bytes to ``dst``, like a cut download."""
    data = Path(src).read_bytes()
    out = Path(dst)
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def make_corrupt_file(dst: str | os.PathLike[str], *, size: int = 4096, seed: int = 0) -> Path:
    """Write bytes that no demuxer accepts (random data after a bogus text line)."""
    rng = np.random.default_rng(seed)
    out = Path(dst)
    out.write_bytes(b"this is not a video\n" + rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return out


def damage_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    start: float = 0.4,
    length: float = 0.1,
    seed: int = 0,
) -> Path:
    """Copy ``src`` to ``dst`` with a run of random bytes over the middle of the file
    (from ``start`` for ``length``, fractions of the size): header intact, data damaged."""
    data = bytearray(Path(src).read_bytes())
    a = int(len(data) * start)
    b = min(len(data), a + max(1, int(len(data) * length)))
    rng = np.random.default_rng(seed)
    data[a:b] = rng.integers(0, 256, b - a, dtype=np.uint8).tobytes()
    out = Path(dst)
    out.write_bytes(bytes(data))
    return out
