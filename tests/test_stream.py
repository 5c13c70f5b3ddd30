"""vsr stream: loopback senders (PyAV writing MPEG-TS over TCP/UDP on 127.0.0.1 at 30 fps),
the drop-oldest policy, reconnects, several sinks, SIGINT, and the V4L2 path (fake camera)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from fake_capture import FakeCapture

from vsr.live.policy import LatestQueue
from vsr.live.source import AvSource
from vsr.live.stats import percentile
from vsr.live.stream import StreamConfig, stream
from vsr.media.frame import Frame
from vsr.pipeline.channel import Stopped

W, H, FPS = 64, 48, 30
REPO = Path(__file__).resolve().parent.parent


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_udp_bound(port: int, limit: float = 45.0) -> None:
    """Wait until a UDP socket is bound to ``port`` (the receiver is listening; building
    its backend first can take seconds: an OpenVINO conversion on a loaded machine). Where
    ``/proc/net/udp`` does not exist, wait one second."""
    table = Path("/proc/net/udp")
    if not table.exists():
        time.sleep(1.0)
        return
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for line in table.read_text().splitlines()[1:]:
            if int(line.split()[1].split(":")[1], 16) == port:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing bound UDP port {port} within {limit:g} s")


def send_ts(
    url: str,
    frames: int,
    *,
    start: int = 0,
    audio: bool = True,
    fmt: str = "mpegts",
    options: dict[str, str] | None = None,
    realtime: bool = True,
) -> int:
    """Write ``frames`` 64x48 H.264 frames (+ AAC) as ``fmt`` (MPEG-TS) to ``url`` at 30 fps
    real time (or at once); return how many were sent."""
    opts = {"flush_packets": "1"}  # else the 32 KiB AVIO buffer sends ~1 s bursts
    out: Any = av.open(url, "w", format=fmt, options={**opts, **(options or {})})
    try:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency"}
        v.codec_context.gop_size = FPS  # a keyframe a second, as live senders do
        a = out.add_stream("aac", rate=48000, layout="stereo") if audio else None
        # PyAV opens the output (for a ``?listen`` URL: waits for the receiver) only when
        # the header is written; write it now, so the 30 fps clock starts once a receiver
        # is there instead of sending the frames that "fell due" meanwhile in one burst.
        out.start_encoding()
        t0 = time.monotonic()
        sample = 0
        for i in range(frames):
            delay = t0 + i / FPS - time.monotonic()
            if delay > 0 and realtime:
                time.sleep(delay)
            img = np.zeros((H, W, 3), np.uint8)
            img[..., 0] = (np.arange(W) * 4 + (start + i) * 5) % 256
            img[..., 1] = (np.arange(H)[:, None] * 5) % 256
            vf = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            vf.pts = i
            vf.time_base = Fraction(1, FPS)
            for p in v.encode(vf):
                out.mux(p)
            while a is not None and sample < (i + 1) * 48000 // FPS:
                t = (sample + np.arange(1024)) / 48000
                tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(
                    np.stack([tone, tone]), format="fltp", layout="stereo"
                )
                af.sample_rate, af.pts, af.time_base = 48000, sample, Fraction(1, 48000)
                for p in a.encode(af):
                    out.mux(p)
                sample += 1024
        for p in v.encode(None):
            out.mux(p)
        if a is not None:
            for p in a.encode(None):
                out.mux(p)
    finally:
        out.close()
    return frames


def count_media(path: Path) -> tuple[int, int, tuple[int, int]]:
    """(video frames decoded, audio packets, video size) of a recording."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        size = (vs.codec_context.width, vs.codec_context.height)
        frames = sum(1 for _ in c.decode(video=0))  # flushes the decoder at the end
    with av.open(str(path)) as c:
        audio = sum(1 for p in c.demux(audio=0) if p.size) if c.streams.audio else 0
    return frames, audio, size


