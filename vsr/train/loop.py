"""The training loop: fixed seed, Adam with a cosine schedule, optional EMA of the weights
(``vsr.train.ema``), periodic validation (``vsr.train.validate``), checkpoints that resume
exactly (``vsr.train.checkpoint``), and export of the best weights with a model card
(``vsr.train.export``); ``train_from_file`` is what ``vsr train`` and ``scripts/train.py``
run.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from vsr import evaluate as protocol
from vsr.errors import UsageError
from vsr.models.registry import get_spec
from vsr.train.checkpoint import resume_checkpoint, save_checkpoint, save_weights
from vsr.train.config import TrainConfig, project_root, resolve_dirs
from vsr.train.data import PatchSampler, load_pairs
from vsr.train.ema import EMA
from vsr.train.export import export_weights
from vsr.train.init import apply_init
from vsr.train.validate import bicubic_scores, evaluate

log = logging.getLogger("vsr")


def loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "l1":
        return F.l1_loss
    if name == "mse":
        return F.mse_loss
    if name == "charbonnier":
        return lambda a, b: torch.sqrt((a - b) ** 2 + 1e-6).mean()
    raise ValueError(f"unknown loss {name!r}")


def _lr_at(cfg: TrainConfig, step: int) -> float:
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, step / max(1, cfg.iterations))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * t))


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
        r = resume_checkpoint(
            ckpt, cfg=cfg, module=module, opt=opt, ema=ema, samplers=samplers, dev=dev
        )
        step, best, history = r.step, r.best, r.history
        seconds, running, ema = r.seconds, r.loss_avg, r.ema
    elif resume:
        log.info("no checkpoint in %s: starting from step 0", out_dir)
    first_val = next(iter(val_sets), None)
    scored = ema.module if ema is not None else module  # what validation and export see

    def checkpoint() -> None:
        save_checkpoint(
            ckpt,
            cfg=cfg,
            module=module,
            opt=opt,
            ema=ema,
            samplers=samplers,
            dev=dev,
            step=step,
            best=best,
            history=history,
            seconds=seconds,
            loss_avg=running,
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
                    save_weights(scored, out_dir / "best.pt")
        elif step % 50 == 0:
            bar.set_postfix(loss=f"{running:.4f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.iterations:
            seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            checkpoint()
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
