"""The one demux + decode core (``vsr/media/decode.py``): the pts rule, and the resume of a
file (``Reader.frames_after``) by seeking and by decoding from the start."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vsr.errors import MediaError
from vsr.media.decode import DecodeStats, Packet, PtsRule, demux_decode
from vsr.media.frame import Frame
from vsr.media.probe import open_input
from vsr.media.reader import Reader
from vsr.media.sample import make_sample_clip


def _av(pts: int | None, dts: int | None = None) -> SimpleNamespace:
    return SimpleNamespace(pts=pts, dts=dts)


def test_pts_rule_prefers_pts_then_dts_then_last_plus_one_step() -> None:
    rule = PtsRule(Fraction(30), Fraction(1, 15360))  # one frame = 512 ticks
    assert rule.next(_av(1000, dts=7)) == 1000
    assert rule.next(_av(None, dts=1512)) == 1512
    assert rule.next(_av(None)) == 2024
    assert rule.next(_av(None)) == 2536


def test_pts_rule_has_nothing_for_a_first_frame_without_timestamps() -> None:
    rule = PtsRule(Fraction(30), Fraction(1, 15360))
    assert rule.next(_av(None)) is None
    assert rule.next(_av(None)) is None  # still nothing to count from
    assert rule.next(_av(40)) == 40
    assert PtsRule(None, Fraction(1, 30)).next(_av(None)) is None  # no rate: no step


def test_pts_rule_step_is_at_least_one_tick() -> None:
    rule = PtsRule(Fraction(120), Fraction(1, 30))  # a frame is 1/4 tick: rounded up to 1
    assert rule.next(_av(5)) == 5
    assert rule.next(_av(None)) == 6


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s at 30 fps with audio; B-frames; a keyframe every 10 frames."""
    folder = tmp_path_factory.mktemp("decode_media")
    return make_sample_clip(folder / "clip.mp4", width=64, height=48, frames=90, rate=Fraction(30))


@pytest.fixture(scope="module")
def reference(clip: Path) -> list[Frame]:
    with Reader(clip) as reader:
        return list(reader.frames())


def _same(got: list[Frame], want: list[Frame]) -> None:
    assert [f.pts for f in got] == [f.pts for f in want]
    assert [f.time_base for f in got] == [f.time_base for f in want]
    for a, b in zip(got, want, strict=True):
        for pa, pb in zip(a.planes, b.planes, strict=True):
            np.testing.assert_array_equal(pa, pb)


def _after(clip: Path, skip: int, after_pts: int | None) -> list[Frame]:
    with Reader(clip, audio=False, subtitles=False) as reader:
        return list(reader.frames_after(skip, after_pts))


@pytest.mark.parametrize("skip", [1, 25, 40, 89])
def test_frames_after_a_seek_are_numbered_from_skip_with_their_pts(
    clip: Path, reference: list[Frame], skip: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="vsr"):
        got = _after(clip, skip, reference[skip - 1].pts)
    assert "seek missed" not in caplog.text  # the seek itself found the frame
    assert [f.index for f in got] == list(range(skip, len(reference)))
    _same(got, reference[skip:])


@pytest.mark.parametrize("skip", [0, 25, 89])
def test_the_fallback_from_the_start_gives_the_same_frames(
    clip: Path, reference: list[Frame], skip: int
) -> None:
    after_pts = reference[skip - 1].pts if skip else None
    sought = _after(clip, skip, after_pts)
    counted = _after(clip, skip, None)  # no pts: decode from the start, skip by count
    assert [f.index for f in counted] == list(range(skip, len(reference)))
    _same(counted, reference[skip:])
    _same(sought, counted)


def test_a_missed_seek_decodes_from_the_start_and_checks_the_pts(
    clip: Path, reference: list[Frame], caplog: pytest.LogCaptureFixture
) -> None:
    wrong = reference[24].pts + 1  # between two frames: the seek cannot match it
    with (
        caplog.at_level(logging.INFO, logger="vsr"),
        pytest.raises(
            MediaError, match=rf"frame 24 has pts {reference[24].pts}, the manifest says {wrong}"
        ),
    ):
        _after(clip, 25, wrong)
    assert "the seek missed frame 24; decoding from the start" in caplog.text


def test_more_frames_recorded_than_the_input_has(clip: Path) -> None:
    with pytest.raises(MediaError, match="has 90 frames, the manifest records 200"):
        _after(clip, 200, None)


def test_frames_after_is_single_use(clip: Path) -> None:
    with Reader(clip) as reader:
        assert len(list(reader.frames_after(80, None))) == 10
        with pytest.raises(MediaError, match="already read"):
            list(reader.frames_after(80, None))


def test_the_core_passes_other_streams_through_as_packets(clip: Path) -> None:
    container = open_input(clip)
    try:
        streams = [container.streams.video[0], container.streams.audio[0]]
        stats = DecodeStats()
        items = list(demux_decode(container, streams, streams[0], stats))
    finally:
        container.close()
    frames = [item for is_video, item in items if is_video]
    packets = [item for is_video, item in items if not is_video]
    assert len(frames) == 90
    assert packets and all(isinstance(p, Packet) for p in packets)
    assert stats.packets == len(packets) and stats.ended and stats.errors == 0
    assert stats.demux_error is None
