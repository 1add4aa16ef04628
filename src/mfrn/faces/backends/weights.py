"""Safe loading of third-party detector weights: tensors only, strict key check, readable errors.

Every file goes through ``torch.load(weights_only=True)``, so a checkpoint can never run code when
it is opened. Checkpoints saved as whole pickled modules are refused with a message that says how to
turn them into a state dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

# containers that training scripts commonly wrap a state dict in
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")


def load_state_dict_file(path: str | Path, strip_prefixes: tuple[str, ...] = ("module.",)) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, loaded on CPU with ``weights_only=True``.

    A state dict wrapped in ``{"state_dict": ...}`` (or ``model``/``net``) is unwrapped, and a leading
    prefix from ``strip_prefixes`` (``module.`` as written by ``DataParallel``) is removed from every key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weight file not found")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError and friends
        raise ValueError(
            f"{path}: cannot be loaded with torch.load(weights_only=True) ({_reason(exc)}). If it is a pickled "
            "whole module, convert it once, in a trusted environment only: "
            "torch.save(torch.load(path, weights_only=False).state_dict(), 'weights.pth')"
        ) from exc
    state = _unwrap(loaded, path)
    for prefix in strip_prefixes:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    return state


def _reason(exc: Exception) -> str:
    """The line of torch's long refusal message that names the offending class, else its first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "Unsupported global" in line]
    reason = (named or lines or [""])[0].split(" was not an allowed global")[0]
    return f"{type(exc).__name__}: {reason}"


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        for key in _WRAPPER_KEYS:
            inner = loaded.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                loaded = inner
                break
        tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise ValueError(f"{path}: holds no state dict of tensors (found {type(loaded).__name__})")


def load_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str | Path,
    optional_suffixes: tuple[str, ...] = ("num_batches_tracked",),
) -> None:
    """``module.load_state_dict(state, strict=True)`` with an error that lists every bad key.

    Missing keys, unexpected keys and shape mismatches are all reported at once, each with its name,
    and ``source`` (the file) is named in the message. Buffers ending in ``optional_suffixes``
    (BatchNorm's step counter, absent from checkpoints saved by old torch versions) may be missing:
    they keep the module's own value.
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
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched)}")
        raise ValueError(f"{source}: does not match {type(module).__name__}: " + " | ".join(parts))
    module.load_state_dict(state, strict=True)


def default_device() -> str:
    """``"cuda"`` where a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"
