"""``mfrn eval``: the video protocol over a dataset reader, streaming and resumable.

Scores go to ``videos.csv`` / ``frames.csv`` row by row (flushed, fsync'ed) as they come, so memory
stays flat however many videos there are, and a killed run resumes where it stopped. Under torchrun
each rank takes every world_size-th video into its own part file; rank 0 merges them.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mfrn.evaluate.scores import FrameScoreWriter, ScoreWriter, VideoResult, iter_scores, read_frame_scores

MISSING_REASON = "listed by the dataset's label or split file but not on disk"


TEMPORAL_VIDEO_CSV, TEMPORAL_CLIP_CSV = "temporal_videos.csv", "temporal_clips.csv"


@dataclass
class EvalRun:
    dataset: str
    video_csv: Path
    frame_csv: Path
    scored: int
    skipped_done: int
    failed: int
    missing: int = 0  # listed videos that are not on disk (recorded as status "missing")
    # a temporal checkpoint's clip scores, in the score files' format (a row per video, one per clip)
    temporal_video_csv: Path | None = None
    temporal_clip_csv: Path | None = None


@dataclass
class EvalOutcome:
    """What ``mfrn eval`` did, for the command's exit code."""

    n_ok: int | None  # videos scored (now or by an earlier run) over all datasets; None on ranks > 0
    datasets: list[str]


def _rank_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _localise(accumulator, record, frames, results) -> int:
    """Add the predicted region maps of one video against its ground-truth mask video (FF++ masks)."""
    import numpy as np

    from mfrn.data.frames import read_frames
    from mfrn.data.media import MediaError
    from mfrn.inference.overlays import frame_maps

    try:
        masks = {m.index: m.image for m in read_frames(Path(record.mask_path), [f.index for f in frames])}
    except (MediaError, ValueError):
        return 0
    added = 0
    for frame, result in zip(frames, results):
        mask = masks.get(frame.index)
        if mask is None:
            continue
        region, _ = frame_maps(frame.image.shape[:2], result.faces)
        if region is None:
            region = np.zeros(frame.image.shape[:2], np.float32)
        accumulator.update(region, mask.max(axis=2))
        added += 1
    return added


def score_records(detector, records: Iterable, out_dir: Path, dataset: str, perturbation=None, level: int = 0,
                  seed: int = 0, progress: bool = True, localisation=None) -> EvalRun:
    """Score every video of ``records`` (``VideoRecord``s) into ``out_dir``; skips videos already scored.

    ``records`` may be a reader's ``entries()``: a listed video that is not on disk is recorded with
    status "missing" (counted, never scored, looked for again by a rerun). The inference core's
    ``score_media`` does the work: faces of several videos share a batch (``protocol.batch_size``),
    the next videos are decoded and searched for faces in a background thread while the model
    scores. With a ``LocalisationAccumulator``, fake videos that have a mask video (FF++) also add
    their predicted region maps against the ground-truth masks (pixel AUC / IoU).
    """
    from tqdm import tqdm

    from mfrn.inference.batching import score_media

    rank, world = _rank_world()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    part = "" if world == 1 else f".rank{rank}"
    video_csv, frame_csv = out_dir / f"videos{part}.csv", out_dir / f"frames{part}.csv"
    protocol = detector.protocol
    counts = {"scored": 0, "skipped": 0, "failed": 0, "missing": 0}
    missing_found: list = []  # appended by the reading thread, written by this one

    def transform(frames):
        images = perturbation.apply([f.image for f in frames], level, seed=seed)
        return [type(f)(index=f.index, image=image, pts=f.pts, time=f.time) for f, image in zip(frames, images)]

    def localised(record) -> bool:
        return localisation is not None and getattr(record, "mask_path", None) is not None

    temporal = _TemporalWriters(out_dir, part, detector) if detector.temporal_model is not None else None
    with ScoreWriter(video_csv, protocol=protocol.describe()) as writer, FrameScoreWriter(frame_csv) as frame_writer:
        done = writer.done_keys()  # failed videos are recorded with their reason, not retried

        def todo():
            for number, record in enumerate(records):
                if number % world != rank:
                    continue
                if record.key in done:
                    counts["skipped"] += 1
                elif not Path(record.path).is_file():
                    missing_found.append(record)
                else:
                    yield record

        def write_missing() -> None:
            while missing_found:
                record = missing_found.pop(0)
                counts["missing"] += 1
                if writer.status_of(record.key) != "missing":  # a rerun does not repeat the row
                    writer.write(VideoResult(key=record.key, dataset=dataset, method=record.method,
                                             label=int(record.label), score=math.nan, status="missing",
                                             reason=MISSING_REASON))

        bar = tqdm(desc=f"eval {dataset}", unit="video", disable=not (progress and rank == 0), dynamic_ncols=True)
        for scored in score_media(detector, todo(), path_of=lambda record: record.path,
                                  transform=transform if (perturbation is not None and level > 0) else None,
                                  keep_frames=localised):
            write_missing()
            record, result = scored.item, scored.result
            if not result.ok:
                writer.write(VideoResult(key=record.key, dataset=dataset, method=record.method,
                                         label=int(record.label), score=math.nan, status="failed",
                                         reason=result.error or "unknown"))
                counts["failed"] += 1
            else:
                if scored.frames is not None:
                    _localise(localisation, record, scored.frames, result.frames)
                frame_scores = [frame.score for frame in result.frames]
                if temporal is not None:  # before the video's row, which marks it done
                    temporal.write(record, dataset, result.temporal)
                writer.write(VideoResult(key=record.key, dataset=dataset, method=record.method, label=int(record.label),
                                         score=float(result.protocol_score), n_frames=result.n_frames,
                                         n_frames_with_face=result.n_frames_with_face, no_face=result.no_face,
                                         reason=result.warning or "", frame_scores=frame_scores))
                frame_writer.write_video(record.key, [frame.index for frame in result.frames], frame_scores)
                counts["scored"] += 1
            bar.update(1)
        write_missing()
        bar.close()
    if temporal is not None:
        temporal.close()
    if world > 1:
        video_csv, frame_csv = _merge_parts(out_dir, world, protocol.describe())
        if temporal is not None:
            _merge_parts(out_dir, world, detector.describe_temporal(), (TEMPORAL_VIDEO_CSV, TEMPORAL_CLIP_CSV))
    run = EvalRun(dataset, video_csv, frame_csv, counts["scored"], counts["skipped"], counts["failed"], counts["missing"])
    if temporal is not None:
        run.temporal_video_csv, run.temporal_clip_csv = out_dir / TEMPORAL_VIDEO_CSV, out_dir / TEMPORAL_CLIP_CSV
    return run


