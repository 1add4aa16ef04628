"""Safe loading of state-dict files: ``weights_only=True``, ``module.`` stripped, strict key checks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A weights file is not a usable state dict for the model it is loaded into."""


def conversion_hint(path: Path) -> str:
    return (
        f"If {path.name} is a pickled whole module (as SimSwap's arcface_checkpoint.tar is), convert it "
        "once, in an environment you trust, to a plain state dict: "
        f"model = torch.load('{path.name}', map_location='cpu', weights_only=False); "
        f"torch.save(model.state_dict(), '{path.stem}_state_dict.pth')"
    )


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict with ``torch.load(weights_only=True)``; never unpickles arbitrary objects.

    Accepts a plain state dict, or a dict holding one under ``state_dict``/``model``/``net_G``; strips a
    ``module.`` prefix (DataParallel). A pickled whole module is refused with a conversion hint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError (or RuntimeError) for disallowed globals
        raise CheckpointError(
            f"{path}: refused to load with weights_only=True ({type(error).__name__}: {str(error).splitlines()[0]}). "
            + conversion_hint(path)
        ) from None
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "net_G"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), found {type(obj).__name__}. " + conversion_hint(path))
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | Path, assign: bool = False) -> None:
    """``module.load_state_dict(strict=True)`` with an error that lists missing, unexpected and mis-shaped keys.

    ``assign=True`` adopts the file's tensors (for a module built on the meta device).
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mis_shaped:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}{' ...' if len(unexpected) > 20 else ''}")
        if mis_shaped:
            parts.append(f"wrong shapes: {'; '.join(mis_shaped[:20])}")
        raise CheckpointError(f"{source}: does not match {type(module).__name__}: " + " | ".join(parts))
    module.load_state_dict(state_dict, strict=True, assign=assign)