class Slow:
    """A model too slow for 30 fps: nearest-neighbour x2 after a sleep."""

    scale = 2

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def upscale(self, frames: list[Frame]) -> list[Frame]:
        time.sleep(self.seconds)
        return [
            Frame(
                f.index,
                f.pts,
                f.time_base,
                tuple(np.repeat(np.repeat(p, 2, 0), 2, 1) for p in f.planes),  # type: ignore[arg-type]
                f.pix_fmt,
            )
            for f in frames
        ]


def start_sender(url: str, frames: int, *, audio: bool = True) -> subprocess.Popen[bytes]:
    """The loopback sender in its own process (PyAV's blocking open holds the GIL)."""
    args = [sys.executable, str(Path(__file__).resolve()), "send", url, str(frames)]
    if not audio:
        args.append("noaudio")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    SENDERS.append(proc)
    if url.startswith("tcp://") and url.endswith("?listen"):
        wait_listening(int(url.rsplit(":", 1)[1].split("?")[0]), proc)
    return proc


def wait_listening(port: int, proc: subprocess.Popen[bytes], limit: float = 45.0) -> None:
    """Wait until a TCP socket listens on ``port`` (read from /proc/net/tcp, so the
    sender's single accept is not used up by a probe), or the sender has died. On a
    loaded machine the sender's start (Python, PyAV) can take many seconds; a sender that
    never listens fails here, not as a refused connection later."""
    tcp = Path("/proc/net/tcp")
    if not tcp.exists():
        time.sleep(2.0)
        return
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        for line in tcp.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                return
        time.sleep(0.05)
    if proc.poll() is None:
        raise TimeoutError(f"the sender did not listen on port {port} within {limit:g} s")