class _TemporalWriters:
    """The temporal head's scores of a run: one row per video (its clips as the "frames") and one per clip."""

    def __init__(self, out_dir: Path, part: str, detector) -> None:
        stem = lambda name: out_dir / name.replace(".csv", f"{part}.csv")  # noqa: E731
        self.videos = ScoreWriter(stem(TEMPORAL_VIDEO_CSV), protocol=detector.describe_temporal())
        self.clips = FrameScoreWriter(stem(TEMPORAL_CLIP_CSV))

    def write(self, record, dataset: str, temporal) -> None:
        if self.videos.status_of(record.key) == "ok":  # a resumed run that stopped between the two rows
            return
        scores = [clip.score for clip in temporal.clips]
        self.videos.write(VideoResult(key=record.key, dataset=dataset, method=record.method, label=int(record.label),
                                      score=float(temporal.protocol_score), n_frames=len(scores),
                                      n_frames_with_face=temporal.n_scored, no_face=temporal.score is None,
                                      reason=temporal.warning or "", frame_scores=scores))
        self.clips.write_video(record.key, [clip.frames[0] for clip in temporal.clips], scores)

    def close(self) -> None:
        self.videos.close()
        self.clips.close()


def _merge_parts(out_dir: Path, world: int, protocol: str,
                 names: tuple[str, str] = ("videos.csv", "frames.csv")) -> tuple[Path, Path]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    video_csv, frame_csv = out_dir / names[0], out_dir / names[1]
    if int(os.environ.get("RANK", 0)) == 0:
        for target in (video_csv, frame_csv):
            target.unlink(missing_ok=True)
        with ScoreWriter(video_csv, protocol=protocol) as writer, FrameScoreWriter(frame_csv) as frame_writer:
            for rank in range(world):
                for result in iter_scores(out_dir / names[0].replace(".csv", f".rank{rank}.csv")):
                    writer.write(result)
                for key, frames in read_frame_scores(out_dir / names[1].replace(".csv", f".rank{rank}.csv")).items():
                    indices = sorted(frames)
                    frame_writer.write_video(key, indices, [frames[i] for i in indices])
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return video_csv, frame_csv


def run_eval_command(args, reader_options: dict) -> EvalOutcome:
    """The body of ``mfrn eval`` (see ``mfrn eval --help``)."""
    if len(args.dataset) != len(args.root):
        raise ValueError("give one --root per --dataset")
    from mfrn.io_utils import ensure_output_dir
    from mfrn.train.distributed import cleanup, init_distributed, resolve_device
    from mfrn.weights import check_device

    ensure_output_dir(args.out)
    if args.device:
        check_device(args.device)  # `--device cuda` without a GPU: one line, before torch is asked
    dist_info = init_distributed(args.device)  # under torchrun: each rank scores every world_size-th video
    try:
        return _run_eval(args, reader_options, resolve_device(args.device or "auto", dist_info))
    finally:
        cleanup(dist_info)


