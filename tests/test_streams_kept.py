"""Streams the reader does not upscale, kept where the output container can hold them:
Matroska attachments (an ASS subtitle's font, an image), cover art (attached pictures) and
the timecode (a MOV/MP4 ``tmcd`` track); dropped with a warning and a fidelity record
where it cannot. Each through ``vsr run``, ``vsr run --resume`` (the join) and ``vsr batch``.

The inputs are generated here with PyAV: 12 frames of 64x48 at 24 fps (0.5 s).
"""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from media_checks import packets
from typer.testing import CliRunner

from vsr.batch.engine import run_batch
from vsr.batch.ledger import Ledger
from vsr.batch.options import BatchConfig
from vsr.cli import app
from vsr.config import RunConfig
from vsr.media.routes import DEFAULT_ASS_HEADER
from vsr.pipeline.engine import run
from vsr.pipeline.segments import run_segmented

FAST = {"model": "bicubic", "scale": 2, "device": "cpu"}
FRAMES, W, H = 12, 64, 48
FONT = ("Font.ttf", "application/x-truetype-font", b"\x00\x01\x00\x00" + bytes(range(60)))
TIMECODE = "01:00:00:00"
KLV_KEY = bytes.fromhex("060e2b34020b01010e01030101000000")
ATTACHED_PIC = av.stream.Disposition.attached_pic

# -- generators ---------------------------------------------------------------------------


def _image(codec: str) -> bytes:
    """A 16x16 picture encoded as ``codec`` (``png`` or ``mjpeg``): one packet's bytes."""
    ctx: Any = av.CodecContext.create(codec, "w")
    ctx.width = ctx.height = 16
    ctx.pix_fmt = "rgb24" if codec == "png" else "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ramp = np.arange(16, dtype=np.uint8)[None, :, None] * 16
    frame = av.VideoFrame.from_ndarray(np.tile(ramp, (16, 1, 3)), format="rgb24")
    if codec != "png":
        frame = frame.reformat(format="yuvj420p")
    return b"".join(bytes(p) for p in list(ctx.encode(frame)) + list(ctx.encode(None)))


PNG = _image("png")
JPEG = _image("mjpeg")


def make_clip(
    path: Path,
    *,
    ass: bool = False,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
    cover: bytes | None = None,
    timecode: str | None = None,
    klv: bool = False,
) -> Path:
    """H.264 video plus, as asked: an ASS subtitle track (two cues, style font ``Font``),
    Matroska attachments ``(name, mimetype, bytes)``, cover art (Matroska: a ``cover.png``
    image attachment, which FFmpeg shows as an attached picture; MP4: an attached-picture
    MJPEG stream with its one packet), a ``timecode`` (the video's tag: a tmcd track
    in MOV/MP4) and ``klv``: a KLV data stream with one packet per frame (MPEG-TS)."""
    out: Any = av.open(str(path), "w")
    try:
        fmt = out.format.name
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.codec_context.time_base = video.time_base = Fraction(1, 24)
        video.codec_context.options = {"preset": "ultrafast"}
        if timecode is not None:
            video.metadata["timecode"] = timecode
        sub = None
        if ass:
            sub = out.add_stream("ass")
            sub.time_base = sub.codec_context.time_base = Fraction(1, 1000)
            sub.codec_context.subtitle_header = DEFAULT_ASS_HEADER.replace(b",Arial,", b",Font,")
        for name, mimetype, payload in attachments:
            out.add_attachment(name, mimetype, payload)
        picture = None
        if cover is not None and fmt == "matroska":
            out.add_attachment("cover.png", "image/png", cover)
        elif cover is not None:
            picture = out.add_stream("mjpeg")
            picture.width = picture.height = 16
            picture.pix_fmt = "yuvj420p"
            picture.disposition = ATTACHED_PIC
        data = out.add_data_stream("klv") if klv else None
        out.start_encoding()
        if picture is not None:
            packet = av.Packet(cover)
            packet.stream, packet.time_base, packet.pts, packet.dts = picture, Fraction(1, 24), 0, 0
            out.mux(packet)
        y, x = np.mgrid[0:H, 0:W]
        for i in range(FRAMES):
            rgb = np.stack([(x * 4 + i * 8) % 256, y * 5, (x + y + i * 16) % 256], -1)
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
            if data is not None:
                packet = av.Packet(KLV_KEY + bytes([i]) * 4)
                packet.stream, packet.time_base, packet.pts, packet.dts = (
                    data,
                    Fraction(1, 24),
                    i,
                    i,
                )
                out.mux(packet)
        out.mux(video.encode(None))
        if sub is not None:
            for cue, start in enumerate((0, 250)):
                text = f"0,0,Default,,0,0,0,,Line {cue + 1}".encode()
                cues = av.subtitles.subtitle.SubtitleSet.create(text, 0, 200, pts=start)
                packet = sub.codec_context.encode_subtitle(cues)
                packet.stream, packet.time_base = sub, Fraction(1, 1000)
                out.mux(packet)
    finally:
        out.close()
    return path


