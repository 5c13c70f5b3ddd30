"""Media layer: probe, reader, writer round trips (no model), colour helpers, sample clips."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vsr.errors import EncoderError, InputNotFoundError, MediaError, UsageError
from vsr.media.codecs import encoder_available
from vsr.media.color import (
    color_code,
    color_name,
    matrix_family,
    rgb_to_yuv,
    subsample,
    to_code,
    yuv_to_rgb,
    yuv_to_rgb_matrix,
)
from vsr.media.decode import Packet, frame_from_av, planar_format
from vsr.media.frame import ColorInfo, Frame
from vsr.media.probe import MediaInfo, probe
from vsr.media.reader import Reader
from vsr.media.sample import damage_file, make_sample_clip, truncate_file
from vsr.media.writer import Writer

# -- helpers ------------------------------------------------------------------------------


def video_times(path: Path) -> list[Fraction]:
    """Presentation times (seconds, exact) of every decoded frame, as PyAV sees them."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [Fraction(f.pts) * s.time_base for f in c.decode(s)]


def video_pts(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def stream_packets(path: Path, kind: str) -> list[list[tuple[bytes, Fraction | None]]]:
    """Per stream of ``kind``: (payload, pts in seconds) of every non-empty packet."""
    with av.open(str(path)) as c:
        n = len(getattr(c.streams, kind))
    out = []
    for i in range(n):
        with av.open(str(path)) as c:
            s = getattr(c.streams, kind)[i]
            out.append(
                [
                    (bytes(p), None if p.pts is None else Fraction(p.pts) * s.time_base)
                    for p in c.demux(s)
                    if p.size
                ]
            )
    return out


def copy_clip(src: Path, dst: Path, **kwargs) -> tuple[MediaInfo, int, int]:
    """Identity 'upscale': read src, write every frame and packet to dst unchanged."""
    frames = packets = 0
    with Reader(src) as reader:
        info = reader.info
        writer = Writer(
            output=dst,
            source=info,
            source_path=src,
            width=kwargs.pop("width", info.video.width),
            height=kwargs.pop("height", info.video.height),
            **kwargs,
        )
        try:
            for item in reader.items():
                if isinstance(item, Frame):
                    writer.write_frame(item)
                    frames += 1
                else:
                    writer.write_packet(item)
                    packets += 1
        except BaseException:
            writer.abort()
            raise
        writer.close()
    return info, frames, packets


def read_frames(path: Path) -> list[Frame]:
    with Reader(path) as reader:
        return list(reader.frames())


def no_temp_files(directory: Path) -> bool:
    return not any(".vsr-tmp-" in p.name for p in directory.iterdir())


# -- probe --------------------------------------------------------------------------------


def test_probe_basic_mp4(clip_mp4: Path) -> None:
    info = probe(clip_mp4)
    v = info.video
    assert info.path == clip_mp4
    assert "mp4" in info.format_name
    assert (v.index, v.codec, v.width, v.height) == (0, "h264", 128, 96)
    assert (v.pix_fmt, v.bit_depth) == ("yuv420p", 8)
    assert v.frame_count == 24 and v.frames_estimate == 24
    assert v.frame_rate == Fraction(24) and isinstance(v.frame_rate, Fraction)
    assert isinstance(v.time_base, Fraction) and isinstance(v.duration, Fraction)
    assert v.duration == Fraction(1)
    assert v.rotation == 0 and v.start_time == 0
    assert v.color == ColorInfo()
    assert len(info.audio) == 1 and info.subtitles == ()
    a = info.audio[0]
    assert (a.codec, a.sample_rate, a.channels, a.layout) == ("aac", 48000, 2, "stereo")
    assert a.language == "eng" and a.time_base == Fraction(1, 48000)


def test_probe_streams_of_mkv_with_subtitles(clip_mkv_subs: Path) -> None:
    info = probe(clip_mkv_subs)
    assert info.format_name.startswith("matroska")
    assert info.video.frame_count is None  # Matroska has no frame count
    assert abs(info.video.frames_estimate - 30) <= 2
    assert [(a.index, a.channels, a.language) for a in info.audio] == [
        (1, 2, "eng"),
        (2, 1, "fra"),
    ]
    assert [(s.index, s.codec, s.kind) for s in info.subtitles] == [(3, "subrip", "subtitle")]


def test_probe_no_audio_and_two_audio(clip_no_audio: Path, clip_two_audio: Path) -> None:
    assert probe(clip_no_audio).audio == ()
    two = probe(clip_two_audio).audio
    assert [(a.codec, a.channels, a.language) for a in two] == [
        ("aac", 2, "eng"),
        ("aac", 1, "fra"),
    ]


def test_probe_ten_bit(clip_10bit: Path) -> None:
    v = probe(clip_10bit).video
    assert (v.pix_fmt, v.bit_depth) == ("yuv420p10le", 10)


def test_probe_rotation(clip_rotated: Path) -> None:
    assert probe(clip_rotated).video.rotation == 90


def test_probe_color_tags_full_range(clip_bt709_full: Path) -> None:
    v = probe(clip_bt709_full).video
    assert v.color == ColorInfo(matrix="bt709", range="pc", primaries="bt709", transfer="bt709")
    assert v.color.full_range
    assert v.pix_fmt == "yuvj420p"  # FFmpeg's h264 decoder still says "j" for full range


def test_probe_webm_and_odd(clip_webm: Path, clip_odd: Path) -> None:
    info = probe(clip_webm)
    assert info.video.codec == "vp9" and info.audio[0].codec == "opus"
    odd = probe(clip_odd).video
    assert (odd.width, odd.height) == (321, 241)


def test_probe_vfr(clip_vfr: Path) -> None:
    v = probe(clip_vfr).video
    assert v.frame_count == 24
    # durations alternate 1 and 2 ticks of 1/48 s: the average is near 32 fps, not 24 or 48
    assert v.frame_rate is not None and 30 < v.frame_rate < 34
    times = video_times(clip_vfr)
    steps = {b - a for a, b in zip(times, times[1:], strict=False)}
    assert steps == {Fraction(1, 48), Fraction(2, 48)}


def test_probe_missing_file() -> None:
    with pytest.raises(InputNotFoundError) as err:
        probe("/nonexistent/clip.mp4")
    assert isinstance(err.value, FileNotFoundError)


def test_probe_corrupt_file_is_one_line_media_error(clip_corrupt: Path) -> None:
    with pytest.raises(MediaError) as err:
        probe(clip_corrupt)
    assert not isinstance(err.value, av.FFmpegError)
    line = err.value.one_line()
    assert "\n" not in line and "not a media file" in line and clip_corrupt.name in line


def test_probe_directory_and_audio_only(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="directory"):
        probe(tmp_path)
    audio_only = tmp_path / "tone.m4a"
    with av.open(str(audio_only), "w") as c:
        s = c.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((2, 1024), np.float32), format="fltp", layout="stereo"
        )
        frame.sample_rate, frame.pts = 48000, 0
        for p in s.encode(frame) + s.encode(None):
            c.mux(p)
    with pytest.raises(MediaError, match="no video stream"):
        probe(audio_only)


