"""Safe loading of weight files for every network in mfrn: tensors only, strict keys, readable errors.

Every file goes through ``torch.load(weights_only=True)``, so opening a checkpoint never runs code.
A whole pickled module (SimSwap's ``arcface_checkpoint.tar``, for one) is refused with a message that
says how to turn it into a state dict once, in an environment you trust.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

# containers that training scripts commonly wrap a state dict in
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "net_G")


class WeightsError(ValueError):
    """A weights file that cannot be used for the network it is loaded into; names the file."""


def conversion_hint(path: Path) -> str:
    return (
        f"If {path.name} is a pickled whole module, convert it once, in an environment you trust, to a "
        f"plain state dict: model = torch.load('{path.name}', map_location='cpu', weights_only=False); "
        f"torch.save(model.state_dict(), '{path.stem}_state_dict.pth')"
    )


def _reason(exc: Exception) -> str:
    """The line of torch's long refusal message that names the offending class, else its first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "Unsupported global" in line]
    reason = (named or lines or [""])[0].split(" was not an allowed global")[0]
    return f"{type(exc).__name__}: {reason}"


def load_state_dict_file(path: str | Path, strip_prefixes: tuple[str, ...] = ("module.",)) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, loaded on the CPU with ``weights_only=True``.

    A state dict wrapped in ``{"state_dict": ...}`` (or ``model``/``net``/``net_G``) is unwrapped, and a
    leading prefix from ``strip_prefixes`` (``module.`` as ``DataParallel`` writes it) is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError and friends
        raise WeightsError(
            f"{path}: cannot be loaded with torch.load(weights_only=True) ({_reason(exc)}). " + conversion_hint(path)
        ) from None
    if isinstance(loaded, Mapping):
        for key in _WRAPPER_KEYS:
            inner = loaded.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                loaded = inner
                break
    if not isinstance(loaded, Mapping) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise WeightsError(f"{path}: holds no state dict of tensors (found {type(loaded).__name__}). " + conversion_hint(path))
    state = {str(k): v for k, v in loaded.items()}
    for prefix in strip_prefixes:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    return state


def _listed(keys: list[str], limit: int = 20) -> str:
    return ", ".join(keys[:limit]) + (" ..." if len(keys) > limit else "")


def load_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str | Path,
    optional_suffixes: tuple[str, ...] = ("num_batches_tracked",),
    assign: bool = False,
) -> None:
    """``module.load_state_dict(state, strict=True)`` with an error that lists every bad key.

    Missing keys, unexpected keys and shape mismatches are reported at once, each by name, and
    ``source`` (the file) is named. Buffers ending in ``optional_suffixes`` (BatchNorm's step counter,
    absent from checkpoints of old torch versions) may be missing and keep the module's value.
    ``assign=True`` adopts the file's tensors (for a module built on the meta device).
    """
    expected = module.state_dict()
    state = dict(state)
    for key in set(expected) - set(state):
        if key.endswith(optional_suffixes):
            state[key] = expected[key]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(expected) & set(state)
        if tuple(state[key].shape) != tuple(expected[key].shape)
    )
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_listed(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_listed(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched[:20])}")
        raise WeightsError(f"{source}: does not match {type(module).__name__}: " + " | ".join(parts))
    module.load_state_dict(state, strict=True, assign=assign)


def default_device() -> str:
    """``"cuda"`` where a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(name: str | torch.device | None) -> torch.device:
    """The device ``name`` asks for ("auto"/None: the GPU where there is one), refused with one clear line
    (a ``ValueError``) when it cannot be used here: ``cuda`` without a visible GPU, a GPU index past the last
    one, or a name torch does not know."""
    if name is None or str(name) == "auto":
        return torch.device(default_device())
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {name!r} is not a torch device (use cpu, cuda or cuda:N): {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: no CUDA GPU is visible on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    elif device.type not in ("cpu", "mps", "meta"):
        raise ValueError(f"device {name!r}: mfrn runs on cpu or cuda")
    return device
