"""Training state in checkpoints: the RNG states a resumed run restores, and which checkpoint a run starts from.

The format itself (marker, atomic save, safe load, calibration entry) lives in ``mfrn.checkpoint``,
the low layer that inference reads through too; train saves through it.
"""

from __future__ import annotations

import random
from pathlib import Path

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


RUN_CHECKPOINTS = ("last.pt", "best.pt", "selected.pt")  # what a run writes into train.out_dir


def resolve_resume(out_dir: Path, resume: Path | str | None, overwrite: bool = False) -> Path | None:
    """The checkpoint a run starts from (None: a fresh run), or a ``ValueError`` before anything is overwritten.

    ``resume="auto"`` is ``<out_dir>/last.pt``, which must exist; a fresh run (or one resumed from a file
    elsewhere) into an ``out_dir`` that holds an earlier run's checkpoints needs ``overwrite``.
    """
    out_dir = Path(out_dir)
    if resume and overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it: give one of them")
    existing = [name for name in RUN_CHECKPOINTS if (out_dir / name).is_file()]
    if resume == "auto":
        if "last.pt" not in existing:
            found = f" (it holds only {', '.join(existing)}, which a run does not resume from)" if existing else ""
            raise ValueError(f"--resume: nothing to resume: {out_dir / 'last.pt'} does not exist{found}; "
                             "run without --resume to start a fresh run, or give the checkpoint: --resume PATH")
        return out_dir / "last.pt"
    if resume:
        resume = Path(resume)
        if not resume.is_file():
            raise CheckpointError(f"{resume}: checkpoint to resume from not found")
        same = (out_dir / "last.pt").is_file() and resume.resolve() == (out_dir / "last.pt").resolve()
        if same or not existing:
            return resume
        raise ValueError(f"--resume {resume}: train.out_dir {out_dir} holds another run's checkpoints "
                         f"({', '.join(existing)}), which this run would overwrite: set train.out_dir to a new folder")
    elif not existing or overwrite:
        return None
    raise ValueError(
        f"{out_dir} already holds the checkpoints of an earlier run ({', '.join(existing)}): add --resume to "
        "continue it, --overwrite to start again and replace them, or set train.out_dir to a new folder")


def clear_run(out_dir: Path) -> list[Path]:
    """Remove an earlier run's checkpoints (``--overwrite``), so a stale best.pt never stands for the new run."""
    removed = []
    for name in RUN_CHECKPOINTS:
        path = Path(out_dir) / name
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed
