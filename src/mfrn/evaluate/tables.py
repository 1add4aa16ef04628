"""From score files to result tables: per-method breakdown, cross-manipulation, cross-dataset.

Every table carries the protocol line and a note on how its numbers were measured, and puts the
published numbers (the paper's, SBI's) next to the measured ones. Only numbers that are known are
filled in; every other reference cell is "n/a".
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mfrn.data.readers.ffpp import FFPP_ORIGINAL_METHODS
from mfrn.data.records import parse_key
from mfrn.evaluate.metrics import BinaryMetrics, binary_metrics
from mfrn.evaluate.scores import VideoResult, read_frame_scores, read_meta, read_scores

ALL = "all"  # every fake method of the dataset against all its reals (FF++: all five when FaceShifter is there)
METHOD_ABBREVIATIONS = {"Deepfakes": "DF", "Face2Face": "F2F", "FaceSwap": "FS", "NeuralTextures": "NT",
                        "FaceShifter": "FSh"}
# SBI's "all" on FF++: the four original methods against the real test videos (no FaceShifter)
SBI_ALL = "all (" + "+".join(METHOD_ABBREVIATIONS[m] for m in FFPP_ORIGINAL_METHODS) + ")"
RAW = ("raw", "c0")

# Video-level AUC (%) as published, on raw (c0) FF++ training videos. SBI: Shiohara & Yamasaki, CVPR 2022, Table 2.
SBI_VIDEO_AUC = {"CDF": 93.18, "DFD": 97.56, "DFDC": 72.42, "DFDCP": 86.15, "FFIW": 84.83}
# The paper (arXiv 2312.08020) as summarised in method.md: FF++ Deepfakes and FF++ overall.
# interpretation: the paper follows SBI's protocol, so its "FF++ overall" is SBI's four-method "all"
PAPER_VIDEO_AUC = {("FF++", "Deepfakes"): 100.0, ("FF++", SBI_ALL): 99.92}

_DATASET_ALIASES = {
    "cdf": "CDF", "celebdf": "CDF", "celebdfv2": "CDF",
    "dfd": "DFD", "deepfakedetection": "DFD",
    "dfdc": "DFDC",
    "dfdcp": "DFDCP", "dfdcpreview": "DFDCP",
    "ffiw": "FFIW", "ffiw10k": "FFIW",
    "ff": "FF++", "ffpp": "FF++", "faceforensics": "FF++", "faceforensicspp": "FF++",
}


def canonical_dataset(name: str) -> str:
    """Map a dataset name as readers write it ("celeb_df_v2", "ffpp", ...) to the tables' name."""
    return _DATASET_ALIASES.get(re.sub(r"[^a-z0-9]", "", name.lower()), name)


@dataclass
class MethodResult:
    """Metrics of one manipulation method (against all real videos) or of ``ALL`` fakes."""

    method: str
    video: BinaryMetrics
    frame: BinaryMetrics | None = None  # None when no frame-level scores were available
    fake_methods: tuple[str, ...] = ()  # the fake methods this row scores against the reals

    def label(self) -> str:
        """The row's name in a table; a group of several methods lists them (``all (DF+F2F+FS+NT)``)."""
        if self.method not in (ALL, SBI_ALL) or not self.fake_methods:
            return self.method
        if not set(self.fake_methods) <= set(METHOD_ABBREVIATIONS):
            return self.method
        ordered = [m for m in METHOD_ABBREVIATIONS if m in self.fake_methods]
        return "all (" + "+".join(METHOD_ABBREVIATIONS[m] for m in ordered) + ")"

    def reference_key(self) -> str:
        """The name its published numbers are filed under: SBI_ALL for exactly the four original methods."""
        if self.method in (ALL, SBI_ALL) and set(self.fake_methods) == set(FFPP_ORIGINAL_METHODS):
            return SBI_ALL
        return self.method


