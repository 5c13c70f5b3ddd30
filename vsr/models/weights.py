"""Reading and writing weights. Never executes code from a file.

- ``.safetensors``: the project's format; metadata carries ``arch``, ``scale`` and the
  hyperparameters tensors cannot express (activations).
- ``.pb``: OpenCV dnn_superres TensorFlow graphs (ESPCN, FSRCNN, FSRCNN-small, LapSRN, EDSR),
  converted to the torch architecture (see ``vsr.models.opencv_pb``).
- ``.pth`` / ``.pt`` / ``.ckpt``: third-party PyTorch checkpoints (ESRGAN, Real-ESRGAN,
  EDSR-PyTorch, anything spandrel knows), read only with
  ``torch.load(path, map_location="cpu", weights_only=True)``: torch's restricted
  unpickler, which builds tensors, containers and plain values and refuses every other
  global. A file that needs more (a pickled ``nn.Module``, a ``__reduce__`` to
  ``os.system``, numpy objects) is refused, never loaded "just this once"; TorchScript
  archives are programs, not weights, and are refused too. The state dict is taken out
  of the usual containers (``params_ema``, ``params``, ``state_dict``, ``model``, ...)
  and common prefixes (``module.``, ``netG.``) are dropped; the result is the file's own
  key layout, which the architecture's ``detect`` converts (see ``registry.load_model``).
"""

from __future__ import annotations

import json
import pickle
import pickletools
import re
import warnings
import zipfile
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
        state, meta = read_safetensors(path)
        if "arch" not in meta:  # a foreign file: the same clean-up as for checkpoints
            state = strip_common_prefix(state)
        return state, meta
    if suffix == ".pb":
        from vsr.models import opencv_pb

        return opencv_pb.read_pb(path, arch=arch, scale=scale)
    if suffix in TORCH_SUFFIXES:
        return read_torch(path), {}
    raise WeightsError(
        f"unsupported weights format {suffix or '(none)'}: {path.name}",
        hint="vsr reads .safetensors, PyTorch .pth/.pt/.ckpt and OpenCV dnn_superres .pb files",
    )


TORCH_SUFFIXES = (".pth", ".pt", ".ckpt")

#: Keys under which checkpoints keep the state dict, in order of preference: BasicSR /
#: Real-ESRGAN keep the EMA generator in ``params_ema`` (what their inference uses) and
#: the plain one in ``params``; Lightning and most trainers use ``state_dict``.
CONTAINER_KEYS = (
    "params_ema",
    "params-ema",
    "params",
    "model_state_dict",
    "state_dict",
    "model",
    "net",
    "generator",
    "netG",
)
COMMON_PREFIXES = ("module.", "netG.")

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_OPERAND = re.compile(r"Unsupported operand (\d+)")


def read_torch(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a PyTorch checkpoint, loaded with ``weights_only=True``.

    Raises WeightsError (one line) when the file needs code to load (refused), is a
    TorchScript archive, is truncated or corrupt, or holds no tensors.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol notes: not the user's business
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.findall(str(exc)) or _pickle_globals(path)
        if found:
            raise _refused(path, found) from None
        op = _OPERAND.search(str(exc))
        raise _unreadable(path, f"unknown pickle opcode {op[1]}" if op else "bad pickle") from None
    except RuntimeError as exc:
        if "TorchScript" in str(exc):
            raise WeightsError(
                f"{path.name} is a TorchScript archive: a program, not weights; vsr does "
                "not run it",
                hint="export the model's state_dict() with torch.save or as .safetensors",
            ) from None
        raise _unreadable(path, _first_line(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse an untrusted file
        raise _unreadable(path, _first_line(exc) or type(exc).__name__) from None
    state = unwrap_state_dict(obj)
    if not state:
        raise WeightsError(
            f"{path.name} holds no state dict (no named tensors)",
            hint="pass a file saved with torch.save(model.state_dict())",
        )
    return state


def unwrap_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: out of the known containers, common prefixes dropped.

    Non-tensor entries (epoch counters, optimiser settings) are left out; an empty dict
    means nothing usable was found.
    """
    for _ in range(4):  # containers nest (e.g. {"state_dict": {"model": ...}}) but not deeply
        if not isinstance(obj, dict):
            return {}
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None and len(obj) == 1 and isinstance(next(iter(obj.values())), dict):
            inner = next(iter(obj.values()))
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        return {}
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return strip_common_prefix(state)


def strip_common_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a ``module.`` (DataParallel) or ``netG.`` prefix that every key carries."""
    for prefix in COMMON_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _refused(path: Path, found: list[str]) -> WeightsError:
    names = ", ".join(dict.fromkeys(found))
    return WeightsError(
        f"{path.name} refused: it contains Python objects that would run code when loaded "
        f"({names})",
        hint="vsr loads only tensors; use a plain state dict or .safetensors from a trusted source",
    )


def _unreadable(path: Path, detail: str) -> WeightsError:
    return WeightsError(
        f"{path.name} is not a readable PyTorch weights file: truncated, corrupt or an "
        f"unsupported format ({detail})",
        hint="download it again or check that it is a .pth/.pt/.ckpt checkpoint",
    )


def _first_line(exc: BaseException) -> str:
    """The first sentence of the first line: torch's messages go on for a paragraph."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0].split(". ")[0].rstrip(".") if lines else ""


def _pickle_globals(path: Path) -> list[str]:
    """Names of the globals a pickle would import, found by parsing its opcodes.

    ``pickletools.genops`` only parses: nothing is imported or called. Used to say why a
    file that torch's unpickler stopped early (e.g. on a protocol-4 frame) is refused.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                name = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return []
                data = zf.read(name)
        else:
            data = path.read_bytes()
    except (OSError, zipfile.BadZipFile):
        return []
    found: list[str] = []
    strings: list[str] = []  # string pushes (and memo fetches of strings), for STACK_GLOBAL
    memo: dict[int, str] = {}
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                found.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str) and "UNICODE" in op.name:
                strings.append(arg)
            elif op.name == "MEMOIZE" and strings:
                memo[len(memo)] = strings[-1]
            elif op.name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                memo[int(str(arg))] = strings[-1]
            elif op.name in ("BINGET", "LONG_BINGET", "GET") and int(str(arg)) in memo:
                strings.append(memo[int(str(arg))])
    except Exception:  # noqa: BLE001 - a broken stream: what was found so far is the answer
        pass
    return found


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
