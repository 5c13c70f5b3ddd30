"""ATSC A/53 closed captions in the video bitstream survive the re-encode.

The input is made here: H.264 from x264 with ``a53cc``, every frame carrying ``A53_CC``
side data. PyAV 18.1 cannot add side data to a frame, so the generator does what
:mod:`vsr.media.captions` does: it decodes each frame's planes as one ``rawvideo`` packet
that carries ``a53_cc`` packet side data, and FFmpeg's decoder puts it on the frame.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from av.packet import PacketSideData, packet_sidedata_type_from_literal
from av.sidedata.sidedata import Type
from media_checks import mux_mono_audio

from vsr.config import RunConfig
from vsr.media.captions import CaptionedFrames, caption_decision, frame_captions
from vsr.media.frame import Frame
from vsr.media.probe import probe
from vsr.media.reader import Reader
from vsr.pipeline.engine import run
from vsr.pipeline.segments import run_segmented

W, H = 64, 48
FAST = {"model": "bicubic", "scale": 2, "device": "cpu"}


def cc_bytes(i: int) -> bytes:
    """Frame ``i``'s cc_data: two triplets (CEA-608 field 1 with two characters, then an
    empty field 2 one), different in every frame."""
    return bytes([0xFC, 0x41 + i % 26, 0x61 + i % 26, 0xFD, 0x80, 0x80])


def _captioned(decoder: Any, planes: np.ndarray, captions: bytes) -> Any:
    packet = av.Packet(planes.tobytes())
    make_side: Any = PacketSideData  # (type, size): public, but not in PyAV's stubs
    side = make_side(packet_sidedata_type_from_literal("a53_cc"), len(captions))
    memoryview(side)[:] = captions
    packet.set_sidedata(side)
    [frame] = decoder.decode(packet)
    frame.pict_type = 0  # not a forced keyframe
    return frame


def make_captioned(
    path: Path, *, frames: int = 10, rate: int = 25, interlaced: bool = False
) -> Path:
    """H.264 (B-frames) with A/53 captions on every frame (:func:`cc_bytes`), and mono AAC;
    ``interlaced``: MBAFF, frames flagged top field first (field order ``tt``)."""
    decoder = av.CodecContext.create("rawvideo", "r")
    decoder.width, decoder.height, decoder.pix_fmt = W, H, "yuv420p"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        ctx = video.codec_context
        ctx.options = {"preset": "ultrafast", "a53cc": "1", "bf": "2"}
        graph = None
        if interlaced:
            ctx.flags |= av.codec.context.Flags.interlaced_dct
            ctx.field_order = 2  # AV_FIELD_TT
            graph = av.filter.Graph()
            src = graph.add_buffer(width=W, height=H, format="yuv420p", time_base=Fraction(1, rate))
            graph.link_nodes(src, graph.add("setfield", "tff"), graph.add("buffersink")).configure()
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "mono"
        rng = np.random.default_rng(1)
        for i in range(frames):
            planes = rng.integers(16, 235, (H * 3 // 2, W), dtype=np.uint8)
            frame = _captioned(decoder, planes, cc_bytes(i))
            frame.pts, frame.time_base = i, Fraction(1, rate)
            if graph is not None:
                graph.push(frame)
                frame = graph.pull()
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        mux_mono_audio(out, sound, np.zeros(48000 * frames // rate, np.float32))
    return path


@pytest.fixture(scope="module")
def captioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_captioned(tmp_path_factory.mktemp("cc") / "cc.mp4")


def _captions(path: Path) -> list[bytes | None]:
    """Every frame's A53_CC bytes (display order), ``None`` where it has none."""
    with av.open(str(path)) as c:
        return [frame_captions(f) for f in c.decode(video=0)]


def _keyframes(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(video=0) if p.size and p.is_keyframe)


def _cfg(src: Path, out: Path, **kw: Any) -> RunConfig:
    return RunConfig.from_values({"input": src, "output": out, "quiet": True, **FAST, **kw})


EXPECTED = [cc_bytes(i) for i in range(10)]


def test_the_input_has_captions_and_the_reader_carries_them(captioned: Path) -> None:
    assert _captions(captioned) == EXPECTED
    assert probe(captioned).video.a53_captions
    with Reader(captioned) as reader:
        frames = list(reader.frames())
    assert [f.captions for f in frames] == EXPECTED