# -- reading back -------------------------------------------------------------------------


def attachments(path: Path) -> dict[str, tuple[str | None, bytes]]:
    """Attachments by file name: (MIME type, bytes)."""
    with av.open(str(path)) as c:
        return {str(s.name): (s.mimetype, s.data) for s in c.streams.attachments}


def covers(path: Path) -> list[tuple[str, bytes, str | None]]:
    """Each attached picture: (codec, the bytes of its one packet, its file name tag)."""
    with av.open(str(path)) as c:
        streams = [s for s in c.streams.video if s.disposition & ATTACHED_PIC]
        if not streams:
            return []
        data: dict[int, bytes] = {}
        for packet in c.demux(streams):  # FFmpeg queues attached pictures first
            if packet.size:
                data.setdefault(packet.stream_index, bytes(packet))
            if len(data) == len(streams):
                break
        return [(s.codec_context.name, data[s.index], s.metadata.get("filename")) for s in streams]


def upscaled(path: Path) -> tuple[int, int, int]:
    """The real video's width, height and decoded frame count."""
    with av.open(str(path)) as c:
        (video,) = [s for s in c.streams.video if not s.disposition & ATTACHED_PIC]
        frames = sum(1 for _ in c.decode(video))
        return video.codec_context.width, video.codec_context.height, frames


def timecodes(path: Path) -> tuple[list[str], list[str]]:
    """The video stream's timecode tag (any case) and the data streams' (tmcd tracks)."""
    with av.open(str(path)) as c:
        video = [
            v for s in c.streams.video for k, v in s.metadata.items() if k.lower() == "timecode"
        ]
        data = [s.metadata["timecode"] for s in c.streams.data if "timecode" in s.metadata]
        return video, data


def data_packets(path: Path) -> list[list[bytes]]:
    """The payload of every packet of each data stream."""
    with av.open(str(path)) as c:
        streams = list(c.streams.data)
        found: dict[int, list[bytes]] = {s.index: [] for s in streams}
        if streams:
            for packet in c.demux(streams):
                if packet.size:
                    found[packet.stream_index].append(bytes(packet))
        return [found[s.index] for s in streams]


# -- what each output must hold -------------------------------------------------------------

#: (input, output suffix) -> the fidelity report's (index, kind, fate) after the video
EXPECTED: dict[tuple[str, str], list[tuple[int, str, str]]] = {
    ("att.mkv", ".mkv"): [(1, "subtitle", "copied"), (2, "attachment", "copied")]
    + [(3, "cover art", "copied")],
    ("att.mkv", ".mp4"): [(1, "subtitle", "converted"), (2, "attachment", "dropped")]
    + [(3, "cover art", "copied")],
    ("cover.mp4", ".mp4"): [(1, "cover art", "copied")],
    ("cover.mp4", ".mkv"): [(1, "cover art", "copied")],
    ("cover.mkv", ".mp4"): [(1, "cover art", "copied")],
    ("cover.mkv", ".mkv"): [(1, "cover art", "copied")],
    ("cover.mp4", ".mov"): [(1, "cover art", "dropped")],
    ("tc.mov", ".mov"): [(1, "data", "copied")],
    ("tc.mp4", ".mp4"): [(1, "data", "copied")],
    ("tc.mov", ".mkv"): [(1, "data", "converted")],
    ("klv.ts", ".mov"): [(1, "data", "copied")],
    ("klv.ts", ".mkv"): [(1, "data", "dropped")],
    ("klv.ts", ".ts"): [(1, "data", "copied")],
}
#: (input, output suffix) -> what the one warning about dropped streams names
WARNED = {
    ("att.mkv", ".mp4"): "attachment(s) of mp4 output: Font.ttf (#2)",
    ("cover.mp4", ".mov"): "cover art of mov output: #1 (mjpeg)",
    ("klv.ts", ".mkv"): "data stream(s) of matroska output: #1 (klv)",
}