# -- reader -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["clip_mp4", "clip_vfr", "clip_mkv_subs", "clip_webm"])
def test_reader_frames_and_pts_match_pyav(name: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(name)
    frames = read_frames(path)
    expected = video_pts(path)
    assert [f.pts for f in frames] == expected
    assert [f.index for f in frames] == list(range(len(expected)))
    info = probe(path)
    assert all(f.time_base == info.video.time_base for f in frames)
    if info.video.frame_count is not None:
        assert len(frames) == info.video.frame_count


def test_reader_plane_shapes_and_dtypes(clip_mp4: Path, clip_10bit: Path, clip_odd: Path) -> None:
    f8 = read_frames(clip_mp4)[0]
    assert f8.pix_fmt == "yuv420p" and f8.bit_depth == 8
    assert [p.shape for p in f8.planes] == [(96, 128), (48, 64), (48, 64)]
    assert all(p.dtype == np.uint8 and p.flags.c_contiguous for p in f8.planes)

    f10 = read_frames(clip_10bit)[0]
    assert f10.pix_fmt == "yuv420p10le" and f10.bit_depth == 10
    assert all(p.dtype == np.uint16 for p in f10.planes)
    assert max(int(p.max()) for p in f10.planes) <= 1023
    assert int(f10.planes[0].max()) > 255  # really 10-bit values, not 8-bit in 16

    odd = read_frames(clip_odd)[0]
    assert [p.shape for p in odd.planes] == [(241, 321), (121, 161), (121, 161)]


def test_reader_planes_equal_pyav_ndarray(clip_odd: Path) -> None:
    """Line padding is dropped correctly (odd widths have padded lines in FFmpeg)."""
    with av.open(str(clip_odd)) as c:
        ref = next(c.decode(video=0))
        # swscale's 4:4:4 output copies luma untouched and upsamples chroma
        yuv444 = ref.to_ndarray(format="yuv444p")
        u = ref.planes[1]
        u_rows = np.frombuffer(bytes(u), np.uint8)[: u.height * u.line_size]
        u_ref = u_rows.reshape(u.height, u.line_size)[:, : u.width]
        assert u.line_size > u.width  # the padding this test is about
    frame = read_frames(clip_odd)[0]
    np.testing.assert_array_equal(frame.planes[0], yuv444[0])
    np.testing.assert_array_equal(frame.planes[1], u_ref)


def test_reader_packets_byte_identical_in_demux_order(clip_mkv_subs: Path) -> None:
    with av.open(str(clip_mkv_subs)) as c:
        expected = [
            (p.stream_index, bytes(p), p.pts, p.dts, p.duration)
            for p in c.demux()
            if p.size and p.stream.type in ("audio", "subtitle")
        ]
    with Reader(clip_mkv_subs) as reader:
        items = list(reader.items())
    packets = [i for i in items if isinstance(i, Packet)]
    assert [(p.stream_index, p.data, p.pts, p.dts, p.duration) for p in packets] == expected
    assert {p.stream_index for p in packets} == {1, 2, 3}
    assert all(isinstance(p.data, bytes) and isinstance(p.time_base, Fraction) for p in packets)
    # Interleaved, not batched: some packet comes before the last frame.
    kinds = [isinstance(i, Frame) for i in items]
    assert kinds.index(False) < len(kinds) - 1 - kinds[::-1].index(True)


def test_reader_audio_and_subtitles_can_be_skipped(clip_mkv_subs: Path) -> None:
    with Reader(clip_mkv_subs, audio=False, subtitles=False) as reader:
        items = list(reader.items())
    assert items and all(isinstance(i, Frame) for i in items)


def test_reader_full_range_maps_to_planar_with_pc_range(clip_bt709_full: Path) -> None:
    with Reader(clip_bt709_full) as reader:
        assert reader.pix_fmt == "yuv420p"
        assert reader.info.video.color.range == "pc"
        frame = next(reader.frames())
    assert frame.pix_fmt == "yuv420p"
    # Full range really is used: values outside 16..235 occur in the test pattern.
    assert int(frame.planes[0].min()) < 16 or int(frame.planes[0].max()) > 235


def test_reader_converts_other_pixel_formats() -> None:
    assert planar_format("yuvj444p") == "yuv444p"
    assert planar_format("nv12") == "yuv420p"
    assert planar_format("p010le") == "yuv420p10le"
    assert planar_format("yuv422p10le") == "yuv422p10le"
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 1] = 200
    frame = frame_from_av(
        av.VideoFrame.from_ndarray(rgb, format="rgb24"), index=0, pts=5, time_base=Fraction(1, 25)
    )
    assert frame.pix_fmt == "yuv420p" and frame.pts == 5
    assert [p.shape for p in frame.planes] == [(48, 64), (24, 32), (24, 32)]
    deep = av.VideoFrame(64, 48, "yuv420p12le")
    assert frame_from_av(deep, index=0, pts=0, time_base=Fraction(1)).pix_fmt == "yuv420p10le"