def _check_listed(name: str, reader, split: str | None) -> None:
    """``--strict``: every video the dataset lists must be on disk."""
    missing = [entry.key for entry in reader.entries(split) if not Path(entry.path).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{name}: {len(missing)} listed video(s) are not on disk under {reader.root} ({shown}); "
                         "without --strict they are counted as missing and the rest is evaluated")


def _auc_text(metrics) -> str:
    if metrics.reason:
        return f"n/a (one class: {metrics.n_real} real, {metrics.n_fake} fake)"
    return f"{metrics.auc:.4f}"


def _one_class_report(name: str, summary, video_csv: Path, out: Path, verdict: dict, detector) -> None:
    """Only real (or only fake) videos: no AUC, but each video's score and verdict, and the share called fake."""
    from mfrn.evaluate.scores import read_scores
    from mfrn.evaluate.tables import per_video_table

    table = per_video_table(read_scores(video_csv), name, verdict["threshold"],
                            verdict["threshold_rule"] or detector.threshold_rule)
    table.save(out / name / "per_video")
    print(table.markdown if len(table.rows) <= 20 else
          "\n".join(table.markdown.splitlines()[:24]) + f"\n... ({len(table.rows)} videos in {out / name / 'per_video.md'})")


def _temporal_report(name: str, summary, run: EvalRun, out: Path, detector, bootstrap: int) -> None:
    """A temporal checkpoint: the frame-mean video AUC and the temporal one, side by side on the same videos."""
    from mfrn.evaluate.tables import evaluate_scores, temporal_comparison_table

    temporal = evaluate_scores(run.temporal_video_csv, run.temporal_clip_csv, bootstrap=bootstrap, dataset=name,
                               protocol=detector.describe_temporal())
    table = temporal_comparison_table(summary, temporal)
    table.save(out / "temporal_vs_frame_mean")
    print(table.markdown)


def _verdict_threshold(detector, entries) -> dict:
    """The checkpoint's stored verdict threshold and its rule, for the tables' accuracy column: the one
    ``mfrn detect`` judges these files by, a single image's for a dataset of images only (where the
    calibration chose one), else the video one (said in the rule when images are among the videos)."""
    from mfrn.data.media import is_image

    images = [is_image(entry.path) for entry in entries]
    n_images = sum(images)
    kind = "image" if images and all(images) else "video"
    if detector.calibration is None:
        return {"threshold": detector.threshold_for(kind), "threshold_rule": None}
    threshold, rule = detector.threshold_for(kind), detector.threshold_rule_for(kind)
    if kind == "video" and n_images and detector.threshold_for("image") != threshold:
        rule += (f"; the {n_images} single image(s) among these videos are counted at it too, although mfrn detect "
                 f"judges an image at {detector.threshold_for('image'):.4g}")
    return {"threshold": threshold, "threshold_rule": rule}


def _sweep_row(perturbation, level: int, summary) -> dict:
    """One level of a robustness sweep: its parameter value and the video AUC with its interval."""
    video = summary.overall.video
    return {"level": level, "value": None if level == 0 else perturbation.levels[level - 1],
            "label": perturbation.describe(level), "video_auc": video.auc,
            "video_auc_ci": list(video.auc_ci) if video.auc_ci else None,
            "frame_auc": summary.overall.frame.auc if summary.overall.frame is not None else None,
            "n_real": video.n_real, "n_fake": video.n_fake}


