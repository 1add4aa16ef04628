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

``--ensemble FOLDER...`` asks whether an ensemble of the seeds' detectors would pay, on validation only: the face
AUC, clean and at the config's ``data.val_crf``, of each folder's ``run/selected.pt`` and of the mean of their
logits (an ensemble's score), all on the first folder's validation pairs (the same faces and fakes for every member).

    python benchmarks/bench_demo_seeds.py --from mfrn-demo --seeds 1 2 --work seeds
    python benchmarks/bench_demo_seeds.py --summarise mfrn-demo seeds/seed_1 seeds/seed_2
    python benchmarks/bench_demo_seeds.py --ensemble mfrn-demo seeds/seed_1
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


@dataclass
class EnsembleRow:
    members: list[str]  # the folders, the first one's validation pairs scored
    member_auc: list[float]  # each member's val face AUC, clean
    member_auc_crf: list[float]  # and at data.val_crf
    ensemble_auc: float  # the mean of the members' logits, clean
    ensemble_auc_crf: float
    val_crf: int | None
    n_images: int


def mean_logit_auc(logits: list, labels) -> float:
    """The AUC of an ensemble's score: the fake-minus-real logit of the members' mean logits (N, 2)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    mean = np.mean(np.stack([np.asarray(lg, dtype=np.float64) for lg in logits]), axis=0)
    return float(roc_auc_score(np.asarray(labels), mean[:, 1] - mean[:, 0]))


def ensemble_validation(folders: list[Path]) -> EnsembleRow:
    """Each folder's selected.pt and their mean-logit ensemble on the first folder's validation pairs."""
    import copy

    import torch
    from torch.utils.data import DataLoader

    from mfrn.checkpoint import load_checkpoint, load_model_state
    from mfrn.config import config_from_dict
    from mfrn.data.manifest import Manifest
    from mfrn.models import build_model
    from mfrn.synth.dataset import CompressedPairs, collate_pairs, split_faces
    from mfrn.train.calibrate import _inference_model_config, collect_validation, validation_pairs

    paths = [Path(folder) / "run" / "selected.pt" for folder in folders]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: not there; --ensemble needs finished demo folders")
    config = config_from_dict(copy.deepcopy(load_checkpoint(paths[0])["config"]))
    prepared = Path(config.data.prepared)
    faces = split_faces(Manifest(prepared), "val", config.data.val_fraction, config.data.frames_per_video,
                        config.data.faces_per_frame)
    pairs = validation_pairs(config, faces, prepared)
    sets = {"clean": pairs}
    if config.data.val_crf is not None:
        sets["crf"] = CompressedPairs(pairs, config.data.val_crf, motion_frames=config.data.val_motion_frames)
    logits: dict[str, list] = {name: [] for name in sets}
    labels = None
    for path in paths:
        state = load_checkpoint(path)
        model = build_model(_inference_model_config(config_from_dict(copy.deepcopy(state["config"])).model))
        load_model_state(model, state["model"], path)
        for name, dataset in sets.items():
            loader = DataLoader(dataset, batch_size=config.data.batch_size, shuffle=False, collate_fn=collate_pairs)
            scored = collect_validation(model, loader, torch.device("cpu"))
            logits[name].append(scored.logits)
            labels = scored.labels
    crf = logits.get("crf", [])
    return EnsembleRow([str(f) for f in folders], [mean_logit_auc([lg], labels) for lg in logits["clean"]],
                       [mean_logit_auc([lg], labels) for lg in crf], mean_logit_auc(logits["clean"], labels),
                       mean_logit_auc(crf, labels) if crf else float("nan"), config.data.val_crf, int(len(labels)))


def print_ensemble(row: EnsembleRow) -> None:
    crf = f"CRF {row.val_crf}" if row.val_crf is not None else "CRF -"
    print(f"validation face AUC on {row.members[0]}'s val pairs ({row.n_images} images), clean / {crf}:")
    for i, folder in enumerate(row.members):
        at_crf = f"{row.member_auc_crf[i]:.4f}" if row.member_auc_crf else "-"
        print(f"  member {folder}: {row.member_auc[i]:.4f} / {at_crf}")
    print(f"  ensemble (mean logits of {len(row.members)}): {row.ensemble_auc:.4f} / {row.ensemble_auc_crf:.4f}")


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
    parser.add_argument("--ensemble", type=Path, nargs="+", metavar="FOLDER",
                        help="validation AUC of these finished folders' detectors and of their mean-logit ensemble")
    args = parser.parse_args(argv)
    from mfrn.provenance import commit, machine

    if args.ensemble:
        row = ensemble_validation(args.ensemble)
        print_ensemble(row)
        print(f"machine: {machine()}; commit {commit()}")
        return 0
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
    print(f"machine: {machine()}; commit {commit()}; overrides {args.overrides or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
