"""The model stage of every mode: frames in, upscaled frames out, packets kept in place.

One device (``vsr run``, ``--resume``, ``batch``; ``vsr stream`` with batches of one)::

    decoded -> model -> upscaled

:func:`model_loop` cuts the stream into batches (:func:`batches`), upscales each batch's
frames and emits every item in its original place (:func:`emit`).

Several devices (``InferenceOptions.devices``): batches dispatched, upscaled in parallel,
reordered::

    decoded -> dispatch -> [todo, one per device] -> model[dev] x N -> [done] -> reorder -> upscaled

- ``dispatch`` cuts the decoded stream into batches exactly as the single-device model
  stage does (:func:`batches`: the same frames per batch, packets kept where they were
  between the frames, the same error on a size or format change), numbers them, and
  sends each to the next device that has a free slot.
- ``model[dev]`` (one thread per device) runs that device's ``upscale`` on its batches.
- ``reorder`` takes finished batches in whatever order they finish and emits them strictly
  in sequence order, each frame replaced by its upscaled frame and every packet in its
  place, so the writer sees the same stream as from one device.

Memory bound: each device owns ``in_flight`` slots (default :data:`MAX_IN_FLIGHT`). A slot
is taken when a batch is dispatched to the device and given back only when the reorder
step has emitted that batch, so a device never holds more than ``in_flight`` batches,
whether queued, being upscaled, or finished and waiting for an earlier batch. The stage
holds at most ``devices x in_flight`` batches; when every slot is taken the dispatcher
waits (backpressure up to the reader). Slots come back in emission order, so in steady
state the devices take turns (round robin); a device that is slower than the others
makes them wait for its batches, which the strict order needs anyway.

Every thread is a :class:`~vsr.pipeline.runner.Runner` stage and every wait is a channel
operation, so a failure anywhere (one device's ``upscale`` raising, the reader, the
writer) stops all of them the same way as in the single-device pipeline: the first error
is re-raised as ``StageError`` naming the stage (``model[cuda:1]``), every thread is
joined, and the writer removes its temporary file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from vsr.errors import MediaError
from vsr.media.frame import Frame
from vsr.pipeline.channel import Channel
from vsr.pipeline.runner import Runner
from vsr.pipeline.tally import Tally

if TYPE_CHECKING:
    from vsr.backends.build import Backend

#: Batches a device may hold at once (queued, being upscaled, or waiting to be emitted).
MAX_IN_FLIGHT = 2

Upscale = Callable[[list[Frame]], Sequence[Any]]


class Out(Protocol):
    """Where a model stage puts its items (a :class:`Channel`, a live queue)."""

    def put(self, item: Any) -> Any: ...


@dataclass
class Batch:
    """Frames (and the packets between them, in demux order) that are upscaled together."""

    seq: int
    items: list[object]  # frames and packets, in demux order
    frames: list[Frame]  # the frames among ``items``, in order
    device: int = -1  # index of the device it was sent to
    upscaled: Sequence[Any] = field(default_factory=list)  # one per frame, same order


def batches(items: Iterable[object], batch_size: int) -> Iterator[Batch]:
    """Cut a stream of frames and packets into batches of ``batch_size`` frames.

    A batch ends with its last frame; the packets after it open the next batch (the last
    batch may hold packets only). Raises MediaError when a frame's size or pixel format
    differs from the first frame's.
    """
    pending: list[object] = []
    frames: list[Frame] = []
    shape: tuple[int, int, str] | None = None
    seq = 0
    for item in items:
        pending.append(item)
        if isinstance(item, Frame):
            if shape is None:
                shape = (item.width, item.height, item.pix_fmt)
            elif (item.width, item.height, item.pix_fmt) != shape:
                raise MediaError(
                    f"frame {item.index} is {item.width}x{item.height} {item.pix_fmt}, "
                    f"the stream started as {shape[0]}x{shape[1]} {shape[2]}",
                    hint="vsr does not support size or format changes inside a stream",
                )
            frames.append(item)
            if len(frames) >= batch_size:
                yield Batch(seq, pending, frames)
                seq += 1
                pending, frames = [], []
    if pending:
        yield Batch(seq, pending, frames)


def upscale_batch(upscale: Upscale, batch: Batch) -> Sequence[Any]:
    """``upscale`` on the batch's frames (not called for a batch of packets only)."""
    if not batch.frames:
        return []
    out = upscale(batch.frames)
    if len(out) != len(batch.frames):
        raise RuntimeError(f"the backend returned {len(out)} frames for {len(batch.frames)}")
    return out


def emit(batch: Batch, upscaled: Sequence[Any], out: Out) -> None:
    """Put the batch's items on ``out``, each frame replaced by its upscaled frame."""
    frames = iter(upscaled)
    for item in batch.items:
        out.put(next(frames) if isinstance(item, Frame) else item)


