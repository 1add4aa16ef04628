"""Streaming, resumable score files: one CSV row per video (and optionally per frame).

Each row is flushed and fsync'ed as soon as it is written, so an interrupted evaluation loses at
most the row being written; on reopening, a torn last line is cut off and ``done_keys()`` tells
the caller which videos to skip. Nothing is kept in memory while writing except the set of keys.
A sidecar ``<name>.meta.json`` records the protocol, so that a resumed run cannot mix protocols.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from mfrn.io_utils import cut_torn_tail

if TYPE_CHECKING:
    from mfrn.inference.protocol import ProtocolConfig

VIDEO_COLUMNS = (
    "key", "dataset", "method", "label", "score", "n_frames", "n_frames_with_face",
    "no_face", "status", "reason", "frame_scores",
)
FRAME_COLUMNS = ("key", "frame_index", "score")
STATUSES = ("ok", "failed", "missing")  # missing: listed by the dataset, not on disk


@dataclass
class VideoResult:
    """One scored video. ``label``: 1 = fake, 0 = real. ``status`` "failed" and "missing" rows carry a
    reason; an "ok" row's reason is a caveat (for example: only part of the video decoded)."""

    key: str
    dataset: str
    method: str
    label: int
    score: float
    n_frames: int = 0
    n_frames_with_face: int = 0
    no_face: bool = False
    status: str = "ok"
    reason: str = ""
    frame_scores: list[float | None] = field(default_factory=list)  # per sampled frame, None = no face


def encode_frame_scores(frame_scores: list[float | None]) -> str:
    """Compact form: ``0.91;;0.3`` (an empty field is a frame without a face)."""
    return ";".join("" if s is None else f"{s:.6g}" for s in frame_scores)


def decode_frame_scores(text: str, n_frames: int) -> list[float | None]:
    if n_frames == 0:
        return []
    parts = text.split(";")
    if len(parts) != n_frames:
        raise ValueError(f"frame_scores has {len(parts)} fields but n_frames is {n_frames}")
    return [None if p == "" else float(p) for p in parts]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _repair_and_check(path: Path, columns: tuple[str, ...]) -> bool:
    """Cut a torn last line; check the header. Returns True when the file holds a valid header."""
    if cut_torn_tail(path) == 0:  # missing, empty, or even the header was torn
        return False
    with open(path, "rb") as f:
        header = f.readline().decode("utf-8").rstrip("\r\n")
    if tuple(header.split(",")) != columns:
        raise ValueError(f"{path}: not an mfrn score file (header {header!r}, expected {','.join(columns)})")
    return True


