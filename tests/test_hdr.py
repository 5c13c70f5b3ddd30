"""HDR metadata (#14): HDR10 static metadata read exactly from the source, written by the
encoders that can carry it (x265, x264, SVT-AV1) through ``vsr run``, ``vsr run --resume``
and ``vsr batch``, reported in the fidelity report; dropped with a warning where the
encoder cannot carry it; dynamic HDR (HDR10+, Dolby Vision) detected and reported as
dropped."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from hdr_media import MASTER_DISPLAY, hdr10_plus_sei, make_hdr_clip
from inline_engine import InlineEngine
from typer.testing import CliRunner

from vsr.batch.engine import run_batch
from vsr.batch.options import BatchConfig
from vsr.cli import app
from vsr.config import RunConfig
from vsr.media.fidelity import Fidelity
from vsr.media.hdr import (
    HdrMetadata,
    dynamic_hdr_from,
    hdr10_carried,
    hdr10_options,
    hdr10_params,
    merge_params,
    record_hdr,
)
from vsr.media.probe import probe
from vsr.media.sample import make_sample_clip
from vsr.pipeline.engine import run
from vsr.pipeline.segments import run_segmented

FAST = {"model": "bicubic", "scale": 2, "device": "cpu"}
STATIC = ("MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL")

#: what MASTER_DISPLAY and max-cll=1000,400 say, exactly
EXPECTED = HdrMetadata(
    red=(Fraction(34000, 50000), Fraction(16000, 50000)),
    green=(Fraction(13250, 50000), Fraction(34500, 50000)),
    blue=(Fraction(7500, 50000), Fraction(3000, 50000)),
    white_point=(Fraction(15635, 50000), Fraction(16450, 50000)),
    max_luminance=Fraction(1000),
    min_luminance=Fraction(50, 10000),
    max_cll=1000,
    max_fall=400,
)


@pytest.fixture(scope="module")
def hdr_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 9 frames: segments of 3 at 0.125 s (libx265 via FFmpeg gives garbage dts for encodes
    # of 1-2 frames, which MP4 refuses: see the report of #14)
    return make_hdr_clip(tmp_path_factory.mktemp("hdr") / "hdr.mp4", frames=9)


def _side_data(path: Path) -> dict[str, bytes]:
    """The first decoded frame's side data by type (SEI_UNREGISTERED left out)."""
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        return {
            sd.type.name: bytes(sd) for sd in frame.side_data if sd.type.name != "SEI_UNREGISTERED"
        }


def _assert_hdr10_kept(src: Path, out: Path) -> None:
    """``out``'s first frame carries the same HDR10 side data as ``src``'s, and the
    stream is still 10-bit BT.2020 / PQ."""
    want, got = _side_data(src), _side_data(out)
    for name in STATIC:
        assert got.get(name) == want[name], name
    video = probe(out).video
    assert video.hdr == EXPECTED
    assert video.pix_fmt == "yuv420p10le" and video.bit_depth == 10
    assert (video.color.primaries, video.color.transfer, video.color.matrix) == (
        "bt2020",
        "smpte2084",
        "bt2020nc",
    )


def _hdr_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "HDR" in r.getMessage()
    ]


# -- reading -------------------------------------------------------------------------------


def test_probe_reads_hdr10_static_metadata_exactly(hdr_clip: Path) -> None:
    video = probe(hdr_clip).video
    assert video.hdr == EXPECTED
    assert video.hdr.has_mastering_display and video.hdr.has_content_light
    assert video.dynamic_hdr == ()
    assert video.hdr.describe() == (
        "mastering display R(0.68,0.32) G(0.265,0.69) B(0.15,0.06) WP(0.3127,0.329) "
        "L(1000,0.005) cd/m2, MaxCLL 1000, MaxFALL 400"
    )


def test_content_light_alone_and_sdr_input(tmp_path: Path) -> None:
    only_cll = make_hdr_clip(tmp_path / "cll.mkv", frames=3, master_display=None)
    hdr = probe(only_cll).video.hdr
    assert hdr == HdrMetadata(max_cll=1000, max_fall=400)
    assert hdr10_params("libx265", hdr) == {
        "hdr10": "1",
        "repeat-headers": "1",
        "max-cll": "1000,400",
    }
    sdr = make_sample_clip(tmp_path / "sdr.mp4", width=64, height=48, frames=2, audio=False)
    assert (probe(sdr).video.hdr, probe(sdr).video.dynamic_hdr) == (None, ())


def test_dynamic_hdr_is_detected(tmp_path: Path) -> None:
    plus = make_hdr_clip(tmp_path / "plus.mp4", frames=3, hdr10_plus=True)
    assert probe(plus).video.dynamic_hdr == ("HDR10+",)
    assert probe(plus).video.hdr == EXPECTED
    dv = make_hdr_clip(tmp_path / "dv.mp4", frames=3, codec_tag="dvh1")
    assert probe(dv).video.dynamic_hdr == ("Dolby Vision",)
    assert dynamic_hdr_from(None) == ()
    assert hdr10_plus_sei().startswith(b"\x00\x00\x00\x01\x4e\x01\x04")


