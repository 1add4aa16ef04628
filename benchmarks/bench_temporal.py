"""The temporal head against the frame mean, on the demo's real-manipulation videos, at equal training budget.

What it does (every step through the project's own API, nothing special-cased):

1. builds (or reuses) the demo benchmark tree (``build_demo_benchmark``: real clips of registry people,
   classical face swaps of held-out test people, FF++ layout);
2. prepares the real train + val videos once, as clips (``clip_length`` x ``clips_per_video`` consecutive
   frames, faces tracked): the frame model trains on these frames, the temporal head on these clips;
3. trains the frame detector with ``--frame-config`` (the CPU recipe by default);
4. trains the temporal detector end to end with the same config plus ``model.temporal`` and ``clip.length``,
   for as many epochs as make the same number of training images (frames through the network) as step 3,
   and, with ``--frozen``, the head alone on step 3's frozen frame detector (its cost is reported apart);
5. evaluates each on the test split (face swaps against the test people's real videos): video AUC of the
   frame mean (32 frames, SBI's protocol) and of the temporal head (K clips of T frames), on the same
   videos, each with its bootstrap CI; and the CPU cost per video of each (decode + faces + model), the
   clip part of the temporal detector timed apart.

    python benchmarks/bench_temporal.py --work runs/bench_temporal
    python benchmarks/bench_temporal.py --frame-config configs/mfrn_lite0_cpu.yaml --clip-length 8 \\
        --clips-per-video 4 --temporal tcn --frozen

Writes ``WORK/bench_temporal.json`` and ``.md`` with the machine, the commit and the load average (the
development machine is shared: wall-clock times are contended, CPU times less so).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mfrn.provenance import commit, machine

CPU_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "mfrn_lite0_cpu.yaml"


def _load(path: Path, overrides: list[str]):
    from mfrn.config import load_config

    return load_config(path, overrides)


def prepare_clips(root: Path, out: Path, length: int, count: int, workers: int) -> Path:
    """The benchmark's real train + val videos as clips (resumable: a finished folder is reused)."""
    from mfrn.data.prepare import PrepareConfig, dataset_items, run_prepare
    from mfrn.data.readers import build_reader

    items, line = dataset_items(build_reader("ffpp", root), ("train", "val"), real_only=True)
    print(line)
    summary = run_prepare(items, out, PrepareConfig(clip_length=length, clips_per_video=count), workers=workers,
                          progress=False)
    print(summary.format())
    return out