def _run_eval(args, reader_options: dict, device) -> EvalOutcome:
    from mfrn.config_schema import apply_overrides, from_dict, to_dict
    from mfrn.data.readers import build_reader
    from mfrn.evaluate.plots import plot_roc
    from mfrn.evaluate.robustness import level_folder, parse_perturbation, plot_auc_vs_level
    from mfrn.evaluate.tables import canonical_dataset, cross_dataset_table, cross_manipulation_table, evaluate_scores
    from mfrn.inference import Detector, ProtocolConfig

    detector = Detector.from_checkpoint(args.checkpoint, device=str(device), warn_uncalibrated=False)  # printed below
    overrides = [o.split("eval.", 1)[1] if o.startswith("eval.") else o for o in args.overrides]
    detector.protocol = from_dict(ProtocolConfig, apply_overrides(to_dict(detector.protocol), overrides))
    is_main = int(os.environ.get("RANK", 0)) == 0
    if is_main:
        print(detector.protocol.describe())
        if detector.temporal_model is not None:
            print(detector.describe_temporal())
        print(detector.describe_calibration())
        mismatch = detector.calibration_mismatch()
        if mismatch is not None:
            print(f"warning: {mismatch}", file=sys.stderr)
    perturbation = parse_perturbation(args.perturb) if args.perturb else None  # checked before anything runs
    out = Path(args.out)
    readers = {}
    for name, root in zip(args.dataset, args.root):
        readers[name] = build_reader(name, root, **reader_options)
        if getattr(args, "strict", False):
            _check_listed(name, readers[name], args.split)
    summaries = {}
    for name, reader in readers.items():
        levels = range(0, len(perturbation.levels) + 1) if perturbation else [0]
        accumulator = None
        if getattr(args, "localisation", False):
            from mfrn.evaluate.localisation import LocalisationAccumulator

            accumulator = LocalisationAccumulator(pixel_threshold=detector.pixel_threshold)
        aucs, sweep = [], []
        verdict = _verdict_threshold(detector, reader.entries(args.split))
        for level in levels:
            sub = out / name if level == 0 else out / name / level_folder(perturbation, level)
            run = score_records(detector, reader.entries(args.split), sub, name, perturbation, level,
                                progress=not args.no_progress, localisation=accumulator if level == 0 else None)
            if not is_main:
                continue
            summary = evaluate_scores(run.video_csv, run.frame_csv, bootstrap=args.bootstrap, dataset=name,
                                      protocol=detector.protocol.describe(), **verdict)
            aucs.append(summary.overall.video.auc)
            if perturbation is not None:
                sweep.append(_sweep_row(perturbation, level, summary))
            if level == 0:
                summaries[name] = summary
            missing = f", {summary.n_missing} missing (listed, not on disk)" if summary.n_missing else ""
            print(f"{name}{'' if level == 0 else f' {perturbation.describe(level)}'}: {run.scored} scored, "
                  f"{run.skipped_done} already done, {run.failed} failed{missing}; "
                  f"video AUC {_auc_text(summary.overall.video)}")
            if run.temporal_video_csv is not None and summary.n_scored:
                _temporal_report(name, summary, run, sub, detector, args.bootstrap)
            if level == 0 and summary.n_scored and not summary.overall.video.valid:
                _one_class_report(name, summary, run.video_csv, out, verdict, detector)
        if accumulator is not None and is_main:
            import json
            from dataclasses import asdict

            if accumulator.n_frames:
                metrics = accumulator.compute()
                (out / name).mkdir(parents=True, exist_ok=True)
                (out / name / "localisation.json").write_text(json.dumps(asdict(metrics), indent=1), encoding="utf-8")
                print(f"{name} localisation (videos scored in this run, frames with a mask): {metrics.format()}")
            else:
                print(f"{name}: no mask videos among the scored videos: no localisation metrics")
        for warning in getattr(reader, "warnings", []) or []:
            print(f"note: {warning}")
        for missing in getattr(reader, "missing", []) or []:
            print(f"missing subset: {missing}")
        if perturbation is not None and sweep:
            from mfrn.io_utils import atomic_write_json

            atomic_write_json(out / name / f"robustness_{perturbation.name}.json",
                              {"family": perturbation.name, "parameter": perturbation.parameter, "levels": sweep})
        if perturbation is not None and len(aucs) > 1 and all(a == a for a in aucs):  # NaN (one class): no plot
            plot = plot_auc_vs_level({perturbation.name: aucs[1:]}, out / name / f"auc_vs_{perturbation.name}.png",
                                     clean_auc=aucs[0], title=f"{name}: video AUC vs {perturbation.name}",
                                     x_values=perturbation.levels, x_label=f"{perturbation.name} {perturbation.parameter}")
            print(f"robustness plot: {plot}")
    if not is_main:
        return EvalOutcome(None, list(readers))
    n_ok = sum(summary.n_scored for summary in summaries.values())
    if not n_ok:
        return EvalOutcome(0, list(readers))
    for name, summary in summaries.items():
        if canonical_dataset(name) == "FF++":
            table = cross_manipulation_table(summary)
            table.save(out / "cross_manipulation")
            print(table.markdown)
    table = cross_dataset_table(summaries)
    table.save(out / "cross_dataset")
    print(table.markdown)
    with_curve = {name: s for name, s in summaries.items() if any(m.video.curve is not None for m in s.methods)}
    if with_curve:
        plot_roc(with_curve if len(with_curve) > 1 else next(iter(with_curve.values())), out / "roc.png")
        print(f"tables and ROC plot in {out}")
    else:
        print(f"tables in {out}; note: ROC plot skipped: no dataset has both real and fake videos scored")
    return EvalOutcome(n_ok, list(readers))
