"""Training throughput and peak memory of MFRN vs the SBI baseline (same backbone, same size).

Each step is a training step as in ``mfrn.train``: SAM's two forward+backward passes, then the
SGD update. Prints images/s, peak memory and the MFRN/baseline time-per-step ratio (claim: <= 1.6).
Each model runs in its own process so that peak memory is not shared. Peak memory: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the growth of max RSS over the steps (tracemalloc
does not see torch's allocations). On CPU the ratio uses process CPU time, which other
processes on a shared machine inflate less than wall time (printed too); the two models run
alternately ``--repeats`` times and each keeps its fastest run.

    python benchmarks/bench_model.py --backbone efficientnet_b0 --size 160 --batch 4 --steps 5
    python benchmarks/bench_model.py --backbone efficientnet_b4 --size 380 --batch 32 --device cuda --amp bf16
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch

from mfrn.models import ModelConfig, build_model
from mfrn.train.losses import DetectionLoss, LossConfig
from mfrn.train.sam import SAM, sam_step

RATIO_LIMIT = 1.6


@dataclass
class BenchResult:
    name: str
    seconds_per_step: float  # wall clock
    cpu_seconds_per_step: float  # process CPU time (all threads)
    images_per_second: float
    peak_memory_mib: float
    parameters: int


def _max_rss_mib() -> float:
    """Peak resident set size of this process (ru_maxrss: KiB on Linux, bytes on macOS)."""
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max_rss / 1024.0**2 if sys.platform == "darwin" else max_rss / 1024.0


def bench(name: str, args: argparse.Namespace) -> BenchResult:
    device = torch.device(args.device)
    cfg = ModelConfig(name=name, backbone=args.backbone, pretrained=False, input_size=args.size)
    model = build_model(cfg).to(device).train()
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    sam = SAM(torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9), rho=0.05)
    criterion = DetectionLoss(LossConfig())
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    images = torch.rand(args.batch, 3, args.size, args.size, device=device).to(memory_format=memory_format)
    labels = torch.arange(args.batch, device=device) % 2
    maps = torch.rand(args.batch, args.size, args.size, device=device) * labels[:, None, None]

    def compute_loss() -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            output = model(images)
        return criterion(output, labels, maps, maps).total

    def one_step() -> None:
        sam_step(sam, compute_loss, scaler=scaler, model=model)
        model.project_constraints()

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = _max_rss_mib()
    for _ in range(args.warmup):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    cpu_seconds = (time.process_time() - cpu_start) / args.steps
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 1024.0**2
    else:
        peak = _max_rss_mib() - rss_before
    parameters = sum(p.numel() for p in model.parameters())
    del model, sam
    gc.collect()
    return BenchResult(name, seconds, cpu_seconds, args.batch / seconds, peak, parameters)


def _run_in_subprocess(name: str, argv: list[str]) -> BenchResult:
    command = [sys.executable, __file__, *argv, "--only", name]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark of {name} failed:\n{completed.stderr[-4000:]}")
    return BenchResult(**json.loads(completed.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_b4")
    parser.add_argument("--size", type=int, default=380)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per model (fastest is kept)")
    parser.add_argument("--only", choices=("baseline", "mfrn"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.only:  # child process: one model, one JSON line
        print(json.dumps(asdict(bench(args.only, args))))
        return 0
    # alternate the two models and keep each one's fastest run: robust to load from other processes
    runs: dict[str, list[BenchResult]] = {"baseline": [], "mfrn": []}
    for _ in range(args.repeats):
        for name in runs:
            runs[name].append(_run_in_subprocess(name, argv))
    on_cpu = not args.device.startswith("cuda")
    results = [min(runs[name], key=lambda r: r.cpu_seconds_per_step if on_cpu else r.seconds_per_step)
               for name in runs]
    print(f"backbone={args.backbone} size={args.size} batch={args.batch} device={args.device} "
          f"amp={args.amp} channels_last={args.channels_last} steps={args.steps} (SAM: 2 passes/step)")
    for r in results:
        print(f"{r.name:9s} wall {r.seconds_per_step * 1000:9.1f} ms/step  cpu {r.cpu_seconds_per_step * 1000:9.1f} ms/step "
              f"{r.images_per_second:8.2f} img/s  peak {'RSS growth' if on_cpu else 'allocated'} "
              f"{r.peak_memory_mib:8.1f} MiB  params {r.parameters / 1e6:6.2f} M")
    wall_ratio = results[1].seconds_per_step / results[0].seconds_per_step
    cpu_ratio = results[1].cpu_seconds_per_step / results[0].cpu_seconds_per_step
    ratio = cpu_ratio if on_cpu else wall_ratio
    print(f"MFRN/baseline time-per-step ratio: {ratio:.3f} ({'CPU time' if on_cpu else 'wall'}; "
          f"wall {wall_ratio:.3f}), limit {RATIO_LIMIT}")
    return 0 if ratio <= RATIO_LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(main())
