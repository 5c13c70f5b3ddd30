"""The training loop: fixed seed, Adam with a cosine schedule, optional EMA of the weights,
periodic validation, checkpoints that resume exactly, and export of the best weights with
a model card.

Exact resume: a checkpoint holds everything the next step depends on: the weights, Adam's
state, the EMA weights, the step (the learning rate is a function of it), the patch
sampler's generator state (the data order), torch's CPU (and CUDA) generator state, the
best score and the history. Validation runs in inference mode and draws no random
numbers. So on the CPU, with the same thread count, a run of N iterations and a run killed
after a checkpoint and resumed to N end with bit-identical weights (tests/test_train.py).
Checkpoints and ``best.pt`` are written to a temporary name and renamed, so a kill never
leaves a torn file.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import platform
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vsr import evaluate as protocol
from vsr.errors import InputNotFoundError, UsageError
from vsr.models.registry import get_spec
from vsr.models.weights import write_safetensors
from vsr.train.data import PatchSampler, load_pairs
from vsr.train.init import INITS, apply_init

log = logging.getLogger("vsr")

LOSSES = ("l1", "mse", "charbonnier")
#: Architectures whose weights serve every scale (``scales`` in a recipe trains them on
#: several at once, as the VDSR paper does); their modules have ``set_scale``.
MULTI_SCALE_ARCHS = ("vdsr",)
#: Checkpoint format: 1 (no "format" key) had no EMA/CUDA RNG; 2 adds them. Both resume.
CHECKPOINT_FORMAT = 2


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe (``configs/train/*.toml``). Every key but ``model``, ``scale`` and
    ``train_dirs`` has a default; ``ema`` 0 means no EMA. Raises UsageError on bad values."""

    model: str
    scale: int
    train_dirs: tuple[str, ...]
    val_dirs: tuple[str, ...] = ()
    iterations: int = 20000
    batch_size: int = 32
    lr_patch: int = 24
    lr: float = 1e-3
    lr_min: float = 1e-5
    warmup: int = 0
    loss: str = "l1"
    val_every: int = 1000
    checkpoint_every: int = 500
    seed: int = 0
    threads: int = 0
    hparams: dict[str, str] = field(default_factory=dict)
    init: str = "default"
    ema: float = 0.0
    scales: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        spec = get_spec(self.model)  # UnknownModelError (a UsageError) lists the known ones
        if not spec.needs_weights:
            raise UsageError(f"{spec.name} has no weights to train", hint="choose a network")
        if self.scale not in spec.scales:
            scales = ", ".join(str(s) for s in spec.scales)
            raise UsageError(f"{spec.name} does not support scale {self.scale}: use {scales}")
        if not self.train_dirs:
            raise UsageError("train_dirs is empty", hint="list at least one folder of HR images")
        positive = ("iterations", "batch_size", "lr_patch", "val_every", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("warmup", "threads", "seed"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be at least 0, not {getattr(self, name)}")
        if not self.lr > 0 or self.lr_min < 0:
            raise UsageError(f"need lr > 0 and lr_min >= 0, not {self.lr} and {self.lr_min}")
        if self.loss not in LOSSES:
            raise UsageError(f"unknown loss {self.loss!r}", hint=f"use {', '.join(LOSSES)}")
        if not 0 <= self.ema < 1:
            raise UsageError(f"ema must be in [0, 1), not {self.ema}", hint="0.999 is usual")

        def known(part: str) -> bool:
            if part.startswith("weights:"):
                return len(part) > len("weights:")
            return part == "bicubic" and spec.arch in INITS

        parts = self.init.split("+")
        if self.init not in ("", "default") and not all(known(p) for p in parts):
            raise UsageError(
                f"init {self.init!r} is not available for {spec.arch}",
                hint=f"use 'default', 'weights:PATH', or 'bicubic' for {', '.join(INITS)}",
            )
        for s in self.scales:
            if s not in spec.scales:
                raise UsageError(f"{spec.name} does not support scale {s} (in scales)")
        if self.scales and spec.arch not in MULTI_SCALE_ARCHS:
            raise UsageError(
                f"{spec.name} keeps no scale-free weights: train one scale per recipe",
                hint="scales is for models whose weights serve every scale (vdsr)",
            )

    @property
    def channels(self) -> int:
        """What the network sees: 1 (luma) or 3 (RGB), from the model's spec."""
        return get_spec(self.model).channels

    @staticmethod
    def from_toml(path: Path, **overrides: object) -> TrainConfig:
        """Read a TOML recipe; ``overrides`` that are not None replace its keys.

        Raises InputNotFoundError, UsageError (not TOML, unknown or missing key, wrong type,
        bad value): one line each, exit 2 in the CLI."""
        path = Path(path)
        if not path.is_file():
            raise InputNotFoundError(f"config not found: {path}")
        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path.name} is not valid TOML: {exc}") from None
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig.from_dict(raw, source=path.name)

    @staticmethod
    def from_dict(raw: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Check keys and types (ints are accepted for floats), then build."""
        fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise UsageError(
                f"{source}: unknown key {unknown[0]!r}", hint=f"known keys: {', '.join(fields)}"
            )
        missing = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and n not in raw
        ]
        if missing:
            raise UsageError(f"{source}: missing key {missing[0]!r}")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            kind = str(fields[key].type)
            bad = UsageError(f"{source}: {key} must be {_KIND_WORDS[kind]}, not {value!r}")
            if kind == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise bad
            elif kind == "float":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise bad
                value = float(value)
            elif kind == "str":
                if not isinstance(value, str):
                    raise bad
            elif kind == "tuple[str, ...]":
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, str) for v in value
                ):
                    raise bad
                value = tuple(value)
            elif kind == "tuple[int, ...]":
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value
                ):
                    raise bad
                value = tuple(value)
            elif kind == "dict[str, str]":
                if not isinstance(value, dict) or not all(
                    isinstance(v, str | int | float) for v in value.values()
                ):
                    raise bad
                value = {str(k): str(v) for k, v in value.items()}
            values[key] = value
        return TrainConfig(**values)


_KIND_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "tuple[str, ...]": "a list of folder paths",
    "tuple[int, ...]": "a list of integers",
    "dict[str, str]": "a table of strings",
}


def project_root(config: Path) -> Path:
    """Where a config's relative paths start: the nearest folder above it that holds a
    ``pyproject.toml`` (for ``configs/train/*.toml``, the repository root), else its folder."""
    config = Path(config).resolve()
    for folder in config.parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    return config.parent


def resolve_dirs(dirs: tuple[str, ...], base: Path) -> list[Path]:
    """Config paths are relative to the project root (see :func:`project_root`)."""
    return [(base / d).resolve() if not Path(d).is_absolute() else Path(d) for d in dirs]


def loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "l1":
        return F.l1_loss
    if name == "mse":
        return F.mse_loss
    if name == "charbonnier":
        return lambda a, b: torch.sqrt((a - b) ** 2 + 1e-6).mean()
    raise ValueError(f"unknown loss {name!r}")


class EMA:
    """Exponential moving average of a module's weights (and buffers), on its device.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early
    averages are not dominated by the initial weights; it depends only on ``n``, which the
    checkpoint keeps."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = module.state_dict()
        for key, avg in self.module.state_dict().items():
            if avg.dtype.is_floating_point:
                avg.lerp_(src[key], 1.0 - d)
            else:
                avg.copy_(src[key])

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])


@torch.inference_mode()
def evaluate(
    module: nn.Module,
    pairs: list[protocol.EvalPair],
    scale: int,
    *,
    channels: int = 1,
    device: torch.device | None = None,
) -> tuple[float, float]:
    """Mean Y-PSNR and SSIM of the model under the protocol of ``vsr.evaluate``.

    ``channels`` 1: the model sees the LR luma; 3: the LR RGB, and its output's luma is
    scored. Inference mode, no random numbers drawn: training's generators are untouched."""
    module.eval()
    dev = device or torch.device("cpu")

    def fn(x: torch.Tensor) -> torch.Tensor:
        return module(x.to(dev))

    return protocol.mean_scores(protocol.model_scores(fn, pairs, scale=scale, channels=channels))


def bicubic_scores(pairs: list[protocol.EvalPair], scale: int) -> tuple[float, float]:
    """Mean Y-PSNR and SSIM of bicubic under the protocol of ``vsr.evaluate``."""
    return protocol.mean_scores(protocol.bicubic_scores(pairs, scale=scale))


def _lr_at(cfg: TrainConfig, step: int) -> float:
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, step / max(1, cfg.iterations))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))


def _save_atomic(obj: object, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _resolve_device(name: str) -> torch.device:
    from vsr.backends.device import resolve_device

    device = resolve_device(name)
    if device.type == "mps":  # untested there: auto means the CPU, asking for it is refused
        if name.lower() == "auto":
            return torch.device("cpu")
        raise UsageError("training runs on cpu or cuda", hint="use --device cpu or cuda")
    return device


def train(
    cfg: TrainConfig,
    *,
    out_dir: Path,
    root: Path,
    resume: bool = False,
    export: Path | None = None,
    recipe: str = "",
    progress: bool = True,
    device: str = "auto",
) -> dict:
    """Train ``cfg.model`` at ``cfg.scale``; return the final report (also in out_dir).

    ``out_dir`` gets ``checkpoint.pt`` (every ``checkpoint_every`` steps and at the end),
    ``best.pt`` (the weights with the best PSNR on the first validation folder, EMA
    weights when ``ema`` is on) and ``report.json``. With ``resume`` the run continues
    from ``checkpoint.pt`` when there is one. Without it, an existing checkpoint is refused.
    ``device``: auto, cpu, cuda or cuda:N.

    Raises UsageError (folders, images, existing checkpoint, device), DeviceError.
    """
    from tqdm import tqdm

    dev = _resolve_device(device)
    ckpt = out_dir / "checkpoint.pt"
    if not resume and ckpt.exists():
        raise UsageError(
            f"{out_dir} already holds a checkpoint",
            hint="pass --resume to continue it, or choose another --out",
        )
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    channels = cfg.channels
    spec = get_spec(cfg.model)
    val_sets = {
        Path(d).name: protocol.load_dataset(d, cfg.scale) for d in resolve_dirs(cfg.val_dirs, root)
    }
    # one sampler per training scale; a multi-scale run (``scales``) takes them in turn
    train_scales = cfg.scales or (cfg.scale,)
    samplers = {
        s: PatchSampler(
            load_pairs(resolve_dirs(cfg.train_dirs, root), s),
            scale=s,
            lr_patch=cfg.lr_patch,
            seed=cfg.seed + (s if cfg.scales else 0),
            channels=channels,
        )
        for s in train_scales
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    module = spec.build(cfg.scale, None, dict(cfg.hparams))
    try:
        apply_init(cfg.init, module, spec.arch, cfg.scale, root)
    except (OSError, ValueError) as exc:
        raise UsageError(f"init: {exc}") from None
    module.to(dev)
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr)
    ema = EMA(module, cfg.ema) if cfg.ema else None
    crit = loss_fn(cfg.loss)
    step, best, history = 0, -1.0, []
    seconds = 0.0
    running: float | None = None
    if resume and ckpt.exists():
        # weights_only: a checkpoint is data (tensors, numbers, strings), never code
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        _check_resumed_config(state.get("config", {}), asdict(cfg))
        module.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        saved = state["sampler"]
        for s, sampler in samplers.items():
            sampler.set_state(saved[str(s)] if "multi" in saved else saved)
        torch.set_rng_state(state["torch_rng"])
        if dev.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], dev)
        step, best, history = state["step"], state["best"], state["history"]
        seconds = state.get("seconds", 0.0)
        running = state.get("loss_avg")
        if ema is not None:
            if state.get("ema") is not None:
                ema.load_state_dict(state["ema"])
            else:
                log.warning("the checkpoint has no EMA weights: the average starts now")
                ema = EMA(module, cfg.ema)
        log.info("resumed %s at step %d", ckpt, step)
    elif resume:
        log.info("no checkpoint in %s: starting from step 0", out_dir)
    first_val = next(iter(val_sets), None)
    scored = ema.module if ema is not None else module  # what validation and export see

    def save_checkpoint() -> None:
        _save_atomic(
            {
                "format": CHECKPOINT_FORMAT,
                "model": module.state_dict(),
                "opt": opt.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "sampler": (
                    {"multi": 1, **{str(s): smp.state() for s, smp in samplers.items()}}
                    if cfg.scales
                    else samplers[cfg.scale].state()
                ),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                "step": step,
                "best": best,
                "history": history,
                "seconds": seconds,
                "loss_avg": running,
                "config": asdict(cfg),
            },
            ckpt,
        )

    bar = tqdm(total=cfg.iterations, initial=step, disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    while step < cfg.iterations:
        module.train()
        s = train_scales[step % len(train_scales)]
        if cfg.scales:
            module.set_scale(s)  # type: ignore[operator]  # any_scale models have it
        lr_np, hr_np = samplers[s].batch(cfg.batch_size)
        for g in opt.param_groups:
            g["lr"] = _lr_at(cfg, step)
        pred = module(torch.from_numpy(lr_np).to(dev))
        loss = crit(pred, torch.from_numpy(hr_np).to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update(module)
        step += 1
        value = loss.item()
        running = value if running is None else 0.98 * running + 0.02 * value
        bar.update(1)
        if step % cfg.val_every == 0 or step == cfg.iterations:
            if cfg.scales:
                module.set_scale(cfg.scale)  # type: ignore[operator]
                if scored is not module:
                    scored.set_scale(cfg.scale)  # type: ignore[operator]
            if first_val is not None:
                p, _s = evaluate(
                    scored, val_sets[first_val], cfg.scale, channels=channels, device=dev
                )
                history.append({"step": step, first_val: p})
                bar.set_postfix(loss=f"{running:.4f}", **{first_val: f"{p:.2f}"})
                if p > best:
                    best = p
                    _save_atomic(scored.state_dict(), out_dir / "best.pt")
        elif step % 50 == 0:
            bar.set_postfix(loss=f"{running:.4f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.iterations:
            seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            save_checkpoint()
    bar.close()
    seconds += time.perf_counter() - t0

    best_path = out_dir / "best.pt"
    if first_val is not None and best_path.exists():
        scored.load_state_dict(torch.load(best_path, map_location=dev, weights_only=True))
    results = {}
    for name, pairs in val_sets.items():
        psnr, ssim = evaluate(scored, pairs, cfg.scale, channels=channels, device=dev)
        bp, bs = bicubic_scores(pairs, cfg.scale)
        results[name] = {
            "psnr": round(psnr, 3),
            "ssim": round(ssim, 4),
            "bicubic_psnr": round(bp, 3),
            "bicubic_ssim": round(bs, 4),
            "gain_db": round(psnr - bp, 3),
        }
    report = {
        "model": cfg.model,
        "scale": cfg.scale,
        "iterations": step,
        "train_seconds": round(seconds, 1),
        "device": str(dev),
        "machine": _machine(dev),
        "recipe": recipe,
        "root": str(root),
        "config": asdict(cfg),
        "results": results,
        "history": history,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    if export is not None:
        export_weights(scored, cfg, export, report, selected_on=first_val)
    return report


def _machine(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)}"
    return f"{platform.machine()}, {torch.get_num_threads()} threads"


def _check_resumed_config(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Warn when the recipe changed since the checkpoint (the run is then not the recipe's)."""
    changed = [
        k
        for k in saved
        if k in now and k != "threads" and json.dumps(saved[k]) != json.dumps(now[k])
    ]
    if changed:
        log.warning("resuming with a config that differs from the checkpoint's in %s", changed)


def _earlier_stages(init: str, root: str | None) -> list[dict[str, Any]]:
    """The training stages behind ``weights:F`` init files (from F's model card, if any):
    recipe, iterations, seconds, machine, oldest first."""
    stages: list[dict[str, Any]] = []
    for part in init.split("+"):
        if not part.startswith("weights:"):
            continue
        path = Path(part[len("weights:") :])
        if root is not None and not path.is_absolute():
            path = Path(root) / path
        try:
            card = json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError):
            continue
        stages += card.get("earlier_stages", [])
        stages.append(
            {
                k: card[k]
                for k in ("recipe", "iterations", "train_seconds", "machine", "initialisation")
                if k in card
            }
        )
    return stages


def export_weights(
    module: nn.Module,
    cfg: TrainConfig,
    path: Path,
    report: dict,
    *,
    selected_on: str | None = "Set5",
) -> None:
    """Write ``path`` (safetensors) and its model card ``path.with_suffix('.json')``."""
    meta: dict[str, str | int | float] = {"arch": get_spec(cfg.model).arch, "scale": cfg.scale}
    meta.update(getattr(module, "hparams", {}))
    stages = _earlier_stages(cfg.init, report.get("root"))  # read before path is replaced
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, module.state_dict(), meta)
    selection = (
        f"the checkpoint with the best {selected_on} PSNR, validated every {cfg.val_every} "
        "iterations"
        if selected_on
        else "the last iteration (no validation folder)"
    )
    card: dict[str, Any] = {
        "name": cfg.model if cfg.scales else f"{cfg.model}_x{cfg.scale}",
        "architecture": cfg.model,
        "scale": cfg.scale,
        "parameters": sum(p.numel() for p in module.parameters()),
        "licence": "MIT (weights trained by the vsr project)",
        "training_data": [Path(d).name for d in cfg.train_dirs],
        "recipe": report["recipe"],
        "iterations": report["iterations"],
        "initialisation": cfg.init,
        "selection": selection,
        "date": time.strftime("%Y-%m-%d"),
        "train_seconds": report["train_seconds"],
        "machine": report["machine"],
        "protocol": "Y channel (BT.601 limited), LR by MATLAB-compatible bicubic, "
        "border of `scale` pixels shaved; bicubic measured with the same code",
        "metrics": report["results"],
    }
    if cfg.scales:
        card["scales"] = list(cfg.scales)
    if stages:
        card["earlier_stages"] = stages
    if cfg.ema:
        card["ema"] = cfg.ema
    if cfg.channels == 3:
        card["input"] = "RGB"
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def format_results(report: dict) -> list[str]:
    """One line per validation folder, as the scripts print them."""
    return [
        f"{name}: {r['psnr']:.2f} dB / {r['ssim']:.4f} (bicubic {r['bicubic_psnr']:.2f} dB, "
        f"gain {r['gain_db']:+.2f} dB)"
        for name, r in report["results"].items()
    ]


def train_from_file(
    config: Path,
    *,
    resume: bool = False,
    out: Path | None = None,
    export: Path | None = None,
    iterations: int | None = None,
    threads: int | None = None,
    device: str = "auto",
    progress: bool = True,
    root: Path | None = None,
) -> dict:
    """What ``vsr train`` and ``scripts/train.py`` run: read the recipe, train, export.

    Relative paths in the recipe start at ``root`` (default: :func:`project_root`); the
    run folder defaults to ``<root>/runs/<config stem>``. Raises as :meth:`TrainConfig.
    from_toml` and :func:`train`."""
    config = Path(config)
    cfg = TrainConfig.from_toml(config, iterations=iterations, threads=threads)
    root = root if root is not None else project_root(config)
    resolved = config.resolve()
    recipe = str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(config)
    return train(
        cfg,
        out_dir=out if out is not None else root / "runs" / config.stem,
        root=root,
        resume=resume,
        export=export,
        recipe=recipe,
        progress=progress,
        device=device,
    )
