"""Which video encoder: the output container's usual one (:func:`default_codec`), whether
a container holds an encoder's video (:func:`container_holds`, :func:`check_container`),
``--codec auto`` (:func:`resolve_codec`: NVENC on CUDA when it opens, else software), and
whether this FFmpeg has an encoder at all (:func:`check_encoder`). The encoder itself is
:class:`vsr.media.encode.VideoEncoder`.
"""

from __future__ import annotations

import functools
import io
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from vsr.errors import UsageError
from vsr.media.frame import PLANAR_FORMATS

__all__ = [
    "AUTO_CODECS",
    "KNOWN_ENCODERS",
    "NVENC_DEFAULT_CQ",
    "check_container",
    "check_encoder",
    "container_holds",
    "default_codec",
    "encoder_available",
    "encoder_opens",
    "fitting_encoders",
    "output_format",
    "resolve_codec",
]

log = logging.getLogger("vsr")

#: Video encoders the writer knows how to configure (others get generic options).
KNOWN_ENCODERS = ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "h264_nvenc", "hevc_nvenc")
#: ``codec`` values resolved per run: (NVENC encoder tried on CUDA, software fallbacks).
AUTO_CODECS: dict[str, tuple[str, tuple[str, ...]]] = {
    "auto": ("h264_nvenc", ("libx264",)),
    "auto-hevc": ("hevc_nvenc", ("libx265", "libx264")),
}
#: NVENC's ``cq`` when ``auto`` picked it and no crf was given: the software encoder's
#: default crf (x264 23, x265 28), so that ``auto`` keeps a comparable quality.
NVENC_DEFAULT_CQ = {"h264_nvenc": 23, "hevc_nvenc": 28}


# -- encoder policy ------------------------------------------------------------------------


def encoder_available(codec: str) -> bool:
    """True if this FFmpeg build has the encoder ``codec`` (hardware may still be missing)."""
    try:
        av.Codec(codec, "w")
    except (ValueError, av.error.FFmpegError):
        return False
    return True


@functools.lru_cache(maxsize=16)
def encoder_opens(codec: str, pix_fmt: str = "yuv420p") -> bool:
    """Whether ``codec`` really opens here for ``pix_fmt`` (a tiny 256x256 encoder is
    opened and dropped): hardware encoders need their device and driver, which
    :func:`encoder_available` cannot tell. Cached per process."""
    if not encoder_available(codec):
        return False
    try:
        ctx: Any = av.CodecContext.create(codec, "w")
        ctx.width = ctx.height = 256
        ctx.pix_fmt = pix_fmt
        ctx.time_base = Fraction(1, 25)
        ctx.framerate = Fraction(25)
        ctx.open()
    except Exception as exc:  # any failure means "not usable here"
        log.debug("encoder %s (%s) does not open: %s", codec, pix_fmt, exc)
        return False
    return True


@functools.lru_cache(maxsize=64)
def _format_for_suffix(suffix: str) -> str | None:
    buf = io.BytesIO()
    buf.name = f"output{suffix}"  # FFmpeg guesses the muxer from the name
    try:
        with av.open(buf, "w") as test:
            return str(test.format.name)
    except (av.error.FFmpegError, ValueError, TypeError):
        return None


def output_format(path: str | os.PathLike[str]) -> str | None:
    """The muxer FFmpeg picks for ``path`` by its extension (``mp4``, ``matroska``,
    ``webm``, ``mpegts``...), found in memory (nothing is written); ``None`` when the
    extension names no container."""
    return _format_for_suffix(Path(path).suffix.lower())


@functools.lru_cache(maxsize=64)
def container_holds(format_name: str, codec: str) -> bool:
    """Whether the ``format_name`` muxer (``webm``, ``mp4``...) can hold video (or audio)
    encoded by ``codec``: an in-memory mux test, nothing is written and no encoder opened.
    Cached per process."""
    try:
        with av.open(io.BytesIO(), "w", format=format_name) as test:
            test.add_stream(codec)
    except (av.error.FFmpegError, ValueError, TypeError):
        return False
    return True


#: How messages name FFmpeg's muxers.
_CONTAINER_NAMES = {
    "webm": "WebM",
    "mp4": "MP4",
    "mov": "MOV",
    "ipod": "MP4 (m4v)",
    "matroska": "Matroska",
    "mpegts": "MPEG-TS",
    "flv": "FLV",
    "avi": "AVI",
}


def _high_depth(codec: str) -> bool:
    """Whether ``codec`` takes a planar format deeper than 8 bits here."""
    formats = [f.name for f in (av.Codec(codec, "w").video_formats or ())]
    return any(PLANAR_FORMATS[f][0] > 8 for f in formats if f in PLANAR_FORMATS)