@dataclass
class EvalSummary:
    dataset: str
    protocol: str
    n_videos: int  # rows in the score file (after de-duplication)
    n_scored: int  # status "ok"
    n_failed: int  # status "failed": left out of every metric
    n_no_face: int  # scored with the protocol's no-face score, included in the metrics
    methods: list[MethodResult] = field(default_factory=list)  # ALL first, then SBI_ALL (FF++), then each method
    failed_reasons: dict[str, int] = field(default_factory=dict)
    compressions: list[str] = field(default_factory=list)  # as the video keys name them (FF++: raw, c23, c40)
    n_missing: int = 0  # listed by the dataset's label/split file but not on disk: never scored
    missing_keys: list[str] = field(default_factory=list)  # the first few, for the notes
    threshold: float = 0.5  # the verdict threshold of the accuracy column
    threshold_rule: str | None = None  # how it was chosen (None: no stored threshold, 0.5)

    @property
    def compression(self) -> str:
        """What the table says about the videos' compression: "" where the dataset has no such choice
        (every reader but FF++/DFD writes "raw"), else e.g. "c23"."""
        named = [c for c in self.compressions if c not in RAW]
        if named:
            return "+".join(named) + (" and raw" if len(named) < len(self.compressions) else "")
        if self.compressions and canonical_dataset(self.dataset) in ("FF++", "DFD"):
            return "raw"
        return ""

    def compression_note(self) -> str | None:
        if not self.compression:
            return None
        if self.compression == "raw":
            return f"{self.dataset}: raw (c0) videos, as SBI trains and tests"
        return (f"{self.dataset}: {self.compression} videos; SBI trains and tests on raw (c0), and the published "
                "numbers beside them are for raw")

    def method(self, name: str) -> MethodResult:
        for result in self.methods:
            if result.method == name:
                return result
        raise KeyError(f"{self.dataset}: no method {name!r}; have {[m.method for m in self.methods]}")

    @property
    def overall(self) -> MethodResult:
        return self.method(ALL)

    def measurement_note(self) -> str:
        failures = ""
        if self.failed_reasons:
            top = sorted(self.failed_reasons.items(), key=lambda item: -item[1])[:3]
            failures = " (" + "; ".join(f"{count} x {reason}" for reason, count in top) + ")"
        missing = ""
        if self.n_missing:
            shown = ", ".join(self.missing_keys[:3]) + (" ..." if self.n_missing > 3 else "")
            missing = f", {self.n_missing} listed but missing on disk and excluded ({shown})"
        return (
            f"{self.dataset}: {self.n_scored} videos scored ({self.n_no_face} without any face, scored as "
            f"no-face and included), {self.n_failed} failed and excluded{failures}{missing}; video AUC over "
            f"per-video scores, frame AUC over every sampled frame with a face (label of its video)"
        )


def _frame_arrays(
    videos: list[VideoResult], frame_scores: dict[str, dict[int, float]] | None
) -> tuple[np.ndarray, np.ndarray]:
    labels: list[int] = []
    scores: list[float] = []
    for video in videos:
        if frame_scores is not None:
            values = list(frame_scores.get(video.key, {}).values())
        else:
            values = [s for s in video.frame_scores if s is not None]
        labels.extend([video.label] * len(values))
        scores.extend(values)
    return np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float64)


def _metrics_for(
    videos: list[VideoResult], frame_scores: dict[str, dict[int, float]] | None, bootstrap: int, seed: int,
    threshold: float = 0.5,
) -> tuple[BinaryMetrics, BinaryMetrics | None]:
    video = binary_metrics([v.label for v in videos], [v.score for v in videos], bootstrap=bootstrap, seed=seed,
                           threshold=threshold)
    frame_labels, frame_values = _frame_arrays(videos, frame_scores)
    frame = None
    if frame_values.size:
        # frame-level intervals would treat frames of one video as independent: skip them
        frame = binary_metrics(frame_labels, frame_values, bootstrap=0)
    return video, frame


