"""``mfrn eval``: the video protocol over a dataset reader, streaming and resumable.

Scores go to ``videos.csv`` / ``frames.csv`` row by row (flushed, fsync'ed) as they come, so memory
stays flat however many videos there are, and a killed run resumes where it stopped. Under torchrun
each rank takes every world_size-th video into its own part file; rank 0 merges them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mfrn.evaluate.protocol import aggregate_video
from mfrn.evaluate.scores import FrameScoreWriter, ScoreWriter, VideoResult, iter_scores, read_frame_scores


@dataclass
class EvalRun:
    dataset: str
    video_csv: Path
    frame_csv: Path
    scored: int
    skipped_done: int
    failed: int


def _rank_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _localise(accumulator, record, frames, results) -> int:
    """Add the predicted region maps of one video against its ground-truth mask video (FF++ masks)."""
    import numpy as np

    from mfrn.data.frames import read_frames
    from mfrn.data.media import MediaError
    from mfrn.detect import frame_maps

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


def prefetch(iterable: Iterable, depth: int = 2):
    """Iterate ``iterable`` in a background thread, ``depth`` items ahead (decoding and face detection
    of the next videos overlap with the model scoring the current ones); errors are re-raised here."""
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=max(1, depth))
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        items.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(("done", done))
        except BaseException as error:  # handed to the consumer
            items.put(("error", error))

    thread = threading.Thread(target=produce, name="mfrn-eval-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


@dataclass
class _Video:
    record: object
    frames: list | None = None  # the decoded frames (kept only when localising)
    pending: object = None  # PendingFaces
    error: str | None = None


def score_records(detector, records: Iterable, out_dir: Path, dataset: str, perturbation=None, level: int = 0,
                  seed: int = 0, progress: bool = True, localisation=None) -> EvalRun:
    """Score every video of ``records`` (``VideoRecord``s) into ``out_dir``; skips videos already scored.

    Faces of several videos share a batch (``protocol.batch_size``), and the next videos are decoded
    and searched for faces in a background thread while the model scores. With a
    ``LocalisationAccumulator``, fake videos that have a mask video (FF++) also add their predicted
    region maps against the ground-truth masks (pixel AUC / IoU).
    """
    from tqdm import tqdm

    from mfrn.data.frames import FrameSamplingConfig, read_media_frames
    from mfrn.data.media import MediaError

    rank, world = _rank_world()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    part = "" if world == 1 else f".rank{rank}"
    video_csv, frame_csv = out_dir / f"videos{part}.csv", out_dir / f"frames{part}.csv"
    protocol = detector.protocol
    sampling = FrameSamplingConfig(n_frames=protocol.n_frames)
    counts = {"scored": 0, "skipped": 0, "failed": 0}

    with ScoreWriter(video_csv, protocol=protocol.describe()) as writer, FrameScoreWriter(frame_csv) as frame_writer:
        done = writer.done_keys()  # failed videos are recorded with their reason, not retried

        def todo():
            for number, record in enumerate(records):
                if number % world != rank:
                    continue
                if record.key in done:
                    counts["skipped"] += 1
                    continue
                yield record

        def prepare(record) -> _Video:
            try:
                _, frame_iter = read_media_frames(Path(record.path), protocol.n_frames, config=sampling)
                frames = list(frame_iter)
                if not frames:
                    raise MediaError(record.path, "no frame could be decoded")
            except MediaError as error:
                return _Video(record, error=error.reason)
            if perturbation is not None and level > 0:
                images = perturbation.apply([f.image for f in frames], level, seed=seed)
                frames = [type(f)(index=f.index, image=image, pts=f.pts, time=f.time) for f, image in zip(frames, images)]
            pending = detector.collect_faces((f.index, f.image) for f in frames)
            localise = localisation is not None and getattr(record, "mask_path", None) is not None
            return _Video(record, frames if localise else None, pending)

        def flush(batch: list[_Video]) -> None:
            crops = [crop for video in batch for crop in video.pending.crops]
            keep_maps = any(video.frames is not None for video in batch)
            scores, regions, boundaries = detector.score_crops(crops)
            offset = 0
            for video in batch:
                n = len(video.pending.crops)
                part_maps = [m[offset:offset + n] if (m is not None and keep_maps) else None for m in (regions, boundaries)]
                results = detector.assign_scores(video.pending, scores[offset:offset + n], *part_maps,
                                                 keep_maps=video.frames is not None)
                offset += n
                if video.frames is not None:
                    _localise(localisation, video.record, video.frames, results)
                record = video.record
                score = aggregate_video([[face.score for face in r.faces] for r in results], protocol)
                writer.write(VideoResult(key=record.key, dataset=dataset, method=record.method, label=int(record.label),
                                         score=float(score.score), n_frames=score.n_frames,
                                         n_frames_with_face=score.n_frames_with_face, no_face=score.no_face,
                                         frame_scores=score.frame_scores))
                frame_writer.write_video(record.key, [r.index for r in results], [r.score for r in results])
                counts["scored"] += 1
                bar.update(1)

        bar = tqdm(desc=f"eval {dataset}", unit="video", disable=not (progress and rank == 0), dynamic_ncols=True)
        batch: list[_Video] = []
        for video in prefetch(prepare(record) for record in todo()):
            if video.error is not None:
                writer.write(VideoResult(key=video.record.key, dataset=dataset, method=video.record.method,
                                         label=int(video.record.label), score=math.nan, status="failed",
                                         reason=video.error))
                counts["failed"] += 1
                bar.update(1)
                continue
            batch.append(video)
            if sum(len(v.pending.crops) for v in batch) >= protocol.batch_size:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
        bar.close()
    if world > 1:
        video_csv, frame_csv = _merge_parts(out_dir, world, protocol.describe())
    return EvalRun(dataset, video_csv, frame_csv, counts["scored"], counts["skipped"], counts["failed"])


def _merge_parts(out_dir: Path, world: int, protocol: str) -> tuple[Path, Path]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    video_csv, frame_csv = out_dir / "videos.csv", out_dir / "frames.csv"
    if int(os.environ.get("RANK", 0)) == 0:
        for target in (video_csv, frame_csv):
            target.unlink(missing_ok=True)
        with ScoreWriter(video_csv, protocol=protocol) as writer, FrameScoreWriter(frame_csv) as frame_writer:
            for rank in range(world):
                for result in iter_scores(out_dir / f"videos.rank{rank}.csv"):
                    writer.write(result)
                for key, frames in read_frame_scores(out_dir / f"frames.rank{rank}.csv").items():
                    indices = sorted(frames)
                    frame_writer.write_video(key, indices, [frames[i] for i in indices])
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return video_csv, frame_csv


def run_eval_command(args, reader_options: dict) -> int:
    """The body of ``mfrn eval`` (see ``mfrn eval --help``)."""
    if len(args.dataset) != len(args.root):
        raise ValueError("give one --root per --dataset")
    from mfrn.train.distributed import cleanup, init_distributed, resolve_device

    dist_info = init_distributed(args.device)  # under torchrun: each rank scores every world_size-th video
    try:
        return _run_eval(args, reader_options, resolve_device(args.device or "auto", dist_info))
    finally:
        cleanup(dist_info)


def _run_eval(args, reader_options: dict, device) -> int:
    from mfrn.config_schema import apply_overrides, from_dict, to_dict
    from mfrn.data.readers import build_reader
    from mfrn.evaluate.plots import plot_roc
    from mfrn.evaluate.protocol import ProtocolConfig
    from mfrn.evaluate.robustness import PERTURBATIONS, plot_auc_vs_level
    from mfrn.evaluate.tables import canonical_dataset, cross_dataset_table, cross_manipulation_table, evaluate_scores
    from mfrn.inference import Detector

    detector = Detector.from_checkpoint(args.checkpoint, device=str(device))
    overrides = [o.split("eval.", 1)[1] if o.startswith("eval.") else o for o in args.overrides]
    detector.protocol = from_dict(ProtocolConfig, apply_overrides(to_dict(detector.protocol), overrides))
    print(detector.protocol.describe())
    if args.perturb and args.perturb not in PERTURBATIONS:
        raise ValueError(f"--perturb {args.perturb!r}: known families are {', '.join(sorted(PERTURBATIONS))}")
    out = Path(args.out)
    summaries = {}
    for name, root in zip(args.dataset, args.root):
        reader = build_reader(name, root, **reader_options)
        levels = range(0, 6) if args.perturb else [0]
        accumulator = None
        if getattr(args, "localisation", False):
            from mfrn.evaluate.localisation import LocalisationAccumulator

            accumulator = LocalisationAccumulator()
        aucs = []
        for level in levels:
            sub = out / name if level == 0 else out / name / f"{args.perturb}_level{level}"
            run = score_records(detector, reader.records(args.split), sub, name,
                                PERTURBATIONS[args.perturb] if args.perturb else None, level,
                                progress=not args.no_progress, localisation=accumulator if level == 0 else None)
            if int(os.environ.get("RANK", 0)) != 0:
                continue
            summary = evaluate_scores(run.video_csv, run.frame_csv, bootstrap=args.bootstrap, dataset=name,
                                      protocol=detector.protocol.describe())
            aucs.append(summary.overall.video.auc)
            if level == 0:
                summaries[name] = summary
            print(f"{name}{'' if level == 0 else f' {args.perturb} level {level}'}: {run.scored} scored, "
                  f"{run.skipped_done} already done, {run.failed} failed; video AUC {summary.overall.video.auc:.4f}")
        if accumulator is not None and int(os.environ.get("RANK", 0)) == 0:
            import json
            from dataclasses import asdict

            if accumulator.n_frames:
                metrics = accumulator.compute()
                (out / name).mkdir(parents=True, exist_ok=True)
                (out / name / "localisation.json").write_text(json.dumps(asdict(metrics), indent=1), encoding="utf-8")
                print(f"{name} localisation (videos scored in this run, frames with a mask): pixel AUC "
                      f"{metrics.pixel_auc:.4f}, IoU@0.5 {metrics.iou_at_05:.4f} over {metrics.n_frames} frames")
            else:
                print(f"{name}: no mask videos among the scored videos: no localisation metrics")
        for warning in getattr(reader, "warnings", []) or []:
            print(f"note: {warning}")
        for missing in getattr(reader, "missing", []) or []:
            print(f"missing subset: {missing}")
        if args.perturb and aucs:
            plot = plot_auc_vs_level({args.perturb: aucs[1:]}, out / name / f"auc_vs_{args.perturb}.png",
                                     clean_auc=aucs[0], title=f"{name}: video AUC vs {args.perturb} level")
            print(f"robustness plot: {plot}")
    if int(os.environ.get("RANK", 0)) != 0 or not summaries:
        return 0
    for name, summary in summaries.items():
        if canonical_dataset(name) == "FF++":
            table = cross_manipulation_table(summary)
            table.save(out / "cross_manipulation")
            print(table.markdown)
    table = cross_dataset_table(summaries)
    table.save(out / "cross_dataset")
    print(table.markdown)
    plot_roc(summaries if len(summaries) > 1 else next(iter(summaries.values())), out / "roc.png")
    print(f"tables and ROC plot in {out}")
    return 0