def default_codec(format_name: str, *, bit_depth: int = 8, hdr: bool = False) -> tuple[str, str]:
    """The encoder ``vsr run`` uses when no ``--codec`` is given, for an output in the
    ``format_name`` muxer (see :func:`output_format`), and why: ``(encoder, reason)``.

    The policy, first that is available here and that the container holds:

    - ``hdr`` (PQ or HLG transfer): libx265, 10-bit HEVC (where the source is 10-bit);
    - WebM: libvpx-vp9 (the audio is copied as it is: Opus and Vorbis fit);
      with ``bit_depth`` > 8 and a libvpx built for 8 bits only: libsvtav1 (10-bit AV1,
      which also carries HDR);
    - every other container (MP4, MOV, Matroska, MPEG-TS, FLV, AVI): libx264; with
      ``bit_depth`` > 8 and a libx264 built for 8 bits only: libx265;
    - else the first software encoder the container holds.
    """
    name = _CONTAINER_NAMES.get(format_name, format_name)
    usual = "libvpx-vp9" if format_name == "webm" else "libx264"
    choices: list[tuple[str, str]] = []
    if hdr:
        choices.append(("libx265", "HDR source: 10-bit HEVC"))
    if bit_depth > 8 and encoder_available(usual) and not _high_depth(usual):
        deep = "libsvtav1" if format_name == "webm" else "libx265"
        choices.append((deep, f"{bit_depth}-bit source; this {usual} is 8-bit only"))
    hevc_refused = hdr and not container_holds(format_name, "libx265")
    note = f"; {name} cannot hold HEVC for HDR" if hevc_refused else ""
    choices.append((usual, f"{name}'s usual encoder{note}"))
    choices += [
        (c, f"{usual} is not usable for {name} here{note}")
        for c in ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "mpeg4")
        if c != usual
    ]
    for codec, reason in choices:
        if encoder_available(codec) and container_holds(format_name, codec):
            return codec, reason
    return usual, f"{name}'s usual encoder"  # the Writer reports what is missing


def fitting_encoders(format_name: str) -> list[str]:
    """The software encoders vsr knows that are available here and that ``format_name``
    holds (for hints)."""
    return [
        c
        for c in KNOWN_ENCODERS
        if not c.endswith("_nvenc") and encoder_available(c) and container_holds(format_name, c)
    ]


def _on_cuda(device: str) -> bool:
    name = device.strip().lower()
    if name == "auto":
        try:
            import torch
        except ImportError:
            return False
        return bool(torch.cuda.is_available())
    return name.startswith("cuda")


def resolve_codec(
    codec: str | None,
    *,
    device: str = "auto",
    pix_fmt: str | None = None,
    format_name: str | None = None,
    hdr: bool = False,
) -> str:
    """The encoder to use for ``codec``: itself; for ``None`` the output container's
    default (:func:`default_codec` for ``format_name`` at ``pix_fmt``'s bit depth, ``hdr``:
    a PQ/HLG source); for ``auto`` (``auto-hevc``) ``h264_nvenc`` (``hevc_nvenc``) when
    ``device`` is CUDA (``auto``: CUDA when torch sees a GPU) and that encoder opens here
    for ``pix_fmt``'s bit depth, else ``libx264`` (``libx265``, else ``libx264``).

    Raises:
        ValueError: ``codec`` is ``None`` and no ``format_name`` is given.
    """
    if codec is None:
        if format_name is None:
            raise ValueError("the default encoder depends on the output container: no format")
        depth = PLANAR_FORMATS.get(pix_fmt or "yuv420p", (8, 1, 1))[0]
        return default_codec(format_name, bit_depth=depth, hdr=hdr)[0]
    if codec not in AUTO_CODECS:
        return codec
    nvenc, fallbacks = AUTO_CODECS[codec]
    # the format choose_pix_fmt would hand NVENC: p010le for 10-bit, else 4:4:4 or 4:2:0
    wanted = pix_fmt or "yuv420p"
    if PLANAR_FORMATS.get(wanted, (8, 1, 1))[0] > 8:
        probe_fmt = "p010le"
    else:
        probe_fmt = "yuv444p" if wanted == "yuv444p" else "yuv420p"
    if _on_cuda(device) and encoder_opens(nvenc, probe_fmt):
        return nvenc
    return next((c for c in fallbacks if encoder_available(c)), fallbacks[-1])


def check_encoder(codec: str | None) -> None:
    """Raise UsageError (exit 2) when this FFmpeg build has no encoder ``codec``
    (for ``auto``: not even its software fallback). ``None`` (the output container's
    default, which :func:`default_codec` picks among the available ones) passes."""
    if codec is None:
        return
    if codec in AUTO_CODECS:
        codec = resolve_codec(codec, device="cpu")
    if not encoder_available(codec):
        known = ", ".join(c for c in KNOWN_ENCODERS if encoder_available(c))
        raise UsageError(
            f"video encoder {codec!r} is not available in this FFmpeg build",
            hint=f"available: {known}",
        )


def check_container(format_name: str, codec: str | None) -> None:
    """Raise UsageError (exit 2) when the ``format_name`` container cannot hold video
    encoded by ``codec`` (``auto``: by its software fallback, the same format as NVENC's;
    ``None``: the container's default, which always fits), naming encoders that fit."""
    if codec is None:
        return
    if codec in AUTO_CODECS:
        codec = resolve_codec(codec, device="cpu")
    if container_holds(format_name, codec):
        return
    first = default_codec(format_name)[0]
    fits = sorted(fitting_encoders(format_name), key=lambda c: c != first)
    listed = " or ".join([", ".join(fits[:-1]), fits[-1]] if len(fits) > 1 else fits)
    raise UsageError(
        f"the {format_name} container cannot hold {codec} video",
        hint=f"use --codec {listed}, or another output extension"
        if fits
        else "use another output extension",
    )
