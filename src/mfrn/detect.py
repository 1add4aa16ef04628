"""``mfrn detect``: per face and per file a verdict (real | fake | no_face), JSON + CSV, and overlays.

The files are scored by the inference core (``mfrn.inference``): decoded ahead in a thread, faces of
several files per batch. Each finished file is appended at once to ``results.jsonl``; at the end
(and on Ctrl-C) ``results.json`` and ``results.csv`` are written atomically from it. A rerun into the
same folder skips the files already done (``--retry-failed`` retries the failed ones). Image input
-> an overlay PNG; video input -> an overlay MP4 of the sampled frames, each with the predicted
region (red, outlined at the calibrated pixel threshold) and boundary (yellow) maps and the verdict.
Unreadable files are recorded with the reason and the run goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DetectSummary:
    out_dir: Path
    calibration_line: str = ""
    results: list[dict] = field(default_factory=list)  # this run's inputs that were scored (result records)
    failures: list[dict] = field(default_factory=list)  # this run's inputs that failed (result records)
    n_resumed: int = 0  # of those, already done by an earlier run
    complete: bool = True

    @property
    def n_ok(self) -> int:
        return len(self.results)

    def __str__(self) -> str:
        lines = []  # the calibration line was printed when the run started
        for r in self.results:
            frames = f"{r['n_frames_with_face']}/{r['n_frames']} frames with a face"
            if r["label"] == "no_face":
                line = f"{r['path']}: NO FACE (no face found in {r['n_frames']} sampled frame{'s' * (r['n_frames'] != 1)})"
            else:
                sign = ">=" if r["label"] == "fake" else "<"
                line = f"{r['path']}: {r['label'].upper()} (P(fake) = {r['score']:.3f} {sign} {r['threshold']:.3g}; {frames})"
            lines.append(line + _temporal_text(r) + (f"; {r['warning']}" if r["warning"] else ""))
        lines += [f"{r['path']}: skipped ({r['error']})" for r in self.failures]
        counts = {label: sum(r["label"] == label for r in self.results) for label in ("real", "fake", "no_face")}
        lines.append(f"{len(self.results)} scored ({counts['fake']} fake, {counts['real']} real, {counts['no_face']} "
                     f"without a face), {len(self.failures)} failed"
                     + (f", {self.n_resumed} of them done by an earlier run" if self.n_resumed else "")
                     + ("" if self.complete else "; interrupted: the rest is not done, a rerun resumes"))
        lines.append(f"results: {self.out_dir / 'results.json'}, {self.out_dir / 'results.csv'}")
        return "\n".join(lines)


def _temporal_text(record: dict) -> str:
    """A temporal checkpoint's clip score beside the frame verdict: "; temporal P(fake) = ... over k/K clips"."""
    temporal = record.get("temporal")
    if not temporal:
        return ""
    if temporal["score"] is None:
        reason = temporal.get("warning") or "no face tracked through a whole clip"
        return f"; temporal: no score ({reason})"
    return (f"; temporal P(fake) = {temporal['score']:.3f} over {temporal['n_clips_scored']}/{temporal['n_clips']} "
            f"clips of {temporal['clip_length']} frames")


def _expand_inputs(inputs: Sequence[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Media files of the inputs, and (input, reason) for each input that gives none ("no media found in ...")."""
    from mfrn.data.media import list_media

    listing = list_media(inputs)  # a missing input is recorded, the others are still examined
    return listing.files, [(str(path), reason) for path, reason in listing.problems]


def _key(path: Path | str) -> str:
    from mfrn.data.media import path_identity

    return path_identity(path)


def run_detect(inputs: Sequence[Path], checkpoint: Path, out_dir: Path, device: str | None = None,
               n_frames: int | None = None, overlays: bool = True, detector=None, retry_failed: bool = False,
               progress: bool = True) -> DetectSummary:
    from tqdm import tqdm

    from mfrn.data.manifest import safe_name
    from mfrn.inference import Detector
    from mfrn.inference.batching import score_media
    from mfrn.inference.overlays import timeline_image, write_overlay
    from mfrn.inference.writers import ResultStream, run_header, write_results
    from mfrn.io_utils import atomic_write_image, ensure_output_dir
    from mfrn.weights import check_device

    out_dir = ensure_output_dir(out_dir)
    if detector is None:
        check_device(device)  # before the model is loaded: one line, not a torch traceback
        detector = Detector.from_checkpoint(checkpoint, device=device, warn_uncalibrated=False)  # printed below
    if n_frames:
        detector.protocol.n_frames = n_frames
    summary = DetectSummary(Path(out_dir), detector.describe_calibration())
    print(summary.calibration_line, flush=True)
    header = run_header(detector, checkpoint)
    paths, problems = _expand_inputs(inputs)
    keys: list[str] = []
    with ResultStream(out_dir, header) as stream:
        for given, reason in problems:
            stream.write(_key(given), detector.failure(given, reason).to_json())
            keys.append(_key(given))
        todo = []
        for path in paths:
            keys.append(_key(path))
            done = stream.done(_key(path))
            if done is None or (retry_failed and done["status"] != "ok"):
                todo.append(path)
            else:
                summary.n_resumed += 1
        bar = tqdm(total=len(todo), desc="detect", unit="file", dynamic_ncols=True, disable=not progress)
        scoring = score_media(detector, todo, keep_frames=overlays)
        try:
            for scored in scoring:
                result = scored.result
                if overlays and result.ok and scored.frames:
                    stem = out_dir / "overlays" / safe_name(str(scored.item))
                    result.overlay = str(write_overlay(stem, result, [f.image for f in scored.frames],
                                                       detector.pixel_threshold))
                    if result.kind == "video":  # frame scores over time, and the temporal head's clip scores
                        result.timeline = f"{stem}_timeline.png"
                        atomic_write_image(Path(result.timeline), timeline_image(result))
                stream.write(_key(scored.item), result.to_json())
                bar.update(1)
        except KeyboardInterrupt:  # what is done stays done: finished below, and a rerun resumes
            summary.complete = False
        finally:
            scoring.close()
            bar.close()
            write_results(out_dir, header, stream.records(), complete=summary.complete)
            for key in dict.fromkeys(keys):
                record = stream.done(key)
                if record is not None:
                    (summary.results if record["status"] == "ok" else summary.failures).append(record)
    return summary
