"""Checkpoints that carry everything: weights, the resolved config, preprocessing, training state.

Saved atomically (a kill never leaves a half-written file). Loading uses ``weights_only=True``; a
file that is not an mfrn checkpoint, is truncated, or holds another model gets a clear error.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfrn import __version__
from mfrn.io_utils import atomic_write_bytes
from mfrn.weights import WeightsError

FORMAT = "mfrn-checkpoint-v1"


class CheckpointError(WeightsError):
    """A checkpoint that cannot be used, with the file and the reason in the message."""


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
        "numpy": {"keys": np_state[1].tolist(), "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[-2], tuple(py[:-2]), py[-1]))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np.array(np_state["keys"], dtype=np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "mfrn_version": __version__, **payload}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickled module, not a torch file at all
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable mfrn checkpoint ({text}); is it truncated or from another tool?") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an mfrn checkpoint (no '{FORMAT}' marker); plain weights for a backbone go to "
            "model.pretrained_file instead"
        )
    for key in ("model", "config"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint has no '{key}' entry")
    return payload


def load_model_state(model: torch.nn.Module, state: dict, path: Path | str) -> None:
    """Strict load with a readable error: which keys are missing, unexpected or mis-shaped."""
    from mfrn.weights import WeightsError, load_strict

    try:
        load_strict(model, state, path, optional_suffixes=())
    except WeightsError as error:
        raise CheckpointError(f"{error} (is it a checkpoint of another model or config?)") from None