def summarize(
    results: list[VideoResult],
    dataset: str,
    protocol: str = "protocol: not recorded",
    frame_scores: dict[str, dict[int, float]] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    threshold: float = 0.5,
    threshold_rule: str | None = None,
) -> EvalSummary:
    """Per-method breakdown of one dataset's results: each fake method against all reals, and ALL.

    ``threshold``: the verdict threshold the accuracy column uses (the checkpoint's stored one, said by
    ``threshold_rule``; 0.5 without one)."""
    ok = [r for r in results if r.status == "ok"]
    missing = [r for r in results if r.status == "missing"]
    failed = [r for r in results if r.status not in ("ok", "missing")]
    reasons: dict[str, int] = {}
    for r in failed:
        reasons[r.reason or "unknown"] = reasons.get(r.reason or "unknown", 0) + 1
    summary = EvalSummary(
        dataset=dataset, protocol=protocol, n_videos=len(results), n_scored=len(ok), n_failed=len(failed),
        n_no_face=sum(r.no_face for r in ok), failed_reasons=reasons, compressions=_compressions(results),
        n_missing=len(missing), missing_keys=[r.key for r in missing[:10]], threshold=float(threshold),
        threshold_rule=threshold_rule,
    )
    reals = [r for r in ok if r.label == 0]
    fakes = [r for r in ok if r.label == 1]
    methods = sorted({r.method for r in fakes})
    summary.methods.append(MethodResult(ALL, *_metrics_for(ok, frame_scores, bootstrap, seed, threshold), tuple(methods)))
    if canonical_dataset(dataset) == "FF++" and set(FFPP_ORIGINAL_METHODS) < set(methods):
        # FaceShifter (or another method) beside the four: SBI's "all" is its own row
        subset = reals + [r for r in fakes if r.method in FFPP_ORIGINAL_METHODS]
        summary.methods.append(MethodResult(SBI_ALL, *_metrics_for(subset, frame_scores, bootstrap, seed, threshold),
                                            FFPP_ORIGINAL_METHODS))
    if len(methods) > 1:
        for method in methods:
            subset = reals + [r for r in fakes if r.method == method]
            summary.methods.append(MethodResult(method, *_metrics_for(subset, frame_scores, bootstrap, seed, threshold), (method,)))
    return summary


def _compressions(results: list[VideoResult]) -> list[str]:
    found = set()
    for result in results:
        try:
            found.add(parse_key(result.key)[2])
        except ValueError:  # a key that is not dataset/method/compression/id names no compression
            continue
    return sorted(found)


def evaluate_scores(
    video_csv: str | os.PathLike,
    frame_csv: str | os.PathLike | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    dataset: str | None = None,
    protocol: str | None = None,
    threshold: float = 0.5,
    threshold_rule: str | None = None,
) -> EvalSummary:
    """Summarise a score file written by ``ScoreWriter`` (and optionally a ``FrameScoreWriter`` file).

    Frame-level metrics use ``frame_csv`` when given, else the per-frame scores in the video file.
    A file holding several datasets needs ``dataset``; ``protocol`` defaults to the file's sidecar.
    """
    video_csv = Path(video_csv)
    results = read_scores(video_csv)
    names = sorted({r.dataset for r in results})
    if dataset is None:
        if len(names) > 1:
            raise ValueError(f"{video_csv} holds several datasets {names}: pass dataset=")
        if not names:
            raise ValueError(f"{video_csv} holds no scored videos")
        dataset = names[0]
    else:
        results = [r for r in results if r.dataset == dataset]
        if not results:
            raise ValueError(f"{video_csv} has no rows for dataset {dataset!r}; it has {names}")
    protocol = protocol or read_meta(video_csv).get("protocol", "protocol: not recorded")
    frames = read_frame_scores(frame_csv) if frame_csv is not None else None
    return summarize(results, dataset, protocol, frames, bootstrap, seed, threshold, threshold_rule)


@dataclass
class Table:
    """A result table: Markdown for reading, CSV for tools; ``notes`` say how it was measured."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    @property
    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    @property
    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return out.getvalue()

    def save(self, stem: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``<stem>.md`` and ``<stem>.csv`` (the notes go into the Markdown file)."""
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        md, cs = stem.with_name(stem.name + ".md"), stem.with_name(stem.name + ".csv")
        md.write_text(self.markdown, encoding="utf-8")
        cs.write_text(self.csv, encoding="utf-8")
        return md, cs


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.2f}"


