"""How much the demo's numbers move with the training seed alone: one demo folder's data, several seeds.

A single `mfrn demo` run is one draw: on its 10 real + 10 face-swap test videos the video AUC has moved by 0.1
between training seeds. This reruns the demo's training, calibration and evaluation for each ``--seeds`` value on
a finished demo folder's benchmark, prepared faces and built-in generator (copied, so every run trains on the
same data and only ``train.seed`` differs; ``--set`` adds overrides to every run), and prints per seed and as
mean / sample std:

* validation (what the config is chosen by): the mean val AUC of the last 3 epochs, clean and at the config's
  ``data.val_crf`` (from the run's ``last.pt`` history);
* test (read, never chosen on): the video AUC clean and at H.264 CRF 40 (``eval/ffpp/robustness_h264.json``), the
  stored video threshold and the verdicts on the held-out real ``000.mp4`` and the swap ``000_004.mp4``
  (``detect/results.json``).

``--summarise FOLDER...`` prints the same for finished demo folders without running anything (the source folder
itself is one seed). A JSON of every row goes to ``WORK/seeds.json``.

    python benchmarks/bench_demo_seeds.py --from mfrn-demo --seeds 1 2 --work seeds
    python benchmarks/bench_demo_seeds.py --summarise mfrn-demo seeds/seed_1 seeds/seed_2
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REUSED = ("benchmark", "prepared", "generator.pt", "generator_report.json")  # what a demo rerun takes as it is
HELD_OUT = {"real": "000.mp4", "fake": "000_004.mp4"}  # the report's held-out pair


@dataclass
class SeedRow:
    folder: str
    seed: int
    val_auc_last3: float
    val_auc_crf_last3: float
    test_video_auc: float
    test_video_auc_crf40: float
    threshold: float
    real_score: float  # P(fake) of the held-out real video
    fake_score: float  # P(fake) of the held-out swap
    verdicts_right: bool  # the real called real and the swap fake
    wall_s: float | None = None  # the rerun's wall time (None for a folder only summarised)


def summarise(folder: Path, wall_s: float | None = None) -> SeedRow:
    """The numbers of one finished demo folder (see the module docstring)."""
    import torch

    last = torch.load(folder / "run" / "last.pt", map_location="cpu", weights_only=False)
    history = last["history"][-3:]
    seed = int(last["config"]["train"]["seed"])
    levels = json.loads((folder / "eval" / "ffpp" / "robustness_h264.json").read_text(encoding="utf-8"))["levels"]
    clean = next(level for level in levels if level["value"] is None)
    crf40 = next(level for level in levels if level["value"] == 40)
    detect = json.loads((folder / "detect" / "results.json").read_text(encoding="utf-8"))
    by_name = {Path(result["path"]).name: result for result in detect["results"]}
    real, fake = by_name[HELD_OUT["real"]], by_name[HELD_OUT["fake"]]

    def mean(key: str) -> float:
        values = [entry.get(key) for entry in history]
        return float("nan") if any(v is None for v in values) else sum(values) / len(values)

    return SeedRow(str(folder), seed, mean("val_auc"), mean("val_auc_crf"), float(clean["video_auc"]),
                   float(crf40["video_auc"]), float(detect["threshold"]), float(real["score"]), float(fake["score"]),
                   real["label"] == "real" and fake["label"] == "fake", wall_s)


def run_seed(source: Path, work: Path, seed: int, overrides: list[str]) -> SeedRow:
    """One demo rerun at ``train.seed`` ``seed`` on ``source``'s data, in ``work/seed_<seed>`` (replaced)."""
    missing = [source / name for name in REUSED if not (source / name).exists()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: not there; --from needs a finished demo folder ({', '.join(REUSED)})")
    out = work / f"seed_{seed}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in REUSED:
        path = source / name
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, out / name)
    argv = [sys.executable, "-m", "mfrn.cli", "demo", "-o", str(out), "--set", f"train.seed={seed}"]
    for override in overrides:
        argv += ["--set", override]
    started = time.perf_counter()
    with (out / "demo.log").open("w", encoding="utf-8") as log:
        subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=True)
    return summarise(out, time.perf_counter() - started)


def _mean_std(values: list[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.3f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.3f} +- {std:.3f}"


def print_table(rows: list[SeedRow]) -> None:
    print(f"{'seed':>4} {'val last-3':>10} {'val CRF':>8} | {'test AUC':>8} {'CRF 40':>7} {'threshold':>9} "
          f"{'000 real':>8} {'000_004':>8} {'verdicts':>8}  folder")
    for r in rows:
        print(f"{r.seed:4d} {r.val_auc_last3:10.3f} {r.val_auc_crf_last3:8.3f} | {r.test_video_auc:8.3f} "
              f"{r.test_video_auc_crf40:7.3f} {r.threshold:9.3f} {r.real_score:8.3f} {r.fake_score:8.3f} "
              f"{'right' if r.verdicts_right else 'WRONG':>8}  {r.folder}")
    print(f"mean +- std over {len(rows)} run(s): val {_mean_std([r.val_auc_last3 for r in rows])}, "
          f"val CRF {_mean_std([r.val_auc_crf_last3 for r in rows])}; test {_mean_std([r.test_video_auc for r in rows])}, "
          f"CRF 40 {_mean_std([r.test_video_auc_crf40 for r in rows])}; both verdicts right in "
          f"{sum(r.verdicts_right for r in rows)} of {len(rows)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="source", type=Path, help="a finished demo folder whose data the reruns take")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="train.seed of each rerun")
    parser.add_argument("--work", type=Path, default=Path("demo-seeds"), help="where the reruns go (seed_N folders)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every rerun")
    parser.add_argument("--summarise", type=Path, nargs="+", metavar="FOLDER", help="only summarise finished demo folders")
    args = parser.parse_args(argv)
    if args.summarise:
        rows = [summarise(folder) for folder in args.summarise]
    else:
        if args.source is None:
            parser.error("give --from DEMO_FOLDER (or --summarise FOLDER...)")
        args.work.mkdir(parents=True, exist_ok=True)
        rows = []
        for seed in args.seeds:
            rows.append(run_seed(args.source, args.work, seed, args.overrides))
            print(f"seed {seed}: done in {rows[-1].wall_s:.0f} s", flush=True)
        (args.work / "seeds.json").write_text(json.dumps([asdict(r) for r in rows], indent=1), encoding="utf-8")
    print_table(rows)
    from mfrn.provenance import commit, machine

    print(f"machine: {machine()}; commit {commit()}; overrides {args.overrides or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
