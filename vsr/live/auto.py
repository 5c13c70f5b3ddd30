"""``--model auto --target-fps N``: time the shipped models on this device, pick the best.

Quality order: Set5 PSNR of the shipped weights at the scale asked for (their model cards,
``vsr/weights/*.json``), bicubic last. Each candidate upscales a few frames of the
expected input size; the first whose model-only rate reaches the target with 25 %
headroom (decoding and encoding need time too) wins. When none does, the fastest one is
used, and the reason says so.

Backends: with ``--backend auto`` on the CPU every candidate is timed on each CPU backend
that can run it (torch, and openvino when ``import openvino`` works) and runs on the
faster one; an explicit ``--backend`` is the only one timed, and on a GPU only torch is.
Which backend wins differs by network (OpenVINO is well ahead on convolution stacks, level
on bicubic), so no backend is skipped for later candidates.

Calibration delays the start of the stream, so it is kept short: at input sizes of
128x128 and above, each backend first upscales one probe frame of a quarter of the width
and height. A candidate whose rate extrapolated from the probe (sixteen times the
probe's time per frame: an over-estimate, as fixed costs do not grow with the size) is
below a quarter of the rate needed is clearly too slow and is not timed at full size; its
rate is recorded as an estimate. Only slow networks are skipped so (an estimated quarter
second or more per frame, where the fixed costs are negligible and the estimate is
close); the rest are timed on ``frames`` full-size frames after a warm-up. At 640x360 on
two busy cores this cut the calibration from about 80 s to about 12 s (EDSR alone took
50 s to time at full size on both backends).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vsr.backends.build import runs_on_cpu
from vsr.errors import VsrError, one_line
from vsr.live.options import StreamConfig, Upscaler, make_upscaler
from vsr.media.frame import Frame

__all__ = [
    "AutoChoice",
    "backend_name",
    "calibration_backends",
    "candidates",
    "choose_model",
]

log = logging.getLogger("vsr")

HEADROOM = 1.25
WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
#: Backends a user names; any other value of ``backend`` (``auto``) lets calibration choose.
EXPLICIT_BACKENDS = ("torch", "openvino", "opencv")
#: The backends that run on the CPU, in the order they are timed.
CPU_BACKENDS = ("torch", "openvino")
#: Probe frames are this many times smaller in width and height than the input.
PROBE_DIVISOR = 4
#: The smallest input side for which a probe frame is used (smaller inputs are cheap).
PROBE_MIN_SIDE = 128
#: A probe estimate this many times short of the rate needed is clearly too slow.
CLEARLY_SLOW = 4.0
#: Seconds per full-size frame (estimated) below which a candidate is timed at full size
#: anyway: cheap to do, and the probe's fixed costs weigh most on such fast networks.
SKIP_ABOVE = 0.25
#: Backend class names (their own or a base class's) -> ``--backend`` names.
_BACKEND_CLASSES = {
    "OpenVINOBackend": "openvino",
    "OpenCVBackend": "opencv",
    "TorchBackend": "torch",
}


@dataclass
class AutoChoice:
    """What ``--model auto`` chose and why.

    ``measured``: one entry per candidate timed (model, Set5 PSNR, the backend it would
    run on and that backend's rate). ``timings``: every measurement, one per candidate and
    backend (model, backend, fps; ``estimated`` when only the probe frame was timed,
    ``error`` when the backend could not run the model). ``seconds``: the calibration's
    wall time.
    """

    model: str
    scale: int
    reason: str
    backend: str = "torch"
    measured: list[dict[str, Any]] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def candidates(scale: int) -> list[tuple[str, float]]:
    """(model, Set5 PSNR) for the shipped weights at ``scale``, best first; bicubic last."""
    found: list[tuple[str, float]] = []
    bicubic = 0.0
    for card in sorted(WEIGHTS.glob(f"*_x{scale}.json")):
        data = json.loads(card.read_text())
        set5 = data.get("metrics", {}).get("Set5", {})
        if "psnr" in set5:
            found.append((card.stem.rsplit("_x", 1)[0], float(set5["psnr"])))
            bicubic = float(set5.get("bicubic_psnr", bicubic))
    found.sort(key=lambda c: -c[1])
    return [*found, ("bicubic", bicubic)]


def backend_name(up: object, default: str | None = None) -> str | None:
    """The ``--backend`` name of a built backend (``openvino``, ``opencv``, ``torch``),
    from its class or a base class; ``default`` for anything else (a test's stand-in)."""
    for cls in type(up).__mro__:
        if cls.__name__ in _BACKEND_CLASSES:
            return _BACKEND_CLASSES[cls.__name__]
    return default


def openvino_importable() -> bool:
    """Whether ``import openvino`` works here (a broken install counts as absent)."""
    try:
        import openvino  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or a package that fails to load
        if not isinstance(exc, ImportError):
            log.info("--model auto: openvino does not import (%s); timing torch only", exc)
        return False
    return True


def calibration_backends(cfg: StreamConfig) -> list[str]:
    """The backends ``choose_model`` times: the one named (``torch``, ``openvino``,
    ``opencv``); otherwise (``auto``) torch, and on the CPU also openvino when it imports,
    each only where the other options allow it (``--precision int8``: openvino only;
    ``--compile``: torch only)."""
    opts = cfg.inference
    if opts.backend in EXPLICIT_BACKENDS:
        return [opts.backend]
    on_cpu = all(runs_on_cpu(d) for d in (opts.devices or (opts.device,)))
    names: list[str] = []
    for name in CPU_BACKENDS if on_cpu else ("torch",):
        if name == "openvino" and not openvino_importable():
            continue
        try:
            replace(opts, backend=name)  # validated when made
        except VsrError as exc:
            log.info("--model auto: not timing %s: %s", name, exc.one_line())
            continue
        names.append(name)
    return names or ["torch"]


def _time_per_frame(up: Upscaler, width: int, height: int, frames: int) -> float:
    """Median seconds ``up`` takes for one ``width`` x ``height`` frame (after a warm-up)."""
    planes = (
        np.random.default_rng(0).integers(16, 235, (height, width), dtype=np.uint8),
        np.full((height // 2, width // 2), 128, np.uint8),
        np.full((height // 2, width // 2), 128, np.uint8),
    )
    frame = Frame(0, 0, Fraction(1, 30), planes, "yuv420p")
    up.upscale([frame])  # warm-up
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        up.upscale([frame])
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _fps(seconds: float) -> float:
    return 1.0 / seconds if seconds > 0 else float("inf")


def _rate(fps: float) -> str:
    """``2.6`` below 10 fps, ``33`` above (for the reason line)."""
    return f"{fps:.1f}" if fps < 10 else f"{fps:.0f}"


def probe_size(size: tuple[int, int]) -> tuple[int, int] | None:
    """The probe frame for ``size`` (a quarter of each side, even), or ``None`` below
    :data:`PROBE_MIN_SIDE`."""
    w, h = size
    if min(w, h) < PROBE_MIN_SIDE:
        return None
    return (w // PROBE_DIVISOR) & ~1, (h // PROBE_DIVISOR) & ~1


def _config(cfg: StreamConfig, model: str, backend: str) -> StreamConfig:
    """``cfg`` running ``model`` on ``backend``."""
    inference = replace(cfg.inference, model=model, backend=backend)
    return replace(cfg, inference=inference)


def _measure(up: Upscaler, size: tuple[int, int], need: float, frames: int) -> tuple[float, bool]:
    """(frames per second at ``size``, whether it is only the probe's estimate)."""
    w, h = size
    probe = probe_size(size)
    if probe is not None:
        pw, ph = probe
        t = _time_per_frame(up, pw, ph, 1) * (w * h) / (pw * ph)
        if t >= SKIP_ABOVE and _fps(t) * CLEARLY_SLOW < need:
            return _fps(t), True
    return _fps(_time_per_frame(up, w, h, frames)), False


def choose_model(
    cfg: StreamConfig, target_fps: float, *, size: tuple[int, int], frames: int = 3
) -> tuple[AutoChoice, Upscaler]:
    """Calibrate on ``size`` input frames; return the choice and its ready upscaler.

    Raises:
        the first error of a candidate that no backend could build or run (one backend
        failing is logged and recorded in ``timings``; another runs the candidate).
    """
    t_start = time.monotonic()
    measured: list[dict[str, Any]] = []
    timings: list[dict[str, Any]] = []
    fastest: tuple[float, str, str, Upscaler] | None = None  # fps, model, backend, up
    scale = cfg.inference.scale
    backends = calibration_backends(cfg)
    need = target_fps * HEADROOM
    where = f"{size[0]}x{size[1]}"
    for name, psnr in candidates(scale):
        best: tuple[float, str, bool, Upscaler] | None = None
        first_error: BaseException | None = None
        rates: dict[str, float] = {}
        for backend in backends:
            try:
                up = make_upscaler(_config(cfg, name, backend))
                fps, estimated = _measure(up, size, need, frames)
            except Exception as exc:  # noqa: BLE001 - another backend may run it
                if len(backends) == 1:
                    raise
                first_error = first_error or exc
                log.warning("--model auto: %s on %s failed: %s", name, backend, one_line(exc))
                timings.append(
                    {
                        "model": name,
                        "backend": backend,
                        "fps": None,
                        "error": one_line(exc, limit=200),
                    }
                )
                continue
            entry: dict[str, Any] = {"model": name, "backend": backend, "fps": round(fps, 1)}
            if estimated:
                entry["estimated"] = True
            timings.append(entry)
            rates[backend] = fps
            if best is None or fps > best[0]:
                best = (fps, backend, estimated, up)
        if best is None:
            assert first_error is not None
            raise first_error
        fps, backend, estimated, up = best
        measured.append(
            {"model": name, "set5_psnr": psnr, "backend": backend, "fps": round(fps, 1)}
        )
        others = ", ".join(f"{b} {_rate(r)} fps" for b, r in rates.items() if b != backend)
        also = f"; {others}" if others else ""
        if fps >= need and not estimated:
            reason = (
                f"{name} x{scale} on {backend} is the best-quality model (Set5 {psnr:.2f} dB) "
                f"that upscales {where} at {_rate(fps)} fps here{also}, >= {target_fps:g} fps "
                f"x {HEADROOM} headroom"
            )
            seconds = round(time.monotonic() - t_start, 2)
            return AutoChoice(name, scale, reason, backend, measured, timings, seconds), up
        if fastest is None or fps > fastest[0]:
            fastest = (fps, name, backend, up)
    assert fastest is not None
    fps, name, backend, up = fastest
    reason = (
        f"no model reaches {target_fps:g} fps x {HEADROOM} at {where} here; "
        f"{name} x{scale} on {backend} is the fastest ({_rate(fps)} fps): expect dropped frames"
    )
    seconds = round(time.monotonic() - t_start, 2)
    return AutoChoice(name, scale, reason, backend, measured, timings, seconds), up
