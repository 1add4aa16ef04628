"""Run by tests/train/test_loop.py under torchrun: one rank of a 2-process CPU (gloo) training run.

Writes OUT/rank<r>.json: this rank's weight digest before and after training, the step counts, and
the keys of the faces each of its training steps saw (recorded at collation; needs num_workers 0).
"""

import json
import os
import sys
from pathlib import Path

import torch

import mfrn.train.loop as loop
from mfrn.config import load_config
from mfrn.models import build_model


def record_batches(into: list) -> None:
    """Make the training loop's collate function note the face keys of every batch it builds."""
    collate = loop.collate_pairs

    def recording(items):
        batch = collate(items)
        into.append(list(batch["key"]))
        return batch

    loop.collate_pairs = recording


def main() -> None:
    out, overrides = Path(sys.argv[1]), sys.argv[2:]
    torch.set_num_threads(1)
    config = load_config(None, overrides)
    torch.manual_seed(config.train.seed)
    initial = loop.weights_digest(build_model(config.model))
    rank = int(os.environ["RANK"])
    batches: list = []
    record_batches(batches)
    result = loop.train(config, progress=False)
    report = {"initial": initial, "final": result.weights_digest, "global_step": result.global_step,
              "steps_per_epoch": result.steps_per_epoch, "batch_per_process": result.batch_per_process,
              "batches": batches}
    (out / f"rank{rank}.json").write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    main()
