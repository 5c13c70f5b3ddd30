"""The single-file engine: ``run(config) -> RunReport``.

source -> [bounded channel] -> model stage -> [bounded channel] -> sink, on the one
:class:`~vsr.pipeline.runner.Runner`:

- source: :class:`~vsr.media.reader.Reader` (demux + decode, ``vsr.media.decode``);
- model stage: :func:`~vsr.pipeline.model_stage.add_model_stage` (one thread, or with
  several devices dispatch, one thread per device, reorder);
- sink: :class:`~vsr.media.writer.Writer` through :func:`~vsr.pipeline.sink.sink_loop`.

Audio and subtitle packets travel in demux order through the same channels (the model
stage passes them on in place around its batches), so the writer receives everything
already in time order and memory stays bounded by the channel sizes. ``vsr run
--resume`` (``vsr.pipeline.segments``) and ``vsr batch`` are built from the same parts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from vsr.backends.build import build_backends, check_opencv_options
from vsr.config import RunConfig
from vsr.errors import InputNotFoundError, OutputExistsError, UsageError
from vsr.media.codecs import check_container, check_encoder, output_format, resolve_codec
from vsr.media.decode import planar_format
from vsr.media.fidelity import Fidelity
from vsr.media.frame import Frame
from vsr.media.probe import MediaInfo, probe
from vsr.media.reader import Reader
from vsr.media.writer import Writer
from vsr.pipeline.channel import Channel
from vsr.pipeline.model_stage import add_model_stage
from vsr.pipeline.runner import Runner
from vsr.pipeline.sink import sink_loop
from vsr.pipeline.tally import Tally, stage_times

if TYPE_CHECKING:
    from vsr.backends.build import Backend

R = TypeVar("R", bound="RunReport")


@dataclass
class RunReport:
    input: str
    output: str
    model: str
    scale: int
    weights: str
    device: str
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    frames_in: int
    frames_out: int
    packets: int
    seconds: float
    fps: float
    bottleneck: str | None
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    # every input stream and what became of it, and the video decisions
    # (vsr.media.fidelity.Fidelity.to_dict)
    fidelity: dict[str, Any] = field(default_factory=dict)
    # the backend that ran the network (torch, openvino, opencv): what --backend auto chose
    backend: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def headline(self) -> str:
        busy = ", ".join(f"{k} {v['busy_fraction']:.0%}" for k, v in self.stages.items())
        w, h = self.output_size
        return (
            f"{self.output}: {w}x{h}, {self.frames_out}/{self.frames_in} frames in "
            f"{self.seconds:.1f} s ({self.fps:.1f} fps) with {self.backend or 'the model'} "
            f"on {self.device}; "
            f"busy: {busy}; bottleneck: {self.bottleneck}"
        )

    def summary(self) -> str:
        """The headline, then one indented line per input stream and video decision."""
        kept = Fidelity.from_dict(self.fidelity).lines() if self.fidelity else []
        return "\n".join([self.headline(), *(f"  {line}" for line in kept)])


def check_paths(cfg: RunConfig) -> Path:
    """Validate input and output paths; return the output path."""
    if not cfg.input.exists():
        raise InputNotFoundError(f"input not found: {cfg.input}")
    if cfg.input.is_dir():
        raise UsageError(f"input is a folder: {cfg.input}", hint="vsr run takes one video file")
    out = cfg.resolved_output()
    if out.exists():
        if out.resolve() == cfg.input.resolve() or os.path.samefile(out, cfg.input):
            raise OutputExistsError(
                f"output is the input: {out}", hint="choose another output path with -o"
            )
        if not cfg.overwrite:
            raise OutputExistsError(f"output exists: {out}", hint="pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise UsageError(f"output folder does not exist: {out.parent}")
    return out


@dataclass
class Job:
    """Everything checked and loaded before any thread starts or any file is created."""

    cfg: RunConfig
    out_path: Path
    info: MediaInfo
    backends: list[Backend]  # one per device
    out_size: tuple[int, int]
    #: ``cfg.codec``, or when that is ``None`` the output container's default encoder
    #: (``auto`` stays ``auto``: each Writer resolves it)
    codec: str | None = None

    @property
    def backend(self) -> Backend:
        """The first (often the only) backend."""
        return self.backends[0]

    @property
    def weights(self) -> str:
        """Where the weights came from (``built-in``, a path, ``none``)."""
        return self.backend.model.source

    @property
    def device(self) -> str:
        return ", ".join(b.description for b in self.backends)

    @property
    def backend_name(self) -> str:
        """The backend that runs the network: torch, openvino or opencv."""
        return self.backends[0].name

    @property
    def total_frames(self) -> int | None:
        return self.info.video.frame_count

    def writer(self, output: Path, **extra: object) -> Writer:
        """A Writer with the run's size and encoder settings (``extra``: audio, subtitles,
        video_template, codec; default audio: the run's, codec: ``cfg.codec``, which the
        Writer resolves for ``output``'s container when ``None``)."""
        cfg = self.cfg
        extra.setdefault("audio", cfg.audio)
        extra.setdefault("codec", cfg.codec)
        return Writer(
            output=output,
            source=self.info,
            source_path=cfg.input,
            width=self.out_size[0],
            height=self.out_size[1],
            crf=cfg.crf,
            preset=cfg.preset,
            pix_fmt=cfg.pix_fmt,
            device=cfg.inference.first_device,
            deinterlace=cfg.deinterlace,
            **extra,  # type: ignore[arg-type]
        )

    def add_model_stage(
        self, runner: Runner, decoded: Channel, upscaled: Channel, tally: Tally
    ) -> None:
        """The run's model stage between ``decoded`` and ``upscaled``."""
        opts = self.cfg.inference
        add_model_stage(
            runner,
            self.backends,
            decoded,
            upscaled,
            tally,
            batch_size=opts.batch_size,
            devices=opts.devices,
        )

    def report(
        self,
        cls: type[R],
        *,
        frames_in: int,
        frames_out: int,
        packets: int,
        seconds: float,
        fps_frames: int,
        runner: Runner | None,
        stage_seconds: float | None = None,
        **extra: Any,
    ) -> R:
        """The run's report: ``fps`` counts ``fps_frames`` over ``seconds``; stage times
        (busy fractions of ``stage_seconds``, default ``seconds``) and the bottleneck come
        from ``runner`` (``None``: nothing was upscaled)."""
        cfg, opts, video = self.cfg, self.cfg.inference, self.info.video
        return cls(
            input=str(cfg.input),
            output=str(self.out_path),
            model=opts.model,
            scale=opts.scale,
            weights=self.weights,
            device=self.device,
            backend=self.backend_name,
            input_size=(video.width, video.height),
            output_size=self.out_size,
            frames_in=frames_in,
            frames_out=frames_out,
            packets=packets,
            seconds=round(seconds, 3),
            fps=round(fps_frames / seconds, 2) if seconds > 0 else 0.0,
            bottleneck=runner.bottleneck() if runner is not None else None,
            stages=stage_times(runner, stage_seconds or seconds) if runner is not None else {},
            **extra,
        )


def prepare(cfg: RunConfig) -> Job:
    """Check paths, probe the input, load the model and the backend(s).

    Raises UsageError (bad paths, model, device, an encoder the output container cannot
    hold: checked before the input is even probed), WeightsError, MediaError (the input
    cannot be read). Nothing is written.
    """
    out_path = check_paths(cfg)
    fmt = output_format(out_path)
    if fmt is None:
        raise UsageError(
            f"cannot tell the output container from the name {out_path.name}",
            hint="use an extension such as .mp4, .mkv, .webm or .mov",
        )
    check_encoder(cfg.codec)
    check_container(fmt, cfg.codec)  # in memory: nothing written, nothing decoded
    info = probe(cfg.input)
    video = info.video
    opts = cfg.inference
    if opts.backend == "opencv":
        check_opencv_options(opts, bit_depth=video.bit_depth)
    backends = build_backends(
        opts, color=video.color, bit_depth=video.bit_depth, calibration_source=cfg.input
    )
    size = Writer.output_size(
        video.width * opts.scale, video.height * opts.scale, cfg.pix_fmt or video.pix_fmt
    )
    codec = cfg.codec
    if codec is None:
        wanted = cfg.pix_fmt or planar_format(video.pix_fmt)
        codec = resolve_codec(None, pix_fmt=wanted, format_name=fmt, hdr=video.is_hdr)
    return Job(cfg, out_path, info, backends, size, codec)


def run(cfg: RunConfig, *, progress: Callable[[int], None] | None = None) -> RunReport:
    """``prepare`` then ``execute``."""
    return execute(prepare(cfg), progress=progress)


def execute(job: Job, *, progress: Callable[[int], None] | None = None) -> RunReport:
    """Upscale ``job.cfg.input`` into ``job.out_path`` (reader, model stage, writer).

    Raises StageError (a stage failed: the partial output is removed) and Interrupted.
    """
    cfg = job.cfg
    runner = Runner()
    decoded = runner.channel(cfg.queue_size)
    upscaled = runner.channel(cfg.queue_size)
    tally = Tally()

    def reader_stage() -> None:
        with Reader(cfg.input, info=job.info, deinterlace=cfg.deinterlace) as reader:
            for item in reader.items():
                if isinstance(item, Frame):
                    tally.read()
                decoded.put(item)
        decoded.close()

    fidelity: list[Fidelity] = []

    def writer_stage() -> None:
        writer = job.writer(job.out_path)
        fidelity.append(writer.fidelity)
        sink_loop(upscaled, writer, tally, progress)

    runner.add("reader", reader_stage, outputs=[decoded])
    job.add_model_stage(runner, decoded, upscaled, tally)
    runner.add("writer", writer_stage, inputs=[upscaled])
    t0 = time.perf_counter()
    runner.run()
    seconds = time.perf_counter() - t0
    return job.report(
        RunReport,
        frames_in=tally.reader,
        frames_out=tally.writer,
        packets=tally.packets,
        seconds=seconds,
        fps_frames=tally.writer,
        runner=runner,
        fidelity=fidelity[0].to_dict() if fidelity else {},
    )