def test_reader_iteration_can_be_abandoned(clip_mp4: Path) -> None:
    reader = Reader(clip_mp4)
    items = reader.items()
    got = [next(items) for _ in range(3)]
    assert got
    items.close()  # abandon the generator
    with pytest.raises(MediaError, match="already read"):
        next(reader.items())
    reader.close()
    reader.close()  # idempotent
    with pytest.raises(MediaError):
        next(reader.items())


def test_reader_truncated_file_warns_once(
    clip_truncated: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="vsr"), Reader(clip_truncated) as reader:
        frames = list(reader.frames())
    warnings = [r for r in caplog.records if r.name == "vsr" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "lost" in warnings[0].getMessage() and clip_truncated.name in warnings[0].getMessage()
    assert 5 <= len(frames) < 40
    assert [f.pts for f in frames] == video_pts(clip_truncated)


def test_reader_damaged_middle_decodes_the_rest(
    clip_mp4: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damaged = damage_file(clip_mp4, tmp_path / "damaged.mp4", start=0.5, length=0.1)
    with caplog.at_level(logging.WARNING, logger="vsr"), Reader(damaged) as reader:
        frames = list(reader.frames())
    assert 0 < len(frames) <= 24
    assert len([r for r in caplog.records if r.name == "vsr"]) <= 1


def test_reader_corrupt_and_unindexed_truncation_raise(
    clip_corrupt: Path, clip_mp4: Path, tmp_path: Path
) -> None:
    with pytest.raises(MediaError):
        Reader(clip_corrupt)
    # An MP4 cut before its index (moov at the end) cannot be read at all.
    cut = truncate_file(clip_mp4, tmp_path / "cut.mp4", 0.5)
    with pytest.raises(MediaError, match="cut.mp4"):
        Reader(cut)


def test_reader_faststart_mp4_truncated_keeps_frames(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    full = make_sample_clip(tmp_path / "fs.mp4", width=64, height=48, frames=30, faststart=True)
    cut = truncate_file(full, tmp_path / "fs_cut.mp4", 0.6)
    with caplog.at_level(logging.WARNING, logger="vsr"), Reader(cut) as reader:
        frames = list(reader.frames())
    assert 0 < len(frames) < 30
    [warning] = [r for r in caplog.records if r.name == "vsr"]
    assert f"of 30 frames ({30 - len(frames)} lost)" in warning.getMessage()


# -- writer: identity round trips -----------------------------------------------------------


def test_writer_roundtrip_mp4(clip_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    info, frames, packets = copy_clip(clip_mp4, out)
    assert frames == 24 and packets > 0
    out_info = probe(out)
    assert out_info.video.frame_count == 24
    assert (out_info.video.width, out_info.video.height) == (128, 96)
    assert out_info.video.time_base == info.video.time_base
    assert video_pts(out) == video_pts(clip_mp4)
    assert stream_packets(out, "audio") == stream_packets(clip_mp4, "audio")
    assert no_temp_files(tmp_path)


def test_writer_lossless_planes_and_grey_levels(clip_mp4: Path, tmp_path: Path) -> None:
    """With a lossless encode the pixels come back exactly: no shift, no range change."""
    out = tmp_path / "lossless.mp4"
    copy_clip(clip_mp4, out, options={"qp": "0"})
    for a, b in zip(read_frames(clip_mp4), read_frames(out), strict=True):
        for pa, pb in zip(a.planes, b.planes, strict=True):
            np.testing.assert_array_equal(pa, pb)


def test_writer_grey_ramp_stays_grey(tmp_path: Path) -> None:
    src = make_sample_clip(tmp_path / "src.mp4", width=64, height=48, frames=2, audio=False)
    info = probe(src)
    ramp = np.tile(np.linspace(16, 235, 64).round().astype(np.uint8), (48, 1))
    grey = np.full((24, 32), 128, np.uint8)
    out = tmp_path / "ramp.mp4"
    with Writer(
        output=out, source=info, source_path=src, width=64, height=48, options={"qp": "0"}
    ) as w:
        for i in range(2):
            w.write_frame(Frame(i, i, info.video.time_base, (ramp, grey, grey), "yuv420p"))
    frames = read_frames(out)
    assert len(frames) == 2
    for f in frames:
        np.testing.assert_array_equal(f.planes[0], ramp)
        assert np.all(f.planes[1] == 128) and np.all(f.planes[2] == 128)
        rgb = yuv_to_rgb(*f.planes, probe(out).video.color)
        assert np.allclose(rgb[..., 0], rgb[..., 1]) and np.allclose(rgb[..., 1], rgb[..., 2])


def test_writer_mkv_two_audio_tracks_and_subtitles(clip_mkv_subs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    copy_clip(clip_mkv_subs, out)
    info = probe(out)
    assert [(a.codec, a.language) for a in info.audio] == [("aac", "eng"), ("aac", "fra")]
    assert [s.codec for s in info.subtitles] == ["subrip"]
    assert video_times(out) == video_times(clip_mkv_subs)
    assert stream_packets(out, "audio") == stream_packets(clip_mkv_subs, "audio")
    assert stream_packets(out, "subtitles") == stream_packets(clip_mkv_subs, "subtitles")
    assert len(stream_packets(out, "subtitles")[0]) >= 2


def test_writer_two_audio_tracks_mp4(clip_two_audio: Path, tmp_path: Path) -> None:
    out = tmp_path / "two.mp4"
    copy_clip(clip_two_audio, out)
    src_audio = stream_packets(clip_two_audio, "audio")
    assert len(src_audio) == 2
    assert stream_packets(out, "audio") == src_audio


def test_writer_webm_vp9_opus(clip_webm: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.webm"
    copy_clip(clip_webm, out, codec="libvpx-vp9")
    info = probe(out)
    assert info.format_name.startswith("matroska") and info.video.codec == "vp9"
    assert [a.codec for a in info.audio] == ["opus"]
    assert video_times(out) == video_times(clip_webm)
    assert stream_packets(out, "audio") == stream_packets(clip_webm, "audio")


def test_writer_mov(clip_mov: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mov"
    copy_clip(clip_mov, out)
    assert probe(out).format_name.startswith("mov")
    assert video_times(out) == video_times(clip_mov)
    assert stream_packets(out, "audio") == stream_packets(clip_mov, "audio")


def test_writer_vfr_timestamps_survive(clip_vfr: Path, tmp_path: Path) -> None:
    out = tmp_path / "vfr_out.mp4"
    copy_clip(clip_vfr, out)
    assert video_times(out) == video_times(clip_vfr)
    times = video_times(out)
    steps = {b - a for a, b in zip(times, times[1:], strict=False)}
    assert steps == {Fraction(1, 48), Fraction(1, 24)}


def test_writer_cross_container_keeps_relative_timing(clip_mp4: Path, tmp_path: Path) -> None:
    """MP4 -> MKV: Matroska cannot start below zero, so FFmpeg may shift every stream by the
    same amount (AAC priming); the spacing of frames and the A/V offset are kept exactly
    to the millisecond grid."""
    out = tmp_path / "cross.mkv"
    copy_clip(clip_mp4, out)
    src, dst = video_times(clip_mp4), video_times(out)
    assert len(dst) == len(src)
    shift = dst[0] - src[0]
    assert abs(shift) <= Fraction(1, 20)
    tick = Fraction(1, 1000)
    assert all(abs((d - shift) - s) <= tick for s, d in zip(src, dst, strict=True))
    a_src, a_dst = stream_packets(clip_mp4, "audio")[0], stream_packets(out, "audio")[0]
    assert [b for b, _ in a_dst] == [b for b, _ in a_src]
    pairs = zip(a_src, a_dst, strict=True)
    assert all(abs((td - shift) - ts) <= tick for (_, ts), (_, td) in pairs)


def test_writer_carries_color_tags(clip_bt709_full: Path, tmp_path: Path) -> None:
    for ext in ("mp4", "mkv"):
        out = tmp_path / f"color.{ext}"
        copy_clip(clip_bt709_full, out)
        assert probe(out).video.color == probe(clip_bt709_full).video.color


def test_writer_carries_rotation(clip_rotated: Path, tmp_path: Path) -> None:
    for ext in ("mp4", "mkv", "mov"):
        out = tmp_path / f"rot.{ext}"
        copy_clip(clip_rotated, out)
        assert probe(out).video.rotation == 90, ext


def test_writer_ten_bit_stays_ten_bit(clip_10bit: Path, tmp_path: Path) -> None:
    out = tmp_path / "ten.mp4"
    copy_clip(clip_10bit, out, options={"qp": "0"})
    v = probe(out).video
    assert (v.pix_fmt, v.bit_depth) == ("yuv420p10le", 10)
    for a, b in zip(read_frames(clip_10bit), read_frames(out), strict=True):
        assert b.planes[0].dtype == np.uint16
        np.testing.assert_array_equal(a.planes[0], b.planes[0])


@pytest.mark.skipif(not encoder_available("libx265"), reason="no libx265 in this FFmpeg")
def test_writer_ten_bit_hevc(clip_10bit: Path, tmp_path: Path) -> None:
    out = tmp_path / "ten_hevc.mp4"
    copy_clip(clip_10bit, out, codec="libx265", preset="ultrafast")
    v = probe(out).video
    assert (v.codec, v.pix_fmt) == ("hevc", "yuv420p10le")
    assert video_times(out) == video_times(clip_10bit)


def test_writer_ten_bit_fallback_warns(
    clip_10bit: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    formats = {f.name for f in av.Codec("libvpx-vp9", "w").video_formats}
    if "yuv420p10le" in formats:
        pytest.skip("this libvpx encodes 10-bit: no fallback to test")
    out = tmp_path / "ten.webm"
    with caplog.at_level(logging.WARNING, logger="vsr"):
        copy_clip(clip_10bit, out, codec="libvpx-vp9")
    assert probe(out).video.bit_depth == 8
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "yuv420p10le" in messages and "10-bit" in messages


def test_writer_odd_size_cropped_to_even(clip_odd: Path, tmp_path: Path) -> None:
    assert Writer.output_size(321, 241, "yuv420p") == (320, 240)
    assert Writer.output_size(321, 241, "yuv422p") == (320, 241)
    assert Writer.output_size(321, 241, "yuv444p") == (321, 241)
    assert Writer.output_size(642, 482, "yuv420p") == (642, 482)
    out = tmp_path / "odd.mp4"
    copy_clip(clip_odd, out, options={"qp": "0"})
    v = probe(out).video
    assert (v.width, v.height) == (320, 240)
    src, dst = read_frames(clip_odd), read_frames(out)
    assert len(dst) == len(src) == 10
    np.testing.assert_array_equal(dst[0].planes[0], src[0].planes[0][:240, :320])
    np.testing.assert_array_equal(dst[0].planes[1], src[0].planes[1][:120, :160])


def test_writer_upscaled_frames(clip_no_audio: Path, tmp_path: Path) -> None:
    """Frames 2x the input (a nearest-neighbour 'model') give a 2x output."""
    out = tmp_path / "x2.mp4"
    with Reader(clip_no_audio) as reader:
        info = reader.info
        with Writer(
            output=out,
            source=info,
            source_path=clip_no_audio,
            width=info.video.width * 2,
            height=info.video.height * 2,
            preset="ultrafast",
        ) as writer:
            for f in reader.frames():
                big = tuple(np.repeat(np.repeat(p, 2, 0), 2, 1) for p in f.planes)
                writer.write_frame(Frame(f.index, f.pts, f.time_base, big, f.pix_fmt))
    v = probe(out).video
    assert (v.width, v.height, v.frame_count) == (256, 192, 12)
    assert video_pts(out) == video_pts(clip_no_audio)


def test_writer_transcodes_aac_into_webm(
    clip_mp4: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "aac.webm"
    with caplog.at_level(logging.WARNING, logger="vsr"):
        copy_clip(clip_mp4, out, codec="libvpx-vp9")
    assert any("transcoding" in r.getMessage() for r in caplog.records)
    info = probe(out)
    assert [a.codec for a in info.audio] == ["opus"]
    # Same audio duration as the input, within one audio frame.
    src_audio = stream_packets(clip_mp4, "audio")[0]
    out_audio = stream_packets(out, "audio")[0]
    assert abs(out_audio[0][1] - src_audio[0][1]) <= Fraction(1, 40)
    assert abs(out_audio[-1][1] - src_audio[-1][1]) <= Fraction(1, 20)
    assert len(video_times(out)) == 24


def test_writer_converts_subrip_into_mp4(
    clip_mkv_subs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "subs.mp4"
    with caplog.at_level(logging.WARNING, logger="vsr"):
        copy_clip(clip_mkv_subs, out)
    assert [s.codec for s in probe(out).subtitles] == ["mov_text"]
    assert any("mov_text" in r.getMessage() for r in caplog.records)
    src = stream_packets(clip_mkv_subs, "subtitles")[0]
    dst = [(data[2:], t) for data, t in stream_packets(out, "subtitles")[0] if len(data) > 2]
    assert dst == src  # same text at the same times (mov_text adds a length prefix)
    # audio is still copied as it is
    assert stream_packets(out, "audio") == stream_packets(clip_mkv_subs, "audio")


def test_writer_copies_title_and_chapters(clip_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "meta.mkv"
    copy_clip(clip_mp4, out)
    with av.open(str(clip_mp4)) as src, av.open(str(out)) as dst:
        assert src.metadata.get("title") == dst.metadata.get("title") == "vsr sample clip"
        chapters = [
            (c["metadata"].get("title"), c["start"] * c["time_base"]) for c in src.chapters()
        ]
        assert len(chapters) == 2
        assert [
            (c["metadata"].get("title"), c["start"] * c["time_base"]) for c in dst.chapters()
        ] == chapters


def test_writer_audio_off_drops_audio(clip_mkv_subs: Path, tmp_path: Path) -> None:
    out = tmp_path / "mute.mkv"
    copy_clip(clip_mkv_subs, out, audio=False)
    info = probe(out)
    assert info.audio == () and len(info.subtitles) == 1


# -- writer: lifecycle and errors -------------------------------------------------------------


def _writer(src: Path, out: Path, **kwargs) -> Writer:
    info = probe(src)
    return Writer(
        output=out,
        source=info,
        source_path=src,
        width=info.video.width,
        height=info.video.height,
        **kwargs,
    )


def test_writer_temp_file_renamed_on_close(clip_no_audio: Path, tmp_path: Path) -> None:
    out = tmp_path / "final.mp4"
    writer = _writer(clip_no_audio, out, preset="ultrafast")
    assert writer.tmp_path.parent == out.parent and writer.tmp_path.name.startswith(".final")
    assert ".vsr-tmp-" in writer.tmp_path.name and writer.tmp_path.suffix == ".mp4"
    for frame in read_frames(clip_no_audio):
        writer.write_frame(frame)
    assert writer.tmp_path.exists() and not out.exists()
    writer.close()
    assert out.exists() and not writer.tmp_path.exists()
    writer.close()  # idempotent
    writer.abort()  # no-op after a successful close: the output stays
    assert out.exists() and probe(out).video.frame_count == 12


def test_writer_abort_deletes_temp(clip_mp4: Path, tmp_path: Path) -> None:
    out = tmp_path / "aborted.mp4"
    writer = _writer(clip_mp4, out, preset="ultrafast")
    with Reader(clip_mp4) as reader:
        for item in reader.items():
            if isinstance(item, Frame):
                writer.write_frame(item)
                if item.index == 10:
                    break
            else:
                writer.write_packet(item)
    assert writer.tmp_path.exists()
    writer.abort()
    writer.abort()  # idempotent
    assert not out.exists() and no_temp_files(tmp_path)
    with pytest.raises(MediaError):
        writer.close()
    with pytest.raises(MediaError):
        writer.write_frame(read_frames(clip_mp4)[0])


def test_writer_context_manager_aborts_on_error(clip_no_audio: Path, tmp_path: Path) -> None:
    out = tmp_path / "boom.mp4"
    frames = read_frames(clip_no_audio)
    with pytest.raises(RuntimeError, match="model failed"), _writer(clip_no_audio, out) as w:
        w.write_frame(frames[0])
        raise RuntimeError("model failed")
    assert not out.exists() and no_temp_files(tmp_path)


def test_writer_without_frames_leaves_nothing(clip_no_audio: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty.mp4"
    writer = _writer(clip_no_audio, out)
    with pytest.raises(MediaError, match="no video frames"):
        writer.close()
    assert not out.exists() and no_temp_files(tmp_path)


def test_writer_encoder_errors(clip_no_audio: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not available"):
        _writer(clip_no_audio, tmp_path / "a.mp4", codec="no-such-encoder")
    with pytest.raises(EncoderError, match="webm"):
        _writer(clip_no_audio, tmp_path / "b.webm", codec="libx264")
    with pytest.raises(EncoderError):
        _writer(clip_no_audio, tmp_path / "c.mp4", options={"preset": "no-such-preset"})
    assert no_temp_files(tmp_path)
    assert not any(tmp_path.iterdir())


def test_writer_rejects_wrong_frame_size(clip_no_audio: Path, tmp_path: Path) -> None:
    writer = _writer(clip_no_audio, tmp_path / "size.mp4")
    small = Frame(
        0,
        0,
        Fraction(1, 24),
        (np.zeros((40, 60), np.uint8), np.zeros((20, 30), np.uint8), np.zeros((20, 30), np.uint8)),
        "yuv420p",
    )
    with pytest.raises(EncoderError, match="60x40"):
        writer.write_frame(small)
    writer.abort()
    assert no_temp_files(tmp_path)


def test_writer_unknown_extension(clip_no_audio: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="cannot create"):
        _writer(clip_no_audio, tmp_path / "out.notacontainer")


# -- colour ---------------------------------------------------------------------------------


def test_color_names_and_codes() -> None:
    assert color_name("matrix", 1) == "bt709" and color_name("matrix", 2) is None
    assert color_name("range", 2) == "pc" and color_name("range", 0) is None
    assert color_code("matrix", "bt709") == 1 and color_code("matrix", None) == 2
    assert color_code("range", "full") == 2 and color_code("transfer", "srgb") == 13
    with pytest.raises(ValueError, match="unknown colour"):
        color_code("primaries", "nonsense")


def test_unspecified_matrix_follows_height() -> None:
    assert matrix_family(ColorInfo(), height=480) == "bt601"
    assert matrix_family(ColorInfo(), height=720) == "bt709"
    assert matrix_family(ColorInfo(matrix="bt470bg"), height=1080) == "bt601"
    assert matrix_family(ColorInfo(matrix="bt2020nc"), height=480) == "bt2020"


def test_known_conversion_values() -> None:
    # BT.709 limited 8-bit: pure red is (63, 102, 240) per the standard's tables.
    y, u, v = rgb_to_yuv(np.array([[[1.0, 0.0, 0.0]]]), ColorInfo(matrix="bt709"), 8)
    assert (to_code(y)[0, 0], to_code(u)[0, 0], to_code(v)[0, 0]) == (63, 102, 240)
    # Limited black/white and full-range white.
    rgb = yuv_to_rgb(np.array([[16, 235]]), np.full((1, 2), 128), np.full((1, 2), 128), ColorInfo())
    np.testing.assert_allclose(rgb[0], [[0, 0, 0], [1, 1, 1]], atol=1e-12)
    m, off = yuv_to_rgb_matrix(ColorInfo(range="pc"), bit_depth=10)
    assert off[0] == 0 and off[1] == pytest.approx(512 / 1023)
    assert m[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("matrix", ["smpte170m", "bt709", "bt2020nc"])
@pytest.mark.parametrize("rng", ["tv", "pc"])
@pytest.mark.parametrize("depth", [8, 10])
def test_yuv_rgb_roundtrip(matrix: str, rng: str, depth: int) -> None:
    color = ColorInfo(matrix=matrix, range=rng)
    rgb = np.random.default_rng(1).random((6, 8, 3))
    y, u, v = rgb_to_yuv(rgb, color, depth)
    np.testing.assert_allclose(yuv_to_rgb(y, u, v, color, depth, clip=False), rgb, atol=1e-12)
    grey = np.repeat(np.linspace(0, 1, 8)[None, :, None], 3, axis=2)
    _, gu, gv = rgb_to_yuv(grey, color, depth)
    np.testing.assert_allclose(gu, 1 << (depth - 1), atol=1e-9)
    np.testing.assert_allclose(gv, 1 << (depth - 1), atol=1e-9)


def test_subsample_odd_sizes() -> None:
    plane = np.arange(15, dtype=np.float64).reshape(3, 5)
    out = subsample(plane, 1, 1)
    assert out.shape == (2, 3)
    assert out[0, 0] == pytest.approx((0 + 1 + 5 + 6) / 4)
    assert subsample(plane, 1, 0).shape == (3, 3)


# -- sample clips ---------------------------------------------------------------------------


def test_sample_clip_has_b_frames_and_texture(clip_mp4: Path) -> None:
    with av.open(str(clip_mp4)) as c:
        types = {int(f.pict_type) for f in c.decode(video=0)}
    assert int(av.video.frame.PictureType.B) in types
    y = read_frames(clip_mp4)[5].planes[0].astype(int)
    assert np.abs(np.diff(y, axis=1)).max() > 100  # hard edges to upscale
    assert y.std() > 20


def test_sample_clip_audio_is_a_440hz_tone(clip_mp4: Path) -> None:
    with av.open(str(clip_mp4)) as c:
        samples = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    peak = np.argmax(spectrum) * 48000 / len(samples)
    assert abs(peak - 440) < 5
    assert 0.05 < np.abs(samples).max() < 0.6


def test_sample_clip_subtitles_in_each_container(tmp_path: Path) -> None:
    for ext, codec in (("mkv", "subrip"), ("mp4", "mov_text"), ("webm", "webvtt")):
        path = make_sample_clip(
            tmp_path / f"s.{ext}", width=64, height=48, frames=6, subtitles=True, audio=False
        )
        assert [s.codec for s in probe(path).subtitles] == [codec]


# -- third-party sample (skipped when ../shared/data is absent) -----------------------------


def test_shared_rabbit_clip(shared_data: Path | None, tmp_path: Path) -> None:
    path = None if shared_data is None else shared_data / "video" / "rabbit320.mp4"
    if path is None or not path.exists():
        pytest.skip("../shared/data/video/rabbit320.mp4 is not available")
    info = probe(path)
    assert (info.video.width, info.video.height) == (320, 240)
    assert info.video.frame_count is not None and info.audio
    out = tmp_path / "rabbit.mp4"
    _, frames, packets = copy_clip(path, out, preset="ultrafast")
    assert frames == info.video.frame_count and packets > 0
    assert video_times(out) == video_times(path)
    assert stream_packets(out, "audio") == stream_packets(path, "audio")
    assert probe(out).video.color == info.video.color
