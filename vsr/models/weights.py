"""Reading and writing weights. Never executes code from a file.

- ``.safetensors``: the project's format; metadata carries ``arch``, ``scale`` and the
  hyperparameters tensors cannot express (activations).
- ``.pb``: OpenCV dnn_superres TensorFlow graphs (ESPCN, FSRCNN, FSRCNN-small),
  converted to the torch architecture (see ``vsr.models.opencv_pb``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vsr.errors import WeightsError


def read_weights(
    path: Path, *, arch: str, scale: int
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return (state_dict, metadata) for ``arch`` at ``scale`` from ``path``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}", hint="check the --weights path")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return read_safetensors(path)
    if suffix == ".pb":
        from vsr.models import opencv_pb

        return opencv_pb.read_pb(path, arch=arch, scale=scale)
    raise WeightsError(
        f"unsupported weights format {suffix or '(none)'}: {path.name}",
        hint="vsr reads .safetensors and OpenCV dnn_superres .pb files",
    )


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open API
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"cannot read {path.name}: {exc}") from None
    return state, meta


def write_safetensors(
    path: Path, state: dict[str, torch.Tensor], meta: dict[str, str | int | float]
) -> None:
    """Write ``state`` (made contiguous, on the CPU) with string metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    save_file(tensors, str(path), metadata={k: str(v) for k, v in meta.items()})


def read_card(path: Path) -> dict[str, object]:
    """The model card (JSON) beside a weights file, or an empty dict."""
    card = path.with_suffix(".json")
    if not card.exists():
        return {}
    return json.loads(card.read_text())
