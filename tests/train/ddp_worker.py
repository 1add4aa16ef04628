"""Run by tests/train/test_loop.py under torchrun: one rank of a 2-process CPU (gloo) training run.

Writes this rank's weight digest (before and after training) to OUT/digest.rank<r>.txt.
"""

import os
import sys
from pathlib import Path

import torch

from mfrn.config import load_config
from mfrn.models import build_model
from mfrn.train.loop import train, weights_digest


def main() -> None:
    out, overrides = Path(sys.argv[1]), sys.argv[2:]
    torch.set_num_threads(1)
    config = load_config(None, overrides)
    torch.manual_seed(config.train.seed)
    initial = weights_digest(build_model(config.model))
    rank = int(os.environ["RANK"])
    result = train(config, progress=False)
    (out / f"digest.rank{rank}.txt").write_text(f"{initial}\n{result.weights_digest}\n{result.global_step}\n")


if __name__ == "__main__":
    main()