# -- the encoder parameters ----------------------------------------------------------------


def test_encoder_parameters_in_each_encoders_units() -> None:
    x265 = hdr10_params("libx265", EXPECTED)
    assert x265 == {
        "hdr10": "1",
        "repeat-headers": "1",
        "master-display": MASTER_DISPLAY,
        "max-cll": "1000,400",
    }
    assert hdr10_params("libx264", EXPECTED) == {
        "mastering-display": MASTER_DISPLAY,
        "cll": "1000,400",
    }
    assert hdr10_params("libsvtav1", EXPECTED) == {
        "mastering-display": "G(0.265,0.69)B(0.15,0.06)R(0.68,0.32)WP(0.3127,0.329)L(1000,0.005)",
        "content-light": "1000,400",
    }
    for codec in ("libvpx-vp9", "hevc_nvenc", "h264_nvenc", "mpeg4"):
        assert hdr10_params(codec, EXPECTED) == {}


def test_parameters_merge_without_clobbering() -> None:
    opts = {"preset": "veryfast", "x265-params": "log-level=error:max-cll=0,0"}
    merged = hdr10_options("libx265", opts, EXPECTED)
    assert merged["x265-params"] == (
        f"log-level=error:max-cll=0,0:hdr10=1:repeat-headers=1:master-display={MASTER_DISPLAY}"
    )  # an explicit max-cll wins, log-level stays
    assert merged["preset"] == "veryfast" and opts["x265-params"] == "log-level=error:max-cll=0,0"
    assert hdr10_options("libx265", opts, None) == opts
    assert hdr10_options("libvpx-vp9", {"crf": "30"}, EXPECTED) == {"crf": "30"}
    assert merge_params(None, {"a": "1"}) == "a=1"
    assert hdr10_options("libsvtav1", {}, EXPECTED)["svtav1-params"].startswith(
        "mastering-display="
    )


def test_which_encoders_carry_it_here() -> None:
    """Measured by a one-frame encode read back (this FFmpeg build)."""
    assert hdr10_carried("libx265") and hdr10_carried("libx264") and hdr10_carried("libsvtav1")
    assert not hdr10_carried("libvpx-vp9") and not hdr10_carried("hevc_nvenc")


def test_record_says_nothing_for_sdr_and_warns_once_per_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    f = Fidelity()
    record_hdr(f, hdr=None, dynamic=(), codec="libx264", source="/x/sdr.mp4")
    assert f.decisions == {}
    with caplog.at_level(logging.WARNING, logger="vsr"):
        for _ in range(3):  # a --resume run: a Writer per segment, then the join
            record_hdr(f, hdr=EXPECTED, dynamic=("HDR10+",), codec="libvpx-vp9", source="/x/a.mp4")
    assert f.decisions["hdr"] == "HDR10 metadata dropped: libvpx-vp9 cannot carry it"
    assert f.decisions["dynamic_hdr"].startswith("dropped: HDR10+ (")
    warnings = _hdr_warnings(caplog)
    assert len(warnings) == 2  # one for HDR10, one for HDR10+
    assert warnings[1].endswith("the output keeps the colour tags only")
    # a mastering display without primaries cannot be written; the content light level can
    lum_only = HdrMetadata(max_luminance=Fraction(1000), min_luminance=Fraction(1, 200))
    f = Fidelity()
    record_hdr(
        f,
        hdr=replace(lum_only, max_cll=10, max_fall=5),
        dynamic=(),
        codec="libx265",
        source="/x/b.mp4",
    )
    assert f.decisions["hdr"] == (
        "HDR10 kept: MaxCLL 10, MaxFALL 5 "
        "(the source's mastering display is incomplete: not written)"
    )
    assert hdr10_params("libx265", lum_only) == {}


# -- through the pipeline ------------------------------------------------------------------


def test_vsr_run_keeps_hdr10(hdr_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    res = CliRunner().invoke(
        app,
        ["run", str(hdr_clip), "-o", str(out), "-m", "bicubic", "-x", "2"]
        + ["--device", "cpu", "--json"],  # no --codec: HDR input gets libx265
    )
    assert res.exit_code == 0, res.output
    decisions = json.loads(res.stdout)["fidelity"]["decisions"]
    assert decisions["hdr"] == f"HDR10 kept: {EXPECTED.describe()}"
    assert "dynamic_hdr" not in decisions
    assert probe(out).video.codec == "hevc" and probe(out).video.width == 128
    _assert_hdr10_kept(hdr_clip, out)


def _keyframe_sei_types(path: Path) -> list[set[int]]:
    """Per keyframe packet of an MP4 HEVC stream: the payload types of its prefix SEIs."""
    found = []
    with av.open(str(path)) as c:
        for packet in c.demux(video=0):
            if not packet.size or not packet.is_keyframe:
                continue
            data, i, types = bytes(packet), 0, set()
            while i + 4 <= len(data):
                n = int.from_bytes(data[i : i + 4], "big")
                nal = data[i + 4 : i + 4 + n]
                if (nal[0] >> 1) & 0x3F == 39:
                    types.add(nal[2])
                i += 4 + n
            found.append(types)
    return found


def test_resume_join_keeps_the_sei_of_every_segment(hdr_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.mp4"
    report = run_segmented(
        RunConfig.from_values({"input": hdr_clip, "output": out, **FAST}),
        segment_seconds=0.125,  # 3 frames at 24 fps
    )
    assert report.segments >= 2
    assert report.fidelity["decisions"]["hdr"] == f"HDR10 kept: {EXPECTED.describe()}"
    _assert_hdr10_kept(hdr_clip, out)
    # every segment starts with a keyframe whose mastering display (137) and content light
    # level (144) SEI came through the stream copy
    keys = _keyframe_sei_types(out)
    assert len(keys) >= report.segments
    assert all({137, 144} <= types for types in keys)


def test_batch_job_keeps_hdr10(hdr_clip: Path, tmp_path: Path) -> None:
    src = tmp_path / "in" / "a.mp4"
    src.parent.mkdir()
    shutil.copy(hdr_clip, src)
    cfg = BatchConfig(
        inputs=(str(src.parent),), out=tmp_path / "out", options=dict(FAST), progress=False
    )
    report = run_batch(cfg, engine=InlineEngine())  # type: ignore[arg-type]
    assert report.failed == 0
    (job,) = report.jobs
    assert job.fidelity is not None
    assert job.fidelity["decisions"]["hdr"] == f"HDR10 kept: {EXPECTED.describe()}"
    assert job.output is not None
    _assert_hdr10_kept(src, Path(job.output))


def test_sdr_input_has_no_hdr_decision(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sdr = make_sample_clip(tmp_path / "sdr.mp4", width=64, height=48, frames=4, audio=False)
    with caplog.at_level(logging.WARNING, logger="vsr"):
        report = run(RunConfig.from_values({"input": sdr, "output": tmp_path / "o.mp4", **FAST}))
    decisions: dict[str, Any] = report.fidelity["decisions"]
    assert "hdr" not in decisions and "dynamic_hdr" not in decisions
    assert _hdr_warnings(caplog) == []
    assert not set(STATIC) & set(_side_data(tmp_path / "o.mp4"))


def test_an_encoder_that_cannot_carry_it_drops_it_with_a_warning(
    hdr_clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = shutil.copy(hdr_clip, tmp_path / "in.mp4")  # warnings are once per source file
    out = tmp_path / "o.webm"
    cfg = RunConfig.from_values({"input": src, "output": out, "codec": "libvpx-vp9", **FAST})
    with caplog.at_level(logging.WARNING, logger="vsr"):
        report = run(cfg)
    assert (
        report.fidelity["decisions"]["hdr"] == "HDR10 metadata dropped: libvpx-vp9 cannot carry it"
    )
    (warning,) = _hdr_warnings(caplog)
    assert "in.mp4: HDR10 metadata dropped" in warning and "libvpx-vp9 cannot carry it" in warning
    assert not set(STATIC) & set(_side_data(out))


def test_libx264_and_svtav1_carry_it_too(hdr_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "o264.mp4"
    report = run(
        RunConfig.from_values({"input": hdr_clip, "output": out, "codec": "libx264", **FAST})
    )
    assert report.fidelity["decisions"]["hdr"].startswith("HDR10 kept: ")
    _assert_hdr10_kept(hdr_clip, out)
    out = tmp_path / "oav1.mkv"
    report = run(
        RunConfig.from_values({"input": hdr_clip, "output": out, "codec": "libsvtav1", **FAST})
    )
    assert report.fidelity["decisions"]["hdr"].startswith("HDR10 kept: ")
    got = probe(out).video.hdr  # AV1 stores it in its own fixed point: close, not exact
    assert got is not None and (got.max_cll, got.max_fall) == (1000, 400)
    assert got.red is not None and abs(got.red[0] - Fraction(17, 25)) < Fraction(1, 10000)
    assert got.min_luminance is not None and abs(got.min_luminance - Fraction(1, 200)) < Fraction(
        1, 10000
    )


def test_dynamic_hdr_is_reported_dropped_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = make_hdr_clip(tmp_path / "plus.mp4", frames=9, hdr10_plus=True)
    cfg = RunConfig.from_values({"input": src, "output": tmp_path / "o.mp4", **FAST})
    with caplog.at_level(logging.WARNING, logger="vsr"):
        report = run_segmented(cfg, segment_seconds=0.125)
    assert report.segments >= 2
    decisions = report.fidelity["decisions"]
    assert decisions["hdr"].startswith("HDR10 kept: ")  # the static metadata still is
    assert decisions["dynamic_hdr"].startswith("dropped: HDR10+ (")
    (warning,) = _hdr_warnings(caplog)  # one, though every segment's Writer saw it
    assert "HDR10+" in warning and "JSON" in warning and "dhdr10-info" in warning
    assert "DYNAMIC_HDR_PLUS" not in _side_data(tmp_path / "o.mp4")