def check_kept(src: Path, out: Path, fidelity: dict[str, Any]) -> None:
    """``out`` holds the upscaled video and what ``EXPECTED`` says, with the same bytes;
    the fidelity report says so."""
    key = (src.name, out.suffix)
    fates = [(s["index"], s["kind"], s["fate"]) for s in fidelity["streams"]]
    assert fates == [(0, "video", "upscaled"), *EXPECTED[key]]
    details = {s["index"]: s["detail"] for s in fidelity["streams"]}
    assert upscaled(out) == (2 * W, 2 * H, FRAMES)  # the real video, not the cover
    mkv = out.suffix == ".mkv"
    if src.name == "att.mkv":
        assert details[2] == "Font.ttf" if mkv else "Font.ttf" in details[2]
        assert attachments(out) == ({"Font.ttf": FONT[1:]} if mkv else {})
        assert covers(out) == [("png", PNG, "cover.png" if mkv else None)]
        if mkv:
            assert packets(out, "subtitle") == packets(src, "subtitle")
            with av.open(str(out)) as c:
                assert c.streams.subtitles[0].codec_context.name in ("ass", "ssa")
        else:
            cues = [c for c in packets(out, "subtitle")[0] if len(c) > 2]  # mov_text: no gaps
            assert cues == [b"\x00\x06Line 1", b"\x00\x06Line 2"]
    elif src.name.startswith("cover."):
        if out.suffix == ".mov":
            assert covers(out) == [] and "cannot hold cover art" in details[1]
        else:
            image = (
                ("mjpeg", JPEG, "cover.jpg") if src.suffix == ".mp4" else ("png", PNG, "cover.png")
            )
            assert covers(out) == [image if mkv else (*image[:2], None)]
    elif src.name.startswith("tc."):
        if mkv:  # no timecode track in Matroska: the video's TIMECODE tag
            assert timecodes(out) == ([TIMECODE], [])
            assert TIMECODE in details[1] and "timecode tag" in details[1]
        else:  # a tmcd track with the same value (its one sample: the frame number)
            assert timecodes(out) == ([TIMECODE], [TIMECODE])
            assert data_packets(out) == data_packets(src) == [[(24 * 3600).to_bytes(4, "big")]]
    elif src.name == "klv.ts":
        if mkv:
            assert data_packets(out) == [] and "cannot hold" in details[1]
        else:
            assert data_packets(out) == data_packets(src) and len(data_packets(src)[0]) == FRAMES


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged() -> Any:
    """The vsr logger's warnings during the test (whatever the CLI did to the logger)."""
    log = logging.getLogger("vsr")
    records, level = _Records(), log.level
    log.addHandler(records)
    log.setLevel(logging.WARNING)
    yield records.messages
    log.removeHandler(records)
    log.setLevel(level)


def check_warned(src: Path, out: Path, messages: list[str]) -> None:
    """One warning about dropped streams where ``WARNED`` expects it, else none."""
    dropping = [m for m in messages if m.startswith("dropping ")]
    expected = WARNED.get((src.name, out.suffix))
    assert len(dropping) == (1 if expected else 0), dropping
    if expected:
        assert expected in dropping[0]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("kept")
    return {
        "att.mkv": make_clip(d / "att.mkv", ass=True, attachments=(FONT,), cover=PNG),
        "cover.mp4": make_clip(d / "cover.mp4", cover=JPEG),
        "cover.mkv": make_clip(d / "cover.mkv", cover=PNG),
        "tc.mov": make_clip(d / "tc.mov", timecode=TIMECODE),
        "tc.mp4": make_clip(d / "tc.mp4", timecode=TIMECODE),
        "klv.ts": make_clip(d / "klv.ts", klv=True),
    }