class _AppendOnlyCsv:
    """CSV file opened for appending, one durable row at a time."""

    def __init__(self, path: str | os.PathLike, columns: tuple[str, ...]) -> None:
        self.path = Path(path)
        self.columns = columns
        self.path.parent.mkdir(parents=True, exist_ok=True)
        has_header = _repair_and_check(self.path, columns)
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")
        if not has_header:
            self._write(columns)

    def _write(self, row) -> None:
        self._writer.writerow(row)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _iter_rows(path: Path, columns: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Rows of a score file; a torn last line (no newline) is ignored."""
    if not path.exists():
        raise FileNotFoundError(f"score file {path} does not exist")
    with open(path, "r", newline="", encoding="utf-8") as f:
        header = f.readline()
        if not header:
            return
        if tuple(header.rstrip("\r\n").split(",")) != columns:
            raise ValueError(f"{path}: not an mfrn score file (header {header.strip()!r})")
        for line_no, line in enumerate(f, start=2):
            if not line.endswith("\n"):
                return  # torn by a crash: the row was never completed
            values = next(csv.reader(io.StringIO(line)))
            if len(values) != len(columns):
                raise ValueError(f"{path}:{line_no}: expected {len(columns)} fields, got {len(values)}")
            yield dict(zip(columns, values))


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def read_meta(path: str | os.PathLike) -> dict:
    """The sidecar metadata of a score file (protocol description), or {} if there is none."""
    meta = _meta_path(Path(path))
    return json.loads(meta.read_text(encoding="utf-8")) if meta.exists() else {}


class ScoreWriter(_AppendOnlyCsv):
    """Appends one row per video; reopening the same path resumes (see ``done_keys``)."""

    def __init__(self, path: str | os.PathLike, protocol: str | ProtocolConfig | None = None) -> None:
        """``protocol``: the protocol's ``describe()`` line (or a ``ProtocolConfig``)."""
        if protocol is not None and not isinstance(protocol, str):
            protocol = protocol.describe()
        path = Path(path)
        meta = read_meta(path)
        if protocol is not None:
            if meta.get("protocol") not in (None, protocol) and path.exists() and path.stat().st_size > 0:
                raise ValueError(
                    f"{path} was written with a different protocol ({meta['protocol']!r}); "
                    f"use another file for {protocol!r}"
                )
        super().__init__(path, VIDEO_COLUMNS)
        if protocol is not None:
            _meta_path(path).write_text(json.dumps({"protocol": protocol}, indent=1), encoding="utf-8")
        self._done: dict[str, str] = {row["key"]: row["status"] for row in _iter_rows(self.path, VIDEO_COLUMNS)}

    def done_keys(self, include_failed: bool = True) -> set[str]:
        """Keys already written; ``include_failed=False`` lets a resumed run retry failures. A video
        recorded as missing is never done: a rerun looks for it again."""
        return {k for k, status in self._done.items() if status == "ok" or (include_failed and status == "failed")}

    def status_of(self, key: str) -> str | None:
        """The status of the latest row written for ``key``, or None."""
        return self._done.get(key)

    def write(self, result: VideoResult) -> None:
        if result.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {result.status!r}")
        if result.label not in (0, 1):
            raise ValueError(f"{result.key}: label must be 0 (real) or 1 (fake), got {result.label!r}")
        if len(result.frame_scores) not in (0, result.n_frames):
            raise ValueError(f"{result.key}: {len(result.frame_scores)} frame scores for n_frames={result.n_frames}")
        frame_scores = result.frame_scores or [None] * result.n_frames
        self._write((
            result.key, result.dataset, result.method, int(result.label), f"{float(result.score):.6g}",
            int(result.n_frames), int(result.n_frames_with_face), int(bool(result.no_face)),
            result.status, _one_line(result.reason), encode_frame_scores(frame_scores),
        ))
        self._done[result.key] = result.status


class FrameScoreWriter(_AppendOnlyCsv):
    """Appends ``(key, frame_index, score)`` rows for frame-level AUC (one row per frame with a face)."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path, FRAME_COLUMNS)

    def write(self, key: str, frame_index: int, score: float) -> None:
        self._write((key, int(frame_index), f"{float(score):.6g}"))

    def write_video(self, key: str, frame_indices: list[int], frame_scores: list[float | None]) -> None:
        """All frames of one video; frames without a face (None) are skipped."""
        for index, score in zip(frame_indices, frame_scores):
            if score is not None:
                self.write(key, index, score)


def iter_scores(path: str | os.PathLike) -> Iterator[VideoResult]:
    """Video rows in file order (duplicates included); a torn last line is skipped."""
    path = Path(path)
    for row in _iter_rows(path, VIDEO_COLUMNS):
        try:
            n_frames = int(row["n_frames"])
            score = float(row["score"])
            yield VideoResult(
                key=row["key"], dataset=row["dataset"], method=row["method"], label=int(row["label"]),
                score=score if math.isfinite(score) else float("nan"), n_frames=n_frames,
                n_frames_with_face=int(row["n_frames_with_face"]), no_face=row["no_face"] == "1",
                status=row["status"], reason=row["reason"],
                frame_scores=decode_frame_scores(row["frame_scores"], n_frames),
            )
        except ValueError as e:
            raise ValueError(f"{path}: bad row for key {row.get('key')!r}: {e}") from None


def read_scores(path: str | os.PathLike) -> list[VideoResult]:
    """All videos of a score file; when a key was written twice (a retried failure) the last row wins."""
    latest: dict[str, VideoResult] = {}
    for result in iter_scores(path):
        latest.pop(result.key, None)
        latest[result.key] = result
    return list(latest.values())


def read_frame_scores(path: str | os.PathLike) -> dict[str, dict[int, float]]:
    """``{key: {frame_index: score}}``; a frame written twice (resumed run) keeps its last score."""
    frames: dict[str, dict[int, float]] = {}
    path = Path(path)
    for row in _iter_rows(path, FRAME_COLUMNS):
        try:
            frames.setdefault(row["key"], {})[int(row["frame_index"])] = float(row["score"])
        except ValueError as e:
            raise ValueError(f"{path}: bad frame row for key {row.get('key')!r}: {e}") from None
    return frames