SENDERS: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def no_leftover_senders() -> Any:
    """A test that fails before it stops its sender must not leave it listening."""
    yield
    while SENDERS:
        proc = SENDERS.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def hard_timeout() -> Any:
    """No test here may hang: SIGALRM fails it after 60 s."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError("test took longer than 60 s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def finish_sender(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""


def live_cfg(source: str, sinks: list[Path], **kw: Any) -> StreamConfig:
    base: dict[str, Any] = {
        "model": "bicubic",
        "scale": 2,
        "device": "cpu",
        "reconnect": 2,
        "backoff": 0.2,
        "timeout": 2.0,
        "duration": 25.0,  # a safety net: every run here ends by itself well before
        "overwrite": True,
    }
    base.update(kw)
    return StreamConfig.from_values(source, sinks=tuple(str(s) for s in sinks), **base)


# -- units ---------------------------------------------------------------------------------


def test_latest_queue_drops_oldest_and_counts() -> None:
    q: LatestQueue[int] = LatestQueue(3, threading.Event())
    dropped = [q.put(i) for i in range(5)]
    assert dropped == [None, None, None, 0, 1]
    assert q.dropped == 2 and len(q) == 3
    q.close()
    assert [q.get(), q.get(), q.get()] == [2, 3, 4]
    with pytest.raises(EOFError):
        q.get()


def test_latest_queue_keep_all_blocks_until_stopped() -> None:
    stop = threading.Event()
    q: LatestQueue[int] = LatestQueue(1, stop, keep_all=True)
    q.put(1)
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(Stopped):
        q.put(2)  # blocks (lossless) until the stop
    assert q.dropped == 0


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(101)], 95) == 95.0


# -- loopback: PyAV sender -> vsr stream ------------------------------------------------


@pytest.mark.slow
def test_tcp_loopback_fast_model_keeps_frames_and_audio(tmp_path: Path) -> None:
    port = free_port()
    sender = start_sender(f"tcp://127.0.0.1:{port}?listen", 90)
    out = tmp_path / "rec.mkv"
    report = stream(live_cfg(f"tcp://127.0.0.1:{port}", [out]))
    finish_sender(sender)
    frames, audio_packets, size = count_media(out)
    assert size == (2 * W, 2 * H)
    assert frames >= 0.95 * 90, report.stats
    assert audio_packets > 100  # ~3 s of 48 kHz AAC is ~140 packets
    assert report.stats["frames_out"] == frames
    assert report.stats["latency_p95_ms"] is not None
    assert report.stopped == "source lost"  # the sender ended; retries ran out


@pytest.mark.slow
def test_udp_loopback_fast_model(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    out = tmp_path / "rec.ts"
    result: dict[str, Any] = {}

    def receive() -> None:
        result["report"] = stream(live_cfg(f"udp://127.0.0.1:{port}", [out], reconnect=0))

    t = threading.Thread(target=receive)
    t.start()
    wait_udp_bound(port)  # the receiver binds the port first
    sender = start_sender(f"udp://127.0.0.1:{port}?pkt_size=1316", 90)
    finish_sender(sender)
    t.join(timeout=30)
    assert not t.is_alive()
    frames, audio_packets, size = count_media(out)
    assert size == (2 * W, 2 * H)
    assert frames >= 0.95 * 90, result["report"].stats
    assert audio_packets > 50


@pytest.mark.slow
def test_slow_model_drops_and_bounds_latency(tmp_path: Path) -> None:
    port = free_port()
    sender = start_sender(f"tcp://127.0.0.1:{port}?listen", 90, audio=False)
    out = tmp_path / "slow.mkv"
    cfg = live_cfg(f"tcp://127.0.0.1:{port}", [out], max_latency_ms=400.0)
    report = stream(cfg, upscaler=Slow(0.1))  # 10 fps for a 30 fps source
    finish_sender(sender)
    st = report.stats
    assert st["dropped"] > 30
    assert st["frames_in"] == st["frames_out"] + st["dropped"]
    assert st["latency_p95_ms"] < 400.0
    assert st["bottleneck"] == "model"
    assert count_media(out)[0] == st["frames_out"]


@pytest.mark.slow
def test_sender_restart_is_survived(tmp_path: Path) -> None:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}?listen"
    first = start_sender(url, 45)
    out = tmp_path / "restart.mkv"
    result: dict[str, Any] = {}

    def receive() -> None:
        result["report"] = stream(live_cfg(f"tcp://127.0.0.1:{port}", [out], reconnect=4))

    t = threading.Thread(target=receive)
    t.start()
    finish_sender(first)
    second = start_sender(url, 45)  # the sender comes back on the same port
    finish_sender(second)
    t.join(timeout=30)
    assert not t.is_alive()
    report = result["report"]
    assert report.stats["reconnects"] >= 1
    frames, audio_packets, _ = count_media(out)
    assert frames >= 0.9 * 90, report.stats
    with av.open(str(out)) as c:
        pts = [int(f.pts) for f in c.decode(video=0) if f.pts is not None]
    assert len(pts) == frames and pts == sorted(pts) and len(set(pts)) == len(pts)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ext", "sig"),
    [("mkv", signal.SIGINT), ("mp4", signal.SIGINT), ("ts", signal.SIGTERM)],
)
def test_signal_leaves_a_complete_recording(tmp_path: Path, ext: str, sig: int) -> None:
    port = free_port()
    sender = start_sender(f"tcp://127.0.0.1:{port}?listen", 240)
    out = tmp_path / f"cut.{ext}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "vsr", "stream", f"tcp://127.0.0.1:{port}", "-o", str(out)]
    cmd += ["-m", "bicubic", "-x", "2", "--device", "cpu", "--json", "--reconnect", "3"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 5000):
        time.sleep(0.1)
    assert proc.poll() is None
    time.sleep(1.0)  # well inside the sender's 8 s
    on_disk = out.stat().st_size
    assert on_disk > 5000  # written as it goes (flushed), not only at the end
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    sender.kill()
    sender.wait()
    assert proc.returncode == 0, (stderr.decode(), stdout.decode()[-300:])
    report = json.loads(stdout)
    assert report["stopped"] == "interrupt"
    n_frames, audio_packets, size = count_media(out)
    assert size == (2 * W, 2 * H)
    written = report["stats"]["frames_out"]
    assert written > 30
    # Every frame the sink wrote is in the file: the trailer was written (a recording cut
    # at its last complete cluster or fragment would be short by up to a second).
    assert n_frames == written
    assert audio_packets > 0


@pytest.mark.slow
def test_realtime_file_to_several_sinks(tmp_path: Path) -> None:
    from vsr.media.sample import make_sample_clip

    clip = make_sample_clip(tmp_path / "in.mp4", width=W, height=H, frames=30, rate=Fraction(30))
    sinks = [tmp_path / "a.mkv", tmp_path / "b.ts", tmp_path / "c.mp4"]
    t0 = time.monotonic()
    report = stream(live_cfg(str(clip), sinks, realtime=True))
    assert time.monotonic() - t0 >= 0.9  # paced at 30 fps, not decoded flat out
    assert report.stopped == "end"
    for sink in sinks:
        frames, audio_packets, size = count_media(sink)
        assert (frames, size) == (30, (2 * W, 2 * H)), sink
        assert audio_packets > 0, sink


@pytest.mark.slow
def test_v4l2_path_with_fake_camera(tmp_path: Path) -> None:
    fake = FakeCapture(W, H, fps=30, frames=30)
    cfg = live_cfg("/dev/video0", [tmp_path / "cam.mkv"], input_size=(W, H), input_fps=30.0)
    src = AvSource(
        "/dev/video0", input_size=(W, H), input_fps=30.0, reconnect=0, opener=fake, audio=False
    )
    report = stream(cfg, source=src)
    target, kwargs = fake.calls[0]
    assert target == "/dev/video0" and kwargs["format"] == "v4l2"
    assert kwargs["options"] == {"video_size": f"{W}x{H}", "framerate": "30"}
    assert report.input_size == (W, H) and report.stats["frames_in"] == 30
    frames, audio_packets, size = count_media(tmp_path / "cam.mkv")
    assert frames == report.stats["frames_out"] >= 28 and size == (2 * W, 2 * H)
    assert audio_packets == 0


def test_cli_stream_json_and_usage_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vsr.cli import app
    from vsr.media.sample import make_sample_clip

    clip = make_sample_clip(tmp_path / "in.mkv", width=W, height=H, frames=12, rate=Fraction(30))
    out, fresh = tmp_path / "o.mkv", tmp_path / "fresh.mkv"
    runner = CliRunner()
    args = ["stream", str(clip), "-o", str(out), "-m", "bicubic", "-x", "2", "--device", "cpu"]
    res = runner.invoke(app, [*args, "--realtime", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["stats"]["frames_out"] == 12 and report["output_size"] == [2 * W, 2 * H]
    for bad, needle in (
        (["stream", str(clip)], "nothing to do"),
        (["stream", str(clip), "-o", str(tmp_path / "x.avi")], "unknown extension"),
        (["stream", str(clip), "-o", str(out)], "output exists"),
        (["stream", "gopher://x", "-o", str(fresh)], "unsupported stream URL scheme"),
        (["stream", str(clip), "-o", str(fresh), "-m", "auto"], "needs --target-fps"),
    ):
        res = runner.invoke(app, bad)
        assert res.exit_code == 2, (bad, res.output)
        assert needle in res.output


@pytest.mark.slow
def test_udp_sink_and_stdout_pipe(tmp_path: Path) -> None:
    """A file played in real time to a UDP MPEG-TS sink (read back by a receiver process)
    and to nut on stdout at once."""
    import io

    from vsr.media.sample import make_sample_clip

    clip = make_sample_clip(tmp_path / "in.mp4", width=W, height=H, frames=45, rate=Fraction(30))
    port = free_port(socket.SOCK_DGRAM)
    # Opening waits up to 20 s for the first packet (vsr imports torch first); once
    # packets flow, a 3 s silence ends the read.
    receiver_code = (
        "import av\n"
        f"c=av.open('udp://127.0.0.1:{port}',options={{'timeout':'20000000'}},timeout=(20,3))\n"
        "n=w=h=0\n"
        "try:\n"
        "    for f in c.decode(video=0): n+=1; w,h=f.width,f.height\n"
        "except Exception: pass\n"
        "print(n, w, h, len(c.streams.audio))\n"
    )
    receiver = subprocess.Popen(
        [sys.executable, "-c", receiver_code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    time.sleep(1.0)  # the receiver binds the port first
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "vsr", "stream", str(clip), "--realtime", "-q"]
    cmd += ["-o", f"udp://127.0.0.1:{port}?pkt_size=1316", "-o", "-"]
    cmd += ["-m", "bicubic", "-x", "2", "--device", "cpu"]
    res = subprocess.run(cmd, env=env, capture_output=True, timeout=40)
    assert res.returncode == 0, res.stderr.decode()
    piped: Any = av.open(io.BytesIO(res.stdout), format="nut")
    with piped as c:
        assert c.streams.audio
        frames = [f for f in c.decode(video=0)]
    assert len(frames) == 45 and (frames[0].width, frames[0].height) == (2 * W, 2 * H)
    out, err = receiver.communicate(timeout=20)
    n, w, h, n_audio = (int(v) for v in out.split())
    assert (w, h, n_audio) == (2 * W, 2 * H, 1)
    assert n >= 40, err.decode()[-500:]


@pytest.mark.slow
def test_stdin_pipe_source(tmp_path: Path) -> None:
    """``vsr stream -``: MPEG-TS on stdin, read to its end (no reconnect on a pipe)."""
    ts = tmp_path / "in.ts"
    send_ts(str(ts), 60, realtime=False)
    out = tmp_path / "piped.mkv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "vsr", "stream", "-", "-o", str(out), "--json"]
    cmd += ["-m", "bicubic", "-x", "2", "--device", "cpu", "--keep-all"]
    with ts.open("rb") as stdin:
        res = subprocess.run(cmd, env=env, stdin=stdin, capture_output=True, timeout=50)
    assert res.returncode == 0, res.stderr.decode()[-500:]
    report = json.loads(res.stdout)
    assert report["stopped"] == "end" and report["stats"]["frames_out"] == 60
    frames, audio_packets, size = count_media(out)
    assert (frames, size) == (60, (2 * W, 2 * H))
    assert audio_packets > 50


def test_hls_over_http_source(tmp_path: Path) -> None:
    """An HLS playlist served over HTTP on 127.0.0.1: every segment is read once, and the
    end of the playlist ends the run (a VOD playlist is not played again)."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    hls = tmp_path / "hls"
    hls.mkdir()
    hls_opts = {"hls_time": "1", "hls_list_size": "0", "hls_playlist_type": "vod"}
    send_ts(str(hls / "index.m3u8"), 90, fmt="hls", options=hls_opts, realtime=False)
    assert len(list(hls.glob("*.ts"))) >= 2

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(hls)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.m3u8"
        out = tmp_path / "hls.mkv"
        report = stream(live_cfg(url, [out], keep_all=True, reconnect=3))
    finally:
        server.shutdown()
        server.server_close()
    assert report.stopped == "end" and report.stats["reconnects"] == 0
    frames, audio_packets, size = count_media(out)
    assert (frames, size) == (90, (2 * W, 2 * H))
    assert report.stats["frames_out"] == 90 and audio_packets > 100


