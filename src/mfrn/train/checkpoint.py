"""Training state in checkpoints: the RNG states a resumed run restores.

The format itself (marker, atomic save, safe load, calibration entry) lives in ``mfrn.checkpoint``,
the low layer that inference reads through too; train saves through it.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from mfrn.checkpoint import (  # noqa: F401  (train saves and resumes through the format module)
    FORMAT,
    Calibration,
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
    set_calibration,
)


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
