"""Default settings work for every common container (#14): with no ``--codec`` the encoder
is the output container's usual one (libx264, VP9 for WebM, libx265 for HDR), the audio
comes through, and an encoder the container cannot hold is refused before any work."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from vsr.batch.jobs import JobSpec, run_job
from vsr.cli import app
from vsr.errors import UsageError
from vsr.media.codecs import (
    check_container,
    check_encoder,
    container_holds,
    default_codec,
    encoder_available,
    output_format,
    resolve_codec,
)
from vsr.media.frame import ColorInfo
from vsr.media.probe import probe
from vsr.media.sample import make_sample_clip

W, H, FRAMES = 64, 48, 12
FAST = ["-m", "bicubic", "-x", "2", "--device", "cpu"]
#: encoder -> the codec PyAV reads back
CODEC_READ = {"libx264": "h264", "libx265": "hevc", "libvpx-vp9": "vp9", "libsvtav1": "av1"}
AVI_AUDIO = "libmp3lame" if encoder_available("libmp3lame") else "pcm_s16le"
VORBIS = "libvorbis" if encoder_available("libvorbis") else "vorbis"  # FFmpeg's own

#: name -> (file name, video encoder, audio encoder, the default output encoder)
CASES = {
    "mp4": ("clip.mp4", "libx264", "aac", "libx264"),
    "mkv": ("clip.mkv", "libx264", "libopus", "libx264"),
    "webm": ("clip.webm", "libvpx-vp9", "libopus", "libvpx-vp9"),
    "webm-vorbis": ("vorbis.webm", "libvpx-vp9", VORBIS, "libvpx-vp9"),
    "mov": ("clip.mov", "libx264", "aac", "libx264"),
    "avi": ("clip.avi", "mpeg4", AVI_AUDIO, "libx264"),
    "ts": ("clip.ts", "libx264", "mp2", "libx264"),
    "flv": ("clip.flv", "libx264", "aac", "libx264"),
}


def _with_vorbis(path: Path) -> Path:
    """A VP9 + Vorbis WebM: make_sample_clip's video, and a 440 Hz tone as long as it
    encoded here (FFmpeg's own Vorbis encoder is experimental: it needs ``strict``)."""
    video = make_sample_clip(
        path.with_name("vorbis-video.webm"), width=W, height=H, frames=FRAMES, audio=False
    )
    rate = 48000
    n = FRAMES * rate // 24
    t = np.arange(n) / rate
    tone = np.ascontiguousarray(np.stack([np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32))
    with av.open(str(video)) as src, av.open(str(path), "w") as out:
        vin = src.streams.video[0]
        vout = out.add_stream_from_template(vin)
        aout = out.add_stream(VORBIS, rate=rate, layout="stereo")
        aout.codec_context.options = {"strict": "experimental"}
        for packet in src.demux(vin):
            if packet.dts is not None:
                packet.stream = vout
                out.mux(packet)
        for start in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(
                0.3 * tone[:, start : start + 1024], format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            out.mux(aout.encode(frame))
        out.mux(aout.encode(None))
    video.unlink()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One input per case, each in its own folder (outputs get the default name beside)."""
    base = tmp_path_factory.mktemp("containers")
    made: dict[str, Path] = {}
    for case, (name, vcodec, acodec, _) in CASES.items():
        folder = base / case
        folder.mkdir()
        if acodec == "vorbis" or acodec == "libvorbis":
            made[case] = _with_vorbis(folder / name)
        else:
            made[case] = make_sample_clip(
                folder / name,
                width=W,
                height=H,
                frames=FRAMES,
                video_codec=vcodec,
                audio_codec=acodec,
            )
    return made


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _video(path: Path) -> tuple[str, int, tuple[int, int]]:
    """(codec, frames decoded, size) of the first video stream."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        n, size = 0, (0, 0)
        for frame in c.decode(stream):
            n, size = n + 1, (frame.width, frame.height)
        return stream.codec_context.name, n, size


def _audio(path: Path) -> tuple[str, Fraction, Fraction]:
    """(codec, decoded duration, longest decoded frame) of the first audio stream, in s."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        samples = longest = 0
        rate = 1
        for frame in c.decode(stream):
            samples += frame.samples
            longest = max(longest, frame.samples)
            rate = frame.sample_rate
        return stream.codec_context.name, Fraction(samples, rate), Fraction(longest, rate)


def _check_output(src: Path, out: Path, encoder: str, report: dict) -> None:
    """Every frame, twice the size, the audio as long as the input's (within one audio
    frame), and the encoder the report names."""
    assert out.is_file()
    assert report["output"] == str(out)
    decision = report["fidelity"]["decisions"]["encoder"]
    assert decision.split(" ", 1)[0] == encoder, decision
    codec, frames, size = _video(out)
    _, src_frames, (w, h) = _video(src)
    assert codec == CODEC_READ[encoder]
    assert frames == src_frames == FRAMES and report["frames_out"] == FRAMES
    assert size == (2 * w, 2 * h)
    _, src_seconds, src_longest = _audio(src)
    _, seconds, longest = _audio(out)
    assert abs(seconds - src_seconds) <= max(src_longest, longest), (seconds, src_seconds)


# -- the policy ---------------------------------------------------------------------------


def test_output_format_is_found_in_memory(tmp_path: Path) -> None:
    names = {
        ".mp4": "mp4",
        ".MKV": "matroska",
        ".webm": "webm",
        ".mov": "mov",
        ".avi": "avi",
        ".ts": "mpegts",
        ".flv": "flv",
    }
    for suffix, fmt in names.items():
        assert output_format(tmp_path / f"out{suffix}") == fmt
    assert output_format(tmp_path / "out.notacontainer") is None
    assert output_format(tmp_path / "out") is None
    assert not any(tmp_path.iterdir())  # nothing written


def test_default_codec_fits_every_common_container() -> None:
    usual = {
        "mp4": "libx264",
        "mov": "libx264",
        "matroska": "libx264",
        "mpegts": "libx264",
        "flv": "libx264",
        "avi": "libx264",
        "webm": "libvpx-vp9",
    }
    for fmt, encoder in usual.items():
        codec, reason = default_codec(fmt, bit_depth=8, hdr=False)
        assert codec == encoder, fmt
        assert "usual encoder" in reason
        assert container_holds(fmt, codec)
        # None resolves the same way, and is never refused
        assert resolve_codec(None, format_name=fmt) == encoder
        check_container(fmt, None)
    assert not container_holds("webm", "libx264")
    assert not container_holds("avi", "libx265")
    with pytest.raises(ValueError, match="container"):
        resolve_codec(None)  # the default needs the output's container
    check_encoder(None)


def test_hdr_gets_hevc_where_the_container_holds_it() -> None:
    if not encoder_available("libx265"):
        pytest.skip("no libx265 in this PyAV")
    for fmt in ("mp4", "mov", "matroska", "mpegts"):
        codec, reason = default_codec(fmt, bit_depth=10, hdr=True)
        assert (codec, reason) == ("libx265", "HDR source: 10-bit HEVC"), fmt
        assert resolve_codec(None, format_name=fmt, pix_fmt="yuv420p10le", hdr=True) == codec
    codec, reason = default_codec("avi", bit_depth=10, hdr=True)
    assert codec == "libx264" and "cannot hold HEVC" in reason
    # WebM: VP9 when it takes 10-bit here, else AV1 (which does): never an 8-bit HDR file
    codec, _ = default_codec("webm", bit_depth=10, hdr=True)
    assert codec in ("libvpx-vp9", "libsvtav1") and container_holds("webm", codec)
    formats = [f.name for f in av.Codec(codec, "w").video_formats or ()]
    assert "yuv420p10le" in formats


def test_is_hdr_follows_the_transfer(clips: dict[str, Path]) -> None:
    video = probe(clips["mp4"]).video
    assert not video.is_hdr
    for transfer, hdr in (("smpte2084", True), ("arib-std-b67", True), ("bt709", False)):
        assert replace(video, color=ColorInfo(transfer=transfer)).is_hdr is hdr


def test_check_container_names_encoders_that_fit() -> None:
    with pytest.raises(UsageError) as info:
        check_container("webm", "libx264")
    assert str(info.value) == "the webm container cannot hold libx264 video"
    hint = info.value.hint or ""
    assert hint.startswith("use --codec libvpx-vp9") and "another output extension" in hint
    assert "libx264" not in hint and "libx265" not in hint
    check_container("webm", "libvpx-vp9")
    check_container("mp4", "auto")  # auto: H.264 either way


# -- vsr run with the defaults --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_run_with_defaults_in_every_container(case: str, clips: dict[str, Path]) -> None:
    src = clips[case]
    name, _, acodec, encoder = CASES[case]
    assert _audio(src)[0] in (acodec, {"libopus": "opus", "libmp3lame": "mp3float"}.get(acodec))
    result = _cli("run", str(src), *FAST, "--json")
    assert result.exit_code == 0, result.stderr
    out = src.with_name(f"{src.stem}_bicubic_x2{src.suffix}")
    _check_output(src, out, encoder, json.loads(result.stdout))
    out.unlink()


@pytest.mark.slow
def test_hdr_input_is_written_as_10_bit_hevc(tmp_path: Path) -> None:
    if not encoder_available("libx265"):
        pytest.skip("no libx265 in this PyAV")
    pq = ColorInfo(matrix="bt2020nc", range="tv", primaries="bt2020", transfer="smpte2084")
    src = make_sample_clip(
        tmp_path / "pq.mkv", width=W, height=H, frames=FRAMES, pix_fmt="yuv420p10le", color=pq
    )
    result = _cli("run", str(src), *FAST, "--json")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "pq_bicubic_x2.mkv"
    _check_output(src, out, "libx265", json.loads(result.stdout))
    video = probe(out).video
    assert video.pix_fmt == "yuv420p10le" and video.is_hdr


def test_mismatched_codec_is_refused_before_anything(
    clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vsr.pipeline.engine as engine

    def no_probe(*args: object, **kwargs: object) -> None:
        raise AssertionError("the input was opened")

    monkeypatch.setattr(engine, "probe", no_probe)
    src = tmp_path / "x.webm"
    src.write_bytes(clips["webm"].read_bytes())
    result = _cli("run", str(src), "-o", str(tmp_path / "y.webm"), "--codec", "libx264", *FAST)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "the webm container cannot hold libx264 video" in result.stderr
    assert "--codec libvpx-vp9" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.webm"]  # no output, no temp file

    result = _cli("run", str(src), "-o", str(tmp_path / "y.unknown"), *FAST)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.webm"]


def test_a_batch_job_with_a_mismatched_codec_fails_for_good(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "y.webm"
    spec = JobSpec(
        key=str(clips["webm"]),
        input=str(clips["webm"]),
        output=str(out),
        params={"model": "bicubic", "scale": 2, "device": "cpu", "codec": "libx264"},
    )
    result = run_job(spec)
    assert not result.ok and result.permanent
    assert result.error is not None and "cannot hold libx264" in result.error
    assert not any(tmp_path.iterdir())


# -- resume and batch ---------------------------------------------------------------------


@pytest.mark.slow
def test_resume_on_webm_uses_the_default_codec(clips: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "in.webm"
    src.write_bytes(clips["webm"].read_bytes())
    result = _cli("run", str(src), *FAST, "--resume", "--segment-seconds", "0.2", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["segments"] >= 2
    _check_output(src, tmp_path / "in_bicubic_x2.webm", "libvpx-vp9", report)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.webm", "in_bicubic_x2.webm"]


@pytest.mark.slow
def test_batch_over_webm_and_mp4(clips: dict[str, Path], tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for case in ("webm", "mp4"):
        (src / f"{case}.{case}").write_bytes(clips[case].read_bytes())
    result = _cli("batch", str(src), "--out", str(out), *FAST, "-q")
    assert result.exit_code == 0, result.stderr
    result = _cli("batch", "status", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    jobs = {Path(j["input"]).name: j for j in json.loads(result.stdout)["jobs"]}
    for name, encoder in (("webm.webm", "libvpx-vp9"), ("mp4.mp4", "libx264")):
        job = jobs[name]
        assert job["state"] == "done", job
        report = {"output": job["output"], "frames_out": job["frames"]}
        report["fidelity"] = job["fidelity"]
        _check_output(src / name, Path(job["output"]), encoder, report)
