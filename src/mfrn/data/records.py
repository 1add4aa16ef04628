"""One video of a benchmark: where it is, what it is (real/fake), which split and subset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REAL = 0
FAKE = 1
SPLITS = ("train", "val", "test")
# A video the layout gives no split for (FF++ without its split files, DeeperForensics sources).
UNSPLIT = "unsplit"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclass(frozen=True)
class VideoRecord:
    """One video. ``key`` is ``dataset/method/compression/video_id``; ``video_id`` may itself
    contain ``/`` for nested layouts, so parse a key with :func:`parse_key` (maxsplit 3)."""

    key: str
    path: Path
    label: int  # 0 real, 1 fake, whatever the dataset's own convention
    split: str  # "train" / "val" / "test", or UNSPLIT
    dataset: str
    method: str  # "original" for reals
    compression: str  # "raw" / "c0" / "c23" / "c40" as the dataset names it
    video_id: str
    mask_path: Path | None = None

    @property
    def is_fake(self) -> bool:
        return self.label == FAKE


def make_key(dataset: str, method: str, compression: str, video_id: str) -> str:
    for part_name, part in (("dataset", dataset), ("method", method), ("compression", compression)):
        if not part or "/" in part:
            raise ValueError(f"key part {part_name}={part!r} must be non-empty and contain no '/'")
    if not video_id:
        raise ValueError("key part video_id must be non-empty")
    return f"{dataset}/{method}/{compression}/{video_id}"


def parse_key(key: str) -> tuple[str, str, str, str]:
    """``dataset/method/compression/video_id`` -> its four parts (video_id may contain '/')."""
    parts = key.split("/", 3)
    if len(parts) != 4 or not all(parts):
        raise ValueError(f"not a video key (dataset/method/compression/id): {key!r}")
    return parts[0], parts[1], parts[2], parts[3]


def make_record(
    dataset: str,
    method: str,
    compression: str,
    video_id: str,
    path: Path,
    label: int,
    split: str,
    mask_path: Path | None = None,
) -> VideoRecord:
    if label not in (REAL, FAKE):
        raise ValueError(f"label must be {REAL} (real) or {FAKE} (fake), got {label!r} for {path}")
    if split not in SPLITS and split != UNSPLIT:
        raise ValueError(f"split must be one of {SPLITS + (UNSPLIT,)}, got {split!r} for {path}")
    return VideoRecord(
        key=make_key(dataset, method, compression, video_id),
        path=path,
        label=label,
        split=split,
        dataset=dataset,
        method=method,
        compression=compression,
        video_id=video_id,
        mask_path=mask_path,
    )


class LabelError(ValueError):
    """A label file holds a label the reader does not know; the message names file, line, label."""

    def __init__(self, file: Path, line: int | None, label: object, known: tuple[str, ...]) -> None:
        where = f"{file}, line {line}" if line is not None else str(file)
        super().__init__(f"{where}: unknown label {label!r} (known: {', '.join(known)})")
        self.file = file
        self.line = line
        self.label = label


def parse_label(value: object, mapping: dict[str, int], file: Path, line: int | None) -> int:
    """Maps a dataset's label token (case-insensitive, surrounding spaces ignored) to 0/1."""
    token = str(value).strip().lower()
    if token in mapping:
        return mapping[token]
    raise LabelError(file, line, value, tuple(mapping))