def _ci(interval: tuple[float, float] | None) -> str:
    return "n/a" if interval is None else f"[{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]"


def _ref(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


METRIC_COLUMNS = ["n_real", "n_fake", "frame AUC", "video AUC", "video AUC 95% CI", "video AP", "video EER",
                  "acc@thr"]


ONE_CLASS = "n/a (one class)"


def _rank_cell(value: float | None, metrics: BinaryMetrics | None) -> str:
    """A rank metric (AUC, AP, EER): undefined when only one class was scored, and the cell says so."""
    if metrics is not None and metrics.reason:
        return ONE_CLASS
    return _pct(value)


def _metric_cells(result: MethodResult) -> list[str]:
    v, f = result.video, result.frame
    return [str(v.n_real), str(v.n_fake), _rank_cell(f.auc if f else None, f), _rank_cell(v.auc, v),
            ONE_CLASS if v.reason else _ci(v.auc_ci), _rank_cell(v.ap, v), _rank_cell(v.eer, v), _pct(v.acc_at_threshold)]


_COMMON_NOTE = ("all metrics in %; AUC/AP/EER from scikit-learn (EER interpolated where FPR = 1 - TPR); "
                "CI = stratified bootstrap over videos; reference columns are published numbers, not re-measured")


def _threshold_note(summaries) -> str:
    """What the acc@thr column's threshold is: the checkpoint's stored one (and its rule), or 0.5."""
    pairs = sorted({(s.threshold, s.threshold_rule) for s in summaries}, key=lambda pair: pair[0])
    parts = [f"{threshold:.4g} ({rule})" if rule else f"{threshold:.4g} (no stored threshold)" for threshold, rule in pairs]
    return "acc@thr: a video whose score is >= the verdict threshold counts as fake; threshold " + "; ".join(parts)


def _title(text: str, summary: EvalSummary) -> str:
    return f"{text} ({summary.dataset}, {summary.compression})" if summary.compression else f"{text} ({summary.dataset})"


def _paper(dataset: str, result: MethodResult) -> float | None:
    return PAPER_VIDEO_AUC.get((dataset, result.reference_key()))


def _sbi(dataset: str, result: MethodResult) -> float | None:
    # SBI's cross-dataset numbers are for all of a dataset's fakes; FF++ rows have none filed here
    return SBI_VIDEO_AUC.get(dataset) if result.method == ALL else None


def _groups_note(summary: EvalSummary) -> str | None:
    """How the FF++ "all" rows differ: SBI's four methods, and every method scored."""
    if canonical_dataset(summary.dataset) != "FF++":
        return None
    present = set(summary.overall.fake_methods)
    note = f"{SBI_ALL} is SBI's 'all' (the four original FF++ methods); the paper's FF++ number belongs to it"
    if "FaceShifter" in present:
        return note + f"; {summary.overall.label()} adds FaceShifter, which SBI does not report"
    return note + "; FaceShifter was not among the scored videos (no FaceShifter or all-five row)"


def cross_manipulation_table(summary: EvalSummary) -> Table:
    """FF++ test: each manipulation method against the real test videos; SBI's "all" (DF, F2F, FS, NT),
    FaceShifter on its own, and all five together, each labelled and beside its own published number."""
    dataset = canonical_dataset(summary.dataset)
    rows = []
    for result in summary.methods:
        rows.append([result.label()] + _metric_cells(result) + [_ref(_paper(dataset, result)), _ref(_sbi(dataset, result))])
    notes = [note for note in (summary.protocol, summary.compression_note(), summary.measurement_note(),
                               _COMMON_NOTE, _threshold_note([summary]), _groups_note(summary)) if note]
    notes.append("each method row: that method's fake videos vs all real test videos")
    return Table(_title("Cross-manipulation", summary), ["method"] + METRIC_COLUMNS +
                 ["paper video AUC", "SBI video AUC"], rows, notes)


def cross_dataset_table(summaries: dict[str, EvalSummary]) -> Table:
    """One row per test dataset (all its fakes against all its reals); FF++ adds SBI's four-method row."""
    rows = []
    notes: list[str] = []
    protocols = sorted({s.protocol for s in summaries.values()})
    notes += protocols
    for name, summary in summaries.items():
        dataset = canonical_dataset(name)
        shown = f"{name} ({summary.compression})" if summary.compression else name
        results = [summary.overall] + [m for m in summary.methods if m.method == SBI_ALL]
        for result in results:
            label = shown if len(results) == 1 and result.reference_key() != SBI_ALL else f"{shown}: {result.label()}"
            rows.append([label] + _metric_cells(result) + [_ref(_paper(dataset, result)), _ref(_sbi(dataset, result))])
        notes += [note for note in (summary.compression_note(), summary.measurement_note(), _groups_note(summary)) if note]
    notes += [_COMMON_NOTE, _threshold_note(summaries.values())]
    if len(protocols) > 1:
        notes.append("WARNING: the datasets were scored under different protocols (see above)")
    return Table("Cross-dataset", ["dataset"] + METRIC_COLUMNS + ["paper video AUC", "SBI video AUC"], rows, notes)


def per_video_table(results: list[VideoResult], dataset: str, threshold: float, threshold_rule: str) -> Table:
    """Each scored video's score and its verdict at the checkpoint's threshold (what an evaluation with
    only one class can still report), with the share called fake."""
    ok = [r for r in results if r.status == "ok"]
    rows = [[r.key, "fake" if r.label else "real", f"{r.score:.4f}",
             "no_face" if r.no_face else ("fake" if r.score >= threshold else "real"),
             f"{r.n_frames_with_face}/{r.n_frames}"] for r in ok]
    with_face = [r for r in ok if not r.no_face]
    called_fake = sum(r.score >= threshold for r in with_face)
    labels = sorted({"fake" if r.label else "real" for r in ok})
    notes = [f"{dataset}: only {' and '.join(labels) or 'no'} videos were scored: AUC/AP/EER are undefined (one class)",
             f"{called_fake} of {len(with_face)} videos with a face called fake at threshold {threshold:.4g} "
             f"({threshold_rule}); {len(ok) - len(with_face)} without any face (their score is the protocol's "
             "no-face score, not a verdict)"]
    return Table(f"Per-video scores ({dataset})", ["video", "label", "score", "verdict", "frames with a face"],
                 rows, notes)


def temporal_comparison_table(frame_mean: EvalSummary, temporal: EvalSummary) -> Table:
    """A temporal checkpoint on one dataset: the frame detector's frame-mean video score and the temporal head's
    clip-mean video score, side by side on the same videos (every fake method against every real video)."""
    rows = []
    for label, summary, unit, missing in (
        ("frame mean (frame detector)", frame_mean, "frame", frame_mean.n_no_face),
        ("temporal head (clips)", temporal, "clip", temporal.n_no_face),
    ):
        result = summary.overall
        v, f = result.video, result.frame
        rows.append([label, str(v.n_real), str(v.n_fake), _rank_cell(v.auc, v), ONE_CLASS if v.reason else _ci(v.auc_ci),
                     _rank_cell(v.ap, v), _rank_cell(v.eer, v), f"{unit} {_rank_cell(f.auc if f else None, f)}",
                     str(missing)])
    notes = [frame_mean.protocol, temporal.protocol,
             "videos without a score (no face / no face tracked through a whole clip) get the protocol's no-face "
             "score and are included", _COMMON_NOTE]
    return Table(_title("Frame mean vs temporal head: video AUC on the same videos", frame_mean),
                 ["video score", "n_real", "n_fake", "video AUC", "video AUC 95% CI", "video AP", "video EER",
                  "frame / clip AUC", "videos without a score"], rows, notes)