def test_generated_inputs_hold_what_they_say(media: dict[str, Path]) -> None:
    assert attachments(media["att.mkv"]) == {"Font.ttf": FONT[1:]}
    assert covers(media["att.mkv"]) == [("png", PNG, "cover.png")]  # an image attachment
    assert covers(media["cover.mp4"]) == [("mjpeg", JPEG, None)]
    assert timecodes(media["tc.mov"]) == timecodes(media["tc.mp4"]) == ([TIMECODE], [TIMECODE])
    assert len(data_packets(media["klv.ts"])[0]) == FRAMES
    assert all(upscaled(p) == (W, H, FRAMES) for p in media.values())


# -- vsr run ------------------------------------------------------------------------------


def _cfg(src: Path, out: Path) -> RunConfig:
    return RunConfig.from_values({"input": src, "output": out, "quiet": True, **FAST})


@pytest.mark.slow
def test_vsr_run_keeps_font_cover_and_ass(media: dict[str, Path], tmp_path: Path) -> None:
    src, out = media["att.mkv"], tmp_path / "att.mkv"
    res = CliRunner().invoke(
        app,
        ["run", str(src), "-o", str(out), "-m", "bicubic", "-x", "2", "--device", "cpu"]
        + ["--json"],
    )
    assert res.exit_code == 0, res.output
    check_kept(src, out, json.loads(res.stdout)["fidelity"])


RUN_CASES = sorted(EXPECTED)


@pytest.mark.parametrize(
    ("name", "suffix"), RUN_CASES, ids=[f"{n}-to-{s[1:]}" for n, s in RUN_CASES]
)
def test_run_keeps_what_the_container_holds(
    media: dict[str, Path], tmp_path: Path, warnings_logged: list[str], name: str, suffix: str
) -> None:
    src, out = media[name], tmp_path / f"out{suffix}"
    report = run(_cfg(src, out))
    check_kept(src, out, report.fidelity)
    check_warned(src, out, warnings_logged)


# -- vsr run --resume ---------------------------------------------------------------------

RESUME_CASES = [
    ("att.mkv", ".mkv"),
    ("att.mkv", ".mp4"),
    ("cover.mp4", ".mp4"),
    ("cover.mkv", ".mkv"),
    ("tc.mov", ".mov"),
    ("tc.mp4", ".mp4"),
    ("tc.mov", ".mkv"),
    ("klv.ts", ".mov"),
]


@pytest.mark.parametrize(
    ("name", "suffix"), RESUME_CASES, ids=[f"{n}-to-{s[1:]}" for n, s in RESUME_CASES]
)
def test_resume_join_keeps_what_the_container_holds(
    media: dict[str, Path], tmp_path: Path, warnings_logged: list[str], name: str, suffix: str
) -> None:
    """The segments are video only (no warning per segment); the join writes the rest
    (the timecode of a stream-copied video too)."""
    src, out = media[name], tmp_path / f"out{suffix}"
    report = run_segmented(_cfg(src, out), segment_seconds=0.2)
    assert report.segments >= 2
    check_kept(src, out, report.fidelity)
    check_warned(src, out, warnings_logged)


# -- vsr batch ----------------------------------------------------------------------------


@pytest.mark.slow
def test_batch_keeps_what_the_container_holds(media: dict[str, Path], tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    names = ["att.mkv", "cover.mp4", "tc.mov", "klv.ts"]
    for name in names:
        (folder / name).write_bytes(media[name].read_bytes())
    cfg = BatchConfig(inputs=(str(folder),), out=out, options=dict(FAST), progress=False)
    report = run_batch(cfg)
    assert report.failed == 0
    with Ledger.open(out, readonly=True) as ledger:
        rows = {Path(r.input).name: r for r in ledger.rows()}
    assert sorted(rows) == sorted(names)
    for name in names:
        row = rows[name]
        assert row.output is not None and row.fidelity is not None
        check_kept(folder / name, Path(row.output), row.fidelity)