def _train(config, label: str) -> dict:
    from mfrn.train.loop import train

    start, cpu = time.perf_counter(), time.process_time()
    result = train(config, progress=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    frames_per_item = config.clip.length if config.model.temporal != "off" else 1
    images = result.global_step * 2 * config.data.batch_size * frames_per_item
    checkpoint = result.selected_checkpoint or result.best_checkpoint or result.last_checkpoint
    print(f"{label}: {result.global_step} steps, {images} training images, {wall:.0f} s wall, {cpu:.0f} s CPU; "
          f"best val AUC {result.best_val_auc}; evaluating {checkpoint}")
    return {"steps": result.global_step, "images": images, "wall_s": wall, "cpu_s": cpu,
            "best_val_auc": result.best_val_auc, "checkpoint": str(checkpoint)}


def _epochs_for(config, images: int) -> int:
    """Epochs of ``config`` (a temporal run) that make about ``images`` training images."""
    from mfrn.data.manifest import Manifest
    from mfrn.synth.clip_dataset import select_clips

    clips = select_clips(Manifest(Path(config.data.prepared)), "train", config.clip, config.data.val_fraction,
                         config.data.faces_per_frame)
    steps_per_epoch = max(1, len(clips) // config.data.batch_size)
    per_step = 2 * config.data.batch_size * config.clip.length
    return max(1, round(images / (per_step * steps_per_epoch)))


def evaluate(checkpoint: str, root: Path, out: Path, clips_per_video: int, bootstrap: int) -> dict:
    """Video AUCs on the test split (face swaps vs the test people's real videos) and the CPU cost per video."""
    from mfrn.data.readers import build_reader
    from mfrn.evaluate.runner import score_records
    from mfrn.evaluate.tables import evaluate_scores
    from mfrn.inference import Detector

    detector = Detector.from_checkpoint(checkpoint, device="cpu", warn_uncalibrated=False)
    detector.protocol.clips_per_video = clips_per_video
    records = list(build_reader("ffpp", root, methods=["FaceSwap"]).records("test"))
    start, cpu = time.perf_counter(), time.process_time()
    run = score_records(detector, records, out, "ffpp", progress=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    frame = evaluate_scores(run.video_csv, run.frame_csv, bootstrap=bootstrap, dataset="ffpp").overall.video
    row = {"n_real": frame.n_real, "n_fake": frame.n_fake, "frame_mean_auc": frame.auc, "frame_mean_ci": frame.auc_ci,
           "eval_wall_s_per_video": wall / max(run.scored, 1), "eval_cpu_s_per_video": cpu / max(run.scored, 1)}
    if run.temporal_video_csv is not None:
        temporal = evaluate_scores(run.temporal_video_csv, run.temporal_clip_csv, bootstrap=bootstrap,
                                   dataset="ffpp").overall.video
        row.update(temporal_auc=temporal.auc, temporal_ci=temporal.auc_ci,
                   clip_cpu_s_per_video=_clip_cost(detector, [r.path for r in records]))
    return row


def _clip_cost(detector, paths: list) -> float:
    """CPU seconds per video of the temporal part alone: the clips' frames decoded, faces tracked, clips scored."""
    cpu = time.process_time()
    for path in paths:
        detector.score_clips(detector.collect_clips(path))
    return (time.process_time() - cpu) / max(len(paths), 1)


def _markdown(report: dict) -> str:
    def auc(row: dict, name: str) -> str:
        value, ci = row.get(f"{name}_auc"), row.get(f"{name}_ci")
        if value is None:
            return "n/a"
        return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    lines = [f"machine: {report['machine']}; commit {report['commit']}; load average at start "
             f"{report['load_start']}, at end {report['load_end']} (shared machine: wall times are contended)",
             f"command: {report['command']}", "",
             "| model | training (steps, images, CPU s) | video AUC frame mean [95 % CI] | video AUC temporal [95 % CI] "
             "| eval CPU s / video (clip part) | videos (real + fake) |", "|---|---|---|---|---|---|"]
    for name, row in report["runs"].items():
        train, ev = row["train"], row["eval"]
        clip = f" ({ev['clip_cpu_s_per_video']:.2f})" if "clip_cpu_s_per_video" in ev else ""
        lines.append(f"| {name} | {train['steps']}, {train['images']}, {train['cpu_s']:.0f} | {auc(ev, 'frame_mean')} "
                     f"| {auc(ev, 'temporal')} | {ev['eval_cpu_s_per_video']:.2f}{clip} | {ev['n_real']} + "
                     f"{ev['n_fake']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame-config", type=Path, default=CPU_RECIPE, help="the frame detector's config")
    parser.add_argument("--root", type=Path, default=Path("runs/demo-ffpp"), help="the demo benchmark tree")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_temporal"))
    parser.add_argument("--clip-length", type=int, default=8)
    parser.add_argument("--clips-per-video", type=int, default=4)
    parser.add_argument("--temporal", default="tcn", choices=("tcn", "transformer"))
    parser.add_argument("--frozen", action="store_true", help="also train the head alone on the frozen frame model")
    parser.add_argument("--batch-clips", type=int, default=2, help="real clips per step of the temporal runs")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-test-pairs", type=int, default=None, help="a smaller test split, for a quick run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override for both configs (e.g. train.epochs=5)")
    args = parser.parse_args(argv)
    if not args.frame_config.is_file():
        print(f"{args.frame_config}: not found. The temporal benchmark runs on the CPU recipe (configs/"
              "mfrn_lite0_cpu.yaml, ImageNet Lite0 weights from registry packages); give another config with "
              "--frame-config", file=sys.stderr)
        return 2
    from mfrn.data.demo_benchmark import build_demo_benchmark

    report = {"machine": machine(), "commit": commit(), "load_start": os.getloadavg(), "command": " ".join(sys.argv),
              "runs": {}}
    print(f"machine: {report['machine']}\ncommit: {report['commit']}")
    bench = build_demo_benchmark(args.root, workers=args.workers, progress=False, max_test_pairs=args.max_test_pairs)
    print(bench.format())
    prepared = prepare_clips(args.root, args.work / "prepared", args.clip_length, args.clips_per_video, args.workers)
    common = [f"data.prepared={prepared}", "train.tensorboard=false", "train.device=cpu", *args.overrides]

    frame_config = _load(args.frame_config, common + [f"train.out_dir={args.work / 'frame'}"])
    frame = {"train": _train(frame_config, "frame model")}
    frame["eval"] = evaluate(frame["train"]["checkpoint"], args.root, args.work / "eval_frame", args.clips_per_video,
                             args.bootstrap)
    report["runs"]["frame detector (frame mean)"] = frame

    temporal = common + [f"model.temporal={args.temporal}", f"clip.length={args.clip_length}",
                         f"data.batch_size={args.batch_clips}"]
    end_to_end = _load(args.frame_config, temporal + [f"train.out_dir={args.work / 'temporal'}"])
    end_to_end.train.epochs = _epochs_for(end_to_end, frame["train"]["images"])  # the frame run's image budget
    run = {"train": _train(end_to_end, "temporal, end to end")}
    run["eval"] = evaluate(run["train"]["checkpoint"], args.root, args.work / "eval_temporal", args.clips_per_video,
                           args.bootstrap)
    report["runs"][f"frame detector + {args.temporal} head, end to end (equal images)"] = run

    if args.frozen:
        frozen = _load(args.frame_config, temporal + [
            f"train.out_dir={args.work / 'temporal_frozen'}", "model.temporal_freeze_frame=true",
            f"model.temporal_frame_checkpoint={frame['train']['checkpoint']}"])
        run = {"train": _train(frozen, "temporal head on the frozen frame model")}
        run["eval"] = evaluate(run["train"]["checkpoint"], args.root, args.work / "eval_frozen", args.clips_per_video,
                               args.bootstrap)
        report["runs"][f"{args.temporal} head on the frozen frame detector (its training: extra)"] = run

    report["load_end"] = os.getloadavg()
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "bench_temporal.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    text = _markdown(report)
    (args.work / "bench_temporal.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