def test_a_frame_made_for_the_encoder_carries_side_data() -> None:
    made = CaptionedFrames()
    for pix_fmt, dtype in (("yuv420p", np.uint8), ("yuv420p10le", np.uint16)):
        planes = (
            np.full((H, W), 100, dtype),
            np.full((H // 2, W // 2), 120, dtype),
            np.full((H // 2, W // 2), 130, dtype),
        )
        frame = made.make(planes, pix_fmt, b"\xfc\x41\x42")
        assert frame.format.name == pix_fmt and (frame.width, frame.height) == (W, H)
        assert frame.pict_type == 0  # the encoder picks the frame type
        assert bytes(frame.side_data.get(Type.A53_CC)) == b"\xfc\x41\x42"
        assert np.array_equal(frame.to_ndarray()[:H], planes[0])
        # a conversion keeps them (the writer converts formats the encoder lacks)
        converted = frame.reformat(format="yuv444p")
        assert frame_captions(converted) == b"\xfc\x41\x42"


def test_decisions() -> None:
    assert caption_decision("libx264", source="a", frames=0, dropped=0) is None
    assert caption_decision("libx264", source="a", frames=3) == (
        "A/53 closed captions passed through (3 frames)"
    )
    dropped = caption_decision("libvpx-vp9", source="a", dropped=3)
    assert dropped is not None and dropped.startswith("captions dropped: libvpx-vp9")


@pytest.mark.slow
def test_run_passes_captions_through(captioned: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    report = run(_cfg(captioned, out))
    assert report.frames_out == 10
    assert report.fidelity["decisions"]["captions"] == (
        "A/53 closed captions passed through (10 frames)"
    )
    assert _captions(out) == EXPECTED
    assert _keyframes(out) == 1  # captioned frames are not forced to be keyframes


@pytest.mark.slow
def test_captions_survive_the_deinterlacer(tmp_path: Path) -> None:
    src = make_captioned(tmp_path / "tt.mp4", interlaced=True)
    assert probe(src).video.field_order == "tt"
    out = tmp_path / "out.mp4"
    report = run(_cfg(src, out))
    decisions = report.fidelity["decisions"]
    assert decisions["interlacing"].startswith("tt input deinterlaced with bwdif")
    assert decisions["captions"] == "A/53 closed captions passed through (10 frames)"
    assert _captions(out) == EXPECTED


@pytest.mark.slow
def test_resume_passes_captions_through(captioned: Path, tmp_path: Path) -> None:
    out = tmp_path / "seg.mp4"
    report = run_segmented(_cfg(captioned, out), segment_seconds=0.2)
    assert report.segments >= 2
    assert report.fidelity["decisions"]["captions"] == (
        "A/53 closed captions passed through (in the upscaled segments)"
    )
    assert _captions(out) == EXPECTED


@pytest.mark.slow
def test_an_encoder_without_a53_records_the_drop(captioned: Path, tmp_path: Path, caplog) -> None:
    out = tmp_path / "out.mkv"
    with caplog.at_level(logging.WARNING, logger="vsr"):
        report = run(_cfg(captioned, out, codec="libvpx-vp9"))
    decision = report.fidelity["decisions"]["captions"]
    assert decision == (
        "captions dropped: libvpx-vp9 cannot carry A/53 closed captions (10 frames had them)"
    )
    assert "closed captions" in caplog.text and "dropped" in caplog.text
    assert _captions(out) == [None] * 10


def test_frames_made_by_the_model_keep_the_captions() -> None:
    from vsr.backends.build import build_backend
    from vsr.backends.options import InferenceOptions

    backend = build_backend(InferenceOptions(model="bicubic", scale=2, device="cpu"))
    planes = (
        np.zeros((H, W), np.uint8),
        np.zeros((H // 2, W // 2), np.uint8),
        np.zeros((H // 2, W // 2), np.uint8),
    )
    frame = Frame(3, 7, Fraction(1, 25), planes, "yuv420p", captions=b"\xfc\x41\x42")
    [up] = backend.upscale([frame])
    assert (up.index, up.pts, up.captions, up.width) == (3, 7, b"\xfc\x41\x42", 2 * W)


@pytest.mark.slow
def test_batch_passes_captions_through(captioned: Path, tmp_path: Path) -> None:
    from vsr.batch.engine import batch_status, run_batch
    from vsr.batch.options import BatchConfig

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "cc.mp4").write_bytes(captioned.read_bytes())
    out = tmp_path / "out"
    cfg = BatchConfig(inputs=(str(folder),), out=out, options=dict(FAST), progress=False)
    assert run_batch(cfg).failed == 0
    (job,) = batch_status(out).jobs
    assert job.fidelity is not None
    assert job.fidelity["decisions"]["captions"] == (
        "A/53 closed captions passed through (10 frames)"
    )
    assert job.output is not None and _captions(Path(job.output)) == EXPECTED
