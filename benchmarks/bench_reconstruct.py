"""Reconstructions per second on CPU: the built-in generator (batch 8) and SimSwap-224 (random weights).

Run: python benchmarks/bench_reconstruct.py [--threads N] [--repeats R] [--device cpu]
Times encode -> latent noise -> decode of aligned crops (no alignment, no paste-back), after one warm-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mfrn.synth.reconstructors.base import Reconstructor
from mfrn.synth.reconstructors.builtin import BuiltinGeneratorConfig, BuiltinReconstructor
from mfrn.synth.reconstructors.noise import RBINoiseConfig
from mfrn.synth.reconstructors.simswap import random_simswap
from mfrn.provenance import commit, machine






def bench(model: Reconstructor, batch: int, repeats: int, device: str) -> float:
    """Reconstructions per second for ``batch`` random aligned crops."""
    model = model.to(device).eval()
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (model.crop_size, model.crop_size, 3), dtype=np.uint8) for _ in range(batch)]
    model.reconstruct_aligned(crops, RBINoiseConfig(), rng)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        model.reconstruct_aligned(crops, RBINoiseConfig(), rng)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--simswap-batch", type=int, default=2)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {machine()}; device {args.device}; commit {commit()}")
    cfg = BuiltinGeneratorConfig()
    rate = bench(BuiltinReconstructor(cfg), batch=8, repeats=args.repeats, device=args.device)
    print(f"builtin generator {cfg.crop_size}px (channels {cfg.channels()}, {cfg.n_blocks} blocks), batch 8: {rate:.2f} reconstructions/s")
    rate = bench(random_simswap("224"), batch=args.simswap_batch, repeats=args.repeats, device=args.device)
    print(f"SimSwap-224 architecture (random weights, light identity encoder), batch {args.simswap_batch}: {rate:.2f} reconstructions/s")


if __name__ == "__main__":
    main()