def stage_names(devices: Sequence[str]) -> list[str]:
    """Stage names for the devices' workers: ``model[cuda:0]``; a device listed more
    than once (``cpu``) gets its occurrence number: ``model[cpu#0]``, ``model[cpu#1]``."""
    names = [d.strip().lower() for d in devices]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if names.count(name) > 1:
            k = seen.get(name, 0)
            seen[name] = k + 1
            out.append(f"model[{name}#{k}]")
        else:
            out.append(f"model[{name}]")
    return out


def add_multi_device_stage(
    runner: Runner,
    workers: Sequence[tuple[str, Upscale]],
    inp: Channel,
    out: Channel,
    batch_size: int,
    tally: Tally,
    *,
    in_flight: int = MAX_IN_FLIGHT,
) -> None:
    """Add the ``dispatch`` stage, one stage per ``(name, upscale)`` in ``workers`` and
    the ``reorder`` stage to ``runner``, reading ``inp`` and writing ``out`` (which it
    closes at the end). ``tally.model`` counts the frames emitted."""
    if not workers:
        raise ValueError("no devices")
    if in_flight < 1:
        raise ValueError("in_flight must be at least 1")
    n = len(workers)
    # No put below ever blocks: at most n x in_flight batches exist between dispatch and
    # reorder, and the capacities allow for that plus each channel's end-of-stream mark.
    # Only the free-slot wait, the workers' wait for work and the reorder step's wait for
    # the next batch block, and they are all channel gets (counted as waiting time).
    free = runner.channel(n * in_flight)  # device indices, one per free slot
    todo = [runner.channel(in_flight + 1) for _ in range(n)]
    done = runner.channel(n * (in_flight + 1))
    for _ in range(in_flight):  # interleaved: the first batches go round robin
        for d in range(n):
            free.put(d)

    def dispatch() -> None:
        for batch in batches(inp, batch_size):
            batch.device = free.get()  # waits while every device holds in_flight batches
            todo[batch.device].put(batch)
        for ch in todo:
            ch.close()

    def work(d: int, upscale: Upscale) -> None:
        for batch in todo[d]:
            batch.upscaled = upscale_batch(upscale, batch)
            done.put(batch)
        done.close()

    def reorder() -> None:
        waiting: dict[int, Batch] = {}
        next_seq = 0
        running = n
        while running:
            try:
                batch = done.get()
            except EOFError:  # one per worker
                running -= 1
                continue
            waiting[batch.seq] = batch
            while next_seq in waiting:
                ready = waiting.pop(next_seq)
                emit(ready, ready.upscaled, out)
                tally.model += len(ready.frames)
                free.put(ready.device)
                next_seq += 1
        if waiting:  # cannot happen: every batch number below the last one was emitted
            raise RuntimeError(f"batch {next_seq} never came back from its device")
        out.close()

    runner.add("dispatch", dispatch, inputs=[inp, free], outputs=list(todo))
    for d, (name, upscale) in enumerate(workers):
        # ``done`` is not listed: its put_wait is shared by all workers, and it never blocks.
        runner.add(name, functools.partial(work, d, upscale), inputs=[todo[d]])
    runner.add("reorder", reorder, inputs=[done], outputs=[out, free])


def model_loop(
    upscale: Upscale, items: Iterable[object], out: Out, batch_size: int, tally: Tally
) -> None:
    """The one-device model stage: batch ``items``, upscale, :func:`emit` each batch on
    ``out`` (not closed here); ``tally.model`` counts the frames upscaled."""
    for batch in batches(items, batch_size):
        emit(batch, upscale_batch(upscale, batch), out)
        tally.model += len(batch.frames)


def add_model_stage(
    runner: Runner,
    backends: Sequence[Backend],
    decoded: Channel,
    upscaled: Channel,
    tally: Tally,
    *,
    batch_size: int | None = None,
    devices: Sequence[str] = (),
) -> None:
    """Add the model stage to ``runner``: one thread, or with several backends dispatch,
    one worker per device (named after ``devices``) and reorder. ``batch_size`` ``None``:
    the first backend's default. ``tally.before_batch()`` runs before every batch."""
    size = batch_size or backends[0].default_batch_size
    multi = len(backends) > 1

    def upscaler(b: Backend) -> Upscale:
        # With several GPUs each worker thread makes its backend's GPU the current one
        # (for anything that allocates on the current device rather than on b.device).
        gpu = getattr(b, "device", None) if multi else None
        if gpu is not None and getattr(gpu, "type", None) != "cuda":
            gpu = None

        def upscale(frames: list[Frame]) -> list[Frame]:
            tally.before_batch()
            if gpu is None:
                return b.upscale(frames)
            import torch

            with torch.cuda.device(gpu):
                return b.upscale(frames)

        return upscale

    if multi:
        n = len(backends)
        names = stage_names(devices if len(devices) == n else [str(i) for i in range(n)])
        workers = [(name, upscaler(b)) for name, b in zip(names, backends, strict=True)]
        add_multi_device_stage(runner, workers, decoded, upscaled, size, tally)
        return
    upscale = upscaler(backends[0])

    def model_stage() -> None:
        model_loop(upscale, decoded, upscaled, size, tally)
        upscaled.close()

    runner.add("model", model_stage, inputs=[decoded], outputs=[upscaled])
