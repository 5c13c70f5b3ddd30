"""``vsr stream`` in real time: a 640x360 30 fps UDP MPEG-TS source upscaled live.

    python scripts/bench_live.py [--duration 60] [--model fsrcnn] [--scale 2]
                                 [--backend auto] [--target-fps 30] [--json]

1. Renders the test source once: ``../shared/data/video/rabbit320.mp4`` (cropped to 16:9,
   scaled to ``--size``, looped) or, without it, generated moving pictures; with AAC
   stereo audio (the clip's own, looped, else a tone sweep); H.264 ``veryfast``
   ``zerolatency``, a keyframe a second, as live senders do; into an MPEG-TS file
   (``--work DIR`` keeps and reuses it).
2. Starts a sender process (the loopback sender of ``tests/test_stream.py``, but a stream
   copy of the rendered file, so that it costs next to nothing) that sends it in real time,
   paced by its timestamps, as UDP MPEG-TS to ``127.0.0.1:PORT``, once ``vsr stream`` has
   bound the port (read from ``/proc/net/udp``).
3. Runs ``python -m vsr stream udp://127.0.0.1:PORT -o OUT.ts -m MODEL -x SCALE --duration
   D --json`` (``--model auto`` with ``--target-fps``; ``--backend`` passed when given), and
   reports what its JSON says: frames in (captured), out (written), dropped (queue and
   late, and % of frames in), output rate, latency p50/p95/max (capture to every sink),
   the bottleneck, the model and the backend that ran it, and the target's verdict (30 fps
   in, under ``--max-drop`` % dropped). ``--json`` prints all of it as one JSON object.

Exit status: 0 when the stream ran (``--require``: and met the target, else 3); 1 with one
``bench_live: ...`` line when the sender or the stream failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RABBIT = REPO.parent / "shared" / "data" / "video" / "rabbit320.mp4"
AUDIO_RATE = 48000
#: Seconds to wait for vsr stream to bind its port where /proc/net/udp cannot tell.
NO_PROC_WAIT = 30.0
#: The default --work folder: the rendered source is reused from one run to the next.
DEFAULT_WORK = Path(tempfile.gettempdir()) / "vsr-bench-live"


class BenchError(Exception):
    """A failure reported as one line (exit 1)."""


# -- the test source -------------------------------------------------------------------------


def _clip_pictures(path: Path, size: tuple[int, int]) -> list[Any]:
    """Every frame of ``path`` as a yuv420p array of ``size``, cropped to its aspect ratio."""
    import av

    w, h = size
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            rgb = f.to_ndarray(format="rgb24")
            fh, fw = rgb.shape[:2]
            if fw * h > fh * w:  # wider than the target: crop the sides
                cw = fh * w // h
                rgb = rgb[:, (fw - cw) // 2 : (fw - cw) // 2 + cw]
            else:  # taller: crop top and bottom
                ch = fw * h // w
                rgb = rgb[(fh - ch) // 2 : (fh - ch) // 2 + ch]
            frame = av.VideoFrame.from_ndarray(rgb.copy(), format="rgb24")
            out.append(frame.reformat(width=w, height=h, format="yuv420p").to_ndarray())
    if not out:
        raise BenchError(f"{path} has no video frames")
    return out


def _clip_audio(path: Path) -> Any | None:
    """The whole audio of ``path`` as float32 (2, samples) at 48 kHz, or ``None``."""
    import av
    import numpy as np

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
        chunks = []
        for f in c.decode(audio=0):
            chunks += [r.to_ndarray() for r in resampler.resample(f)]
        chunks += [r.to_ndarray() for r in resampler.resample(None)]
    return np.concatenate(chunks, axis=1).astype(np.float32) if chunks else None


def _generated_picture(i: int, size: tuple[int, int], fps: float) -> Any:
    """Moving content: drifting sine textures (fine detail to upscale) and a moving box."""
    import av
    import numpy as np

    w, h = size
    t = i / fps
    x = np.arange(w, dtype=np.float32)[None, :]
    y = np.arange(h, dtype=np.float32)[:, None]
    r = 128 + 100 * np.sin(0.05 * x + 2.0 * t) * np.cos(0.03 * y - 1.3 * t)
    g = 128 + 100 * np.sin(0.002 * (x - w / 2) ** 2 / 8 + 0.002 * (y - h / 2) ** 2 / 8 - 3 * t)
    b = 128 + 60 * np.sin(0.11 * (x + y) + 4.0 * t)
    rgb = np.stack(np.broadcast_arrays(r, g, b), axis=-1).clip(0, 255).astype(np.uint8)
    bx = int((w - 80) * (0.5 + 0.5 * math.sin(0.7 * t)))
    by = int((h - 80) * (0.5 + 0.5 * math.cos(0.9 * t)))
    rgb[by : by + 80, bx : bx + 80] = (240, 230, 40)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    return frame.reformat(format="yuv420p").to_ndarray()


def _tone(start: int, n: int) -> Any:
    import numpy as np

    t = (start + np.arange(n)) / AUDIO_RATE
    f = 330 + 110 * np.sin(2 * np.pi * 0.2 * t)  # a slow sweep
    tone = (0.2 * np.sin(2 * np.pi * f * t)).astype(np.float32)
    return np.stack([tone, tone])


def render_source(
    path: Path, *, clip: Path | None, size: tuple[int, int], fps: float, seconds: float
) -> str:
    """Write ``seconds`` of the test source to ``path`` (MPEG-TS); return its description."""
    import av
    import numpy as np

    frames = math.ceil(seconds * fps)
    pictures = _clip_pictures(clip, size) if clip else None
    audio = _clip_audio(clip) if clip else None
    if clip is not None:
        sound = "its audio" if audio is not None else "tone audio"
        what = f"{clip.name} cropped and scaled, looped ({len(pictures or [])} frames), {sound}"
    else:
        what = "generated moving pictures, tone audio"
    rate = Fraction(fps).limit_denominator(1001)
    tmp = path.with_name(f".{path.name}.tmp")
    out: Any = av.open(str(tmp), "w", format="mpegts")
    try:
        v = out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
        v.codec_context.options = {"preset": "veryfast", "tune": "zerolatency"}
        v.codec_context.gop_size = max(1, round(fps))
        a = out.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        a.bit_rate = 128000
        sample = 0
        for i in range(frames):
            array = pictures[i % len(pictures)] if pictures else _generated_picture(i, size, fps)
            vf = av.VideoFrame.from_ndarray(array, format="yuv420p")
            vf.pts, vf.time_base = i, 1 / rate
            for p in v.encode(vf):
                out.mux(p)
            while sample < round((i + 1) * AUDIO_RATE / fps):
                if audio is not None:
                    idx = (sample + np.arange(1024)) % audio.shape[1]
                    data = np.ascontiguousarray(audio[:, idx])
                else:
                    data = _tone(sample, 1024)
                af = av.AudioFrame.from_ndarray(data, format="fltp", layout="stereo")
                af.sample_rate, af.pts, af.time_base = AUDIO_RATE, sample, Fraction(1, AUDIO_RATE)
                for p in a.encode(af):
                    out.mux(p)
                sample += 1024
        for p in v.encode(None):
            out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    finally:
        out.close()
    tmp.replace(path)
    return what


# -- the sender (its own process: PyAV's blocking calls hold the GIL) -------------------------


def send(path: str, url: str) -> None:
    """Stream-copy ``path`` to ``url`` (MPEG-TS), paced by its timestamps in real time.
    Prints ``ready`` once set up, waits for a line on stdin, then sends; prints ``sent N``
    (video packets) at the end."""
    import av

    src = av.open(path)
    out: Any = av.open(url, "w", format="mpegts", options={"flush_packets": "1"})
    mapping = {
        s.index: out.add_stream_from_template(s)
        for s in src.streams
        if s.type in ("video", "audio")
    }
    out.start_encoding()
    print("ready", flush=True)
    sys.stdin.readline()
    t0: float | None = None
    s0 = 0.0
    video = 0
    try:
        for packet in src.demux():
            if packet.stream.index not in mapping or packet.dts is None:
                continue
            t = float(packet.dts * packet.time_base)
            if t0 is None:
                t0, s0 = time.monotonic(), t
            delay = t0 + (t - s0) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            video += packet.stream.type == "video"
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
    finally:
        out.close()
        src.close()
    print(f"sent {video}", flush=True)


# -- the run -------------------------------------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def udp_bound(port: int) -> bool | None:
    """Whether a UDP socket is bound to ``port`` (``None``: cannot tell, no /proc)."""
    table = Path("/proc/net/udp")
    if not table.exists():
        return None
    for line in table.read_text().splitlines()[1:]:
        local = line.split()[1]
        if int(local.split(":")[1], 16) == port:
            return True
    return False


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def _read_line(proc: subprocess.Popen[str], limit: float) -> str:
    """The sender's next stdout line within ``limit`` seconds ('' if it ended or timed out)."""
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout=limit):
            return ""
        return proc.stdout.readline().strip()
    finally:
        sel.close()