@pytest.mark.slow
def test_rtp_sink(tmp_path: Path) -> None:
    """RTP MPEG-TS to 127.0.0.1, read back by a receiver process (static payload type 33,
    so no SDP is needed)."""
    from vsr.media.sample import make_sample_clip

    clip = make_sample_clip(tmp_path / "in.mp4", width=W, height=H, frames=90, rate=Fraction(30))
    port = free_port(socket.SOCK_DGRAM) & ~1  # RTP on an even port, RTCP on the next
    receiver_code = (
        "import av\n"
        f"c=av.open('rtp://127.0.0.1:{port}',options={{'timeout':'20000000'}},timeout=(20,3))\n"
        "n=w=h=0\n"
        "try:\n"
        "    for f in c.decode(video=0): n+=1; w,h=f.width,f.height\n"
        "except Exception: pass\n"  # 3 s of silence ends the read
        "print(n, w, h)\n"
    )
    receiver = subprocess.Popen(
        [sys.executable, "-c", receiver_code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    time.sleep(1.0)  # the receiver binds the port first
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "vsr", "stream", str(clip), "--realtime", "-q"]
    cmd += ["-o", f"rtp://127.0.0.1:{port}?pkt_size=1316", "-m", "bicubic", "-x", "2"]
    cmd += ["--device", "cpu"]
    res = subprocess.run(cmd, env=env, capture_output=True, timeout=40)
    assert res.returncode == 0, res.stderr.decode()
    out, err = receiver.communicate(timeout=20)
    n, w, h = (int(v) for v in out.split())
    assert (w, h) == (2 * W, 2 * H)
    # Two known losses, both outside vsr (the same receiver over udp:// gets all 90):
    # FFmpeg's RTP demuxer starts at the second keyframe (one a second), and its RTP
    # MPEG-TS muxer never sends its last partial payload, so the last frame is cut.
    assert n >= 90 - FPS - 1, err.decode()[-500:]


@pytest.mark.slow
def test_rtmp_sink(tmp_path: Path) -> None:
    """An RTMP (FLV) sink pushing to a receiver in FFmpeg's RTMP listen mode on 127.0.0.1."""
    from vsr.media.sample import make_sample_clip

    clip = make_sample_clip(tmp_path / "in.mp4", width=W, height=H, frames=60, rate=Fraction(30))
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/vsr"
    receiver_code = (
        "import av\n"
        f"c=av.open('{url}',options={{'listen':'1'}},timeout=(30,5))\n"
        "n=w=h=0\n"
        "try:\n"
        "    for f in c.decode(video=0): n+=1; w,h=f.width,f.height\n"
        "except Exception: pass\n"  # the publisher closing ends the read
        "print(n, w, h, len(c.streams.audio))\n"
    )
    receiver = subprocess.Popen(
        [sys.executable, "-c", receiver_code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_listening(port, receiver)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "vsr", "stream", str(clip), "--realtime", "-q", "-o", url]
    cmd += ["-m", "bicubic", "-x", "2", "--device", "cpu"]
    res = subprocess.run(cmd, env=env, capture_output=True, timeout=40)
    assert res.returncode == 0, res.stderr.decode()
    out, err = receiver.communicate(timeout=20)
    n, w, h, n_audio = (int(v) for v in out.split())
    assert (w, h, n_audio) == (2 * W, 2 * H, 1)
    assert n == 60, (n, err.decode()[-500:])


def srt_missing() -> bool:
    try:
        av.open("srt://127.0.0.1:9?mode=caller", timeout=0.2)
    except av.error.ProtocolNotFoundError:
        return True
    except Exception:
        return False
    return False


@pytest.mark.skipif(not srt_missing(), reason="this FFmpeg build has srt")
def test_missing_protocol_is_a_one_line_usage_error(tmp_path: Path) -> None:
    """PyAV's FFmpeg has no srt: a source or sink on it is refused in one line, exit 2."""
    from typer.testing import CliRunner

    from vsr.cli import app
    from vsr.media.sample import make_sample_clip

    clip = make_sample_clip(tmp_path / "in.mkv", width=W, height=H, frames=6, rate=Fraction(30))
    runner = CliRunner()
    base = ["-m", "bicubic", "-x", "2", "--device", "cpu"]
    for args in (
        ["stream", "srt://127.0.0.1:9000", "-o", str(tmp_path / "a.mkv"), *base],
        ["stream", str(clip), "-o", "srt://127.0.0.1:9000", *base],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert "built without the srt protocol" in res.output
        assert "Traceback" not in res.output


def test_show_without_gui_is_a_usage_error(tmp_path: Path, monkeypatch: Any) -> None:
    import cv2

    from vsr.live.sinks import check_preview

    def no_gui(*args: Any) -> None:
        raise cv2.error("The function is not implemented")

    monkeypatch.setattr(cv2, "namedWindow", no_gui)
    from vsr.errors import UsageError

    with pytest.raises(UsageError, match="needs an OpenCV with a GUI"):
        check_preview()


def test_preview_window_shows_frames_and_q_stops(tmp_path: Path, monkeypatch: Any) -> None:
    """--show with a stand-in for OpenCV's window functions: every frame is shown at the
    upscaled size, and ``q`` finishes the run (the recording is still complete)."""
    import cv2

    from vsr.media.sample import make_sample_clip

    shown: list[tuple[int, ...]] = []
    monkeypatch.setattr(cv2, "namedWindow", lambda *a: None)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *a: None)
    monkeypatch.setattr(cv2, "imshow", lambda title, img: shown.append(img.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: ord("q") if len(shown) >= 10 else -1)
    clip = make_sample_clip(tmp_path / "in.mkv", width=W, height=H, frames=60, rate=Fraction(30))
    out = tmp_path / "shown.mkv"
    report = stream(live_cfg(str(clip), [out], show=True, realtime=True, keep_all=True))
    assert report.stopped == "preview"
    assert shown[0] == (2 * H, 2 * W, 3)
    assert 10 <= len(shown) < 60
    assert count_media(out)[0] == report.stats["frames_out"] == len(shown)


def test_model_auto_picks_best_that_keeps_up(tmp_path: Path) -> None:
    from vsr.live.auto import candidates, choose_model

    names = [n for n, _ in candidates(2)]
    assert names[-1] == "bicubic" and names[0] == "edsr"  # Set5: edsr > fsrcnn > espcn
    cfg = live_cfg("x", [], model="auto")
    easy, _ = choose_model(cfg, 0.5, size=(W, H), frames=1)
    assert easy.model == "edsr" and "best-quality" in easy.reason
    hard, _ = choose_model(cfg, 1e9, size=(W, H), frames=1)
    fastest = max(hard.measured, key=lambda m: m["fps"])["model"]
    assert hard.model == fastest and "no model reaches" in hard.reason
    assert len(hard.measured) == len(names)


@pytest.mark.slow
def test_model_auto_in_a_stream(tmp_path: Path) -> None:
    from vsr.media.sample import make_sample_clip

    clip = make_sample_clip(tmp_path / "in.mkv", width=W, height=H, frames=15, rate=Fraction(30))
    cfg = live_cfg(str(clip), [tmp_path / "o.mkv"], model="auto", target_fps=0.5)
    cfg = StreamConfig(**{**cfg.__dict__, "input_size": (W, H)})
    report = stream(cfg)
    assert report.auto is not None and report.auto["model"] == report.model == "edsr"
    assert report.stats["frames_out"] + report.stats["dropped"] == 15


if __name__ == "__main__" and len(sys.argv) >= 4 and sys.argv[1] == "send":
    send_ts(sys.argv[2], int(sys.argv[3]), audio="noaudio" not in sys.argv[4:])


def test_duration_is_media_time_from_the_first_frame(tmp_path: Path) -> None:
    """--duration S records S seconds of media (FFmpeg's -t), not S seconds of wall time:
    a 2 s file read as fast as it decodes, with --duration 0.5 at 30 fps, gives exactly
    the 15 frames of its first half second, and audio up to the same end."""
    from vsr.media.sample import make_sample_clip

    clip = make_sample_clip(tmp_path / "in.mkv", width=W, height=H, frames=60, rate=Fraction(30))
    out = tmp_path / "o.mkv"
    report = stream(live_cfg(str(clip), [out], duration=0.5, keep_all=True))
    assert report.stopped == "duration"
    assert report.stats["frames_in"] == report.stats["frames_out"] == 15
    with av.open(str(out)) as c:
        pts = [f.pts * f.time_base for f in c.decode(video=0)]
        # Matroska stores milliseconds: 14 frame steps of 1/30 s, to the millisecond
        assert len(pts) == 15 and abs(max(pts) - min(pts) - Fraction(14, 30)) <= Fraction(1, 1000)
    with av.open(str(out)) as c:  # the audio is cut at the end (to an AAC frame)
        last = max(f.pts * f.time_base + Fraction(f.samples, 48000) for f in c.decode(audio=0))
    assert abs(last - Fraction(1, 2)) <= Fraction(1024, 48000), float(last)