def count_packets(path: Path) -> int | None:
    """Video packets in the recording (the frames written), or ``None`` if unreadable."""
    import av

    try:
        with av.open(str(path)) as c:
            return sum(1 for p in c.demux(video=0) if p.size)
    except (OSError, av.error.FFmpegError):
        return None


def run(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    w, h = (int(v) for v in args.size.lower().split("x"))
    work = Path(args.work) if args.work else DEFAULT_WORK
    work.mkdir(parents=True, exist_ok=True)
    clip = None if args.generated else (Path(args.clip) if args.clip else RABBIT)
    if clip is not None and not clip.exists():
        if args.clip:
            raise BenchError(f"--clip {clip} does not exist")
        clip = None
    seconds = args.duration + args.slack
    kind = clip.stem if clip else "generated"
    source = work / f"source-{kind}-{w}x{h}-{args.fps:g}fps-{seconds:g}s.ts"
    meta = source.with_suffix(".txt")
    t0 = time.monotonic()
    if source.exists() and meta.exists():
        what = meta.read_text().strip()
        log(f"source: {source} (reused)")
    else:
        log(f"rendering the source ({seconds:g} s of {w}x{h} at {args.fps:g} fps) ...")
        what = render_source(source, clip=clip, size=(w, h), fps=args.fps, seconds=seconds)
        meta.write_text(what + "\n")
        log(f"rendered {source} in {time.monotonic() - t0:.1f} s: {what}")

    port = args.port or free_udp_port()
    url = f"udp://127.0.0.1:{port}"
    out = work / "out.ts"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    sender_cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--send",
        str(source),
        f"{url}?pkt_size=1316",
    ]
    stream_cmd = [sys.executable, "-m", "vsr", "stream", url, "-o", str(out), "-m", args.model]
    stream_cmd += [
        "-x",
        str(args.scale),
        "--duration",
        f"{args.duration:g}",
        "--json",
        "--overwrite",
    ]
    if args.backend:
        stream_cmd += ["--backend", args.backend]
    if args.model == "auto":
        stream_cmd += [
            "--target-fps",
            f"{args.target_fps or args.fps:g}",
            "--input-size",
            f"{w}x{h}",
        ]
    if args.max_latency is not None:
        stream_cmd += ["--max-latency", f"{args.max_latency:g}"]
    stream_cmd += args.extra
    log("stream: " + shlex.join(stream_cmd))

    err_path = work / "stream.stderr"
    sender = subprocess.Popen(
        sender_cmd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    t_sender = time.monotonic()
    with err_path.open("w") as err:
        streamer = subprocess.Popen(
            stream_cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO
        )
    try:
        ready = _read_line(sender, args.start_timeout)
        if ready != "ready":
            sender.kill()
            _, serr = sender.communicate()
            raise BenchError(
                f"the sender did not start within {args.start_timeout:g} s: {last_line(serr or '')}"
            )
        sender_start = time.monotonic() - t_sender
        log(f"sender ready after {sender_start:.1f} s")
        deadline = time.monotonic() + args.start_timeout
        while True:
            if streamer.poll() is not None:
                raise BenchError(
                    f"vsr stream exited ({streamer.returncode}) before receiving: "
                    f"{last_line(err_path.read_text())}"
                )
            bound = udp_bound(port)
            if bound is None:  # no /proc: give it a fixed time
                time.sleep(NO_PROC_WAIT)
                break
            if bound:
                break
            if time.monotonic() > deadline:
                raise BenchError(
                    f"vsr stream did not open {url} within {args.start_timeout:g} s "
                    f"(calibration or start-up too slow? raise --start-timeout)"
                )
            time.sleep(0.05)
        stream_start = time.monotonic() - t_sender
        log(f"vsr stream listening after {stream_start:.1f} s; sending {args.duration:g} s + slack")
        assert sender.stdin is not None
        sender.stdin.write("go\n")
        sender.stdin.flush()
        try:
            stdout, _ = streamer.communicate(timeout=args.duration + args.slack + 60)
        except subprocess.TimeoutExpired:
            streamer.kill()
            streamer.communicate()
            raise BenchError(
                f"vsr stream did not finish within {args.duration + args.slack + 60:g} s"
            ) from None
        if streamer.returncode != 0:
            raise BenchError(
                f"vsr stream failed (exit {streamer.returncode}): {last_line(err_path.read_text())}"
            )
        try:
            report = json.loads(stdout)
        except json.JSONDecodeError:
            raise BenchError(f"vsr stream printed no JSON report: {last_line(stdout)}") from None
    finally:
        for proc in (streamer, sender):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    sender_err = sender.stderr.read() if sender.stderr else ""
    if sender.returncode not in (0, -15) and sender_err.strip():
        log(f"sender: {last_line(sender_err)}")

    st = report["stats"]
    frames_in, frames_out, dropped = st["frames_in"], st["frames_out"], st["dropped"]
    expected = round(args.duration * args.fps)
    drop_pct = 100.0 * dropped / frames_in if frames_in else 100.0
    in_file = count_packets(out)
    fps_ok = frames_in >= 0.99 * expected
    drop_ok = drop_pct < args.max_drop
    result = {
        "source": f"{w}x{h} {args.fps:g} fps UDP MPEG-TS, {what}",
        "url": url,
        "duration_s": args.duration,
        "command": shlex.join(stream_cmd),
        "model": report["model"],
        "scale": report["scale"],
        "backend": report.get("backend"),
        "output_size": report.get("output_size"),
        "stopped": report["stopped"],
        "frames_expected": expected,
        "frames_in": frames_in,
        "frames_out": frames_out,
        "frames_in_file": in_file,
        "dropped": dropped,
        "dropped_queue": st["dropped_queue"],
        "dropped_late": st["dropped_late"],
        "dropped_pct": round(drop_pct, 2),
        "fps_in": st["fps_in"],
        "fps_out": st["fps_out"],
        "fps_out_media": round(frames_out / args.duration, 2) if args.duration else None,
        "latency_p50_ms": st["latency_p50_ms"],
        "latency_p95_ms": st["latency_p95_ms"],
        "latency_max_ms": st["latency_max_ms"],
        "bottleneck": st["bottleneck"],
        "busy": st.get("busy", {}),
        "reconnects": st["reconnects"],
        "sender_start_s": round(sender_start, 1),
        "stream_start_s": round(stream_start, 1),
        "cpus": os.cpu_count(),
        "load_avg": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "target": {
            "fps": args.fps,
            "max_drop_pct": args.max_drop,
            "frames_in_ok": fps_ok,
            "drop_ok": drop_ok,
            "met": fps_ok and drop_ok and report["stopped"] == "duration",
        },
        "auto": report.get("auto"),
        "report": report,
        "work": str(work),
    }
    return result


def table(r: dict[str, Any]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f} ms"

    busy = ", ".join(f"{k} {v:.2f}" for k, v in r["busy"].items())
    rows = [
        ("source", r["source"]),
        (
            "model",
            f"{r['model']} x{r['scale']} on {r['backend'] or '?'} -> "
            f"{'x'.join(map(str, r['output_size'] or ['?']))}",
        ),
        ("stopped", f"{r['stopped']} ({r['duration_s']:g} s of media)"),
        ("frames in", f"{r['frames_in']} (expected {r['frames_expected']})"),
        ("frames out", f"{r['frames_out']} (in the file: {r['frames_in_file']})"),
        (
            "dropped",
            f"{r['dropped']} = {r['dropped_pct']:.2f} % "
            f"(queue {r['dropped_queue']}, late {r['dropped_late']})",
        ),
        (
            "fps in / out",
            f"{r['fps_in']:.1f} / {r['fps_out']:.1f} (out per media second: {r['fps_out_media']})",
        ),
        (
            "latency",
            f"p50 {ms(r['latency_p50_ms'])}, p95 {ms(r['latency_p95_ms'])}, "
            f"max {ms(r['latency_max_ms'])}",
        ),
        ("bottleneck", f"{r['bottleneck'] or '-'} (busy: {busy or '-'})"),
        ("start-up", f"sender {r['sender_start_s']} s, vsr stream {r['stream_start_s']} s"),
        ("machine", f"{r['cpus']} CPUs, load {r['load_avg']}"),
    ]
    if r["auto"]:
        rows.append(("--model auto", r["auto"]["reason"]))
        timings = r["auto"].get("timings") or []
        if timings:
            rows.append(
                (
                    "calibration",
                    f"{r['auto'].get('seconds', '?')} s: "
                    + ", ".join(
                        f"{t['model']}/{t['backend']} "
                        + (
                            "error"
                            if t.get("fps") is None
                            else f"{'~' if t.get('estimated') else ''}{t['fps']:g}"
                        )
                        for t in timings
                    ),
                )
            )
    t = r["target"]
    verdict = "MET" if t["met"] else "NOT MET"
    rows.append(("target", f"{verdict}: {t['fps']:g} fps in, < {t['max_drop_pct']:g} % dropped"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--send":
        send(sys.argv[2], sys.argv[3])
        return 0
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of media (60)")
    ap.add_argument("-m", "--model", default="fsrcnn", help="model, or auto (fsrcnn)")
    ap.add_argument("-x", "--scale", type=int, default=2)
    ap.add_argument("--backend", default=None, help="passed to vsr stream (default: its own)")
    ap.add_argument("--target-fps", type=float, default=None, help="with -m auto (default --fps)")
    ap.add_argument("--size", default="640x360", help="source WxH (640x360)")
    ap.add_argument("--fps", type=float, default=30.0, help="source frame rate (30)")
    ap.add_argument("--clip", default=None, help=f"source clip to loop (default {RABBIT})")
    ap.add_argument("--generated", action="store_true", help="generated pictures, no clip")
    ap.add_argument("--max-latency", type=float, default=None, help="ms, passed to vsr stream")
    ap.add_argument("--max-drop", type=float, default=1.0, help="target: %% dropped below (1)")
    ap.add_argument("--slack", type=float, default=8.0, help="seconds sent beyond --duration")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument(
        "--work", default=None, help=f"folder for the source and output (default {DEFAULT_WORK})"
    )
    ap.add_argument(
        "--start-timeout",
        type=float,
        default=180.0,
        help="seconds the sender and vsr stream (imports, calibration) may take to start",
    )
    ap.add_argument("--require", action="store_true", help="exit 3 when the target is missed")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("extra", nargs="*", help="more vsr stream options (after --)")
    args = ap.parse_args()

    def log(msg: str) -> None:
        print(f"bench_live: {msg}", file=sys.stderr, flush=True)

    try:
        r = run(args, log)
    except BenchError as exc:
        print(f"bench_live: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_live: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(table(r))
    if not args.json:
        log(f"source and output kept in {r['work']} (the source is reused next time)")
    return 3 if args.require and not r["target"]["met"] else 0


if __name__ == "__main__":
    sys.exit(main())
