"""The manifest that ``mfrn prepare`` writes and every later stage reads.

Layout of a prepared folder::

    OUT/prepare.json            settings of the run (backend, frames, crop margins, version)
    OUT/records/<name>.json     one record per video or image, written atomically when it is done
    OUT/crops/<name>/<frame>_<face>.png   loose face crops (lossless)
    OUT/manifest.jsonl          all records in one file, rewritten atomically after each run

The per-item record files are the source of truth: a crash loses at most the item in progress, and a
second run skips every item that already has a record.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mfrn.io_utils import atomic_write_text, read_image_rgb

STATUS_OK = "ok"
STATUS_NO_FACE = "no_face"
STATUS_FAILED = "failed"


def safe_name(key: str) -> str:
    """A file name for ``key``: readable, ASCII, unique (a short hash of the full key)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")[:80] or "item"
    return f"{readable}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:8]}"


@dataclass
class FaceRecord:
    """One kept face. Coordinates are in full-frame pixels; ``crop_box`` is the loose crop's window."""

    crop_path: str  # relative to the prepared folder
    crop_box: list[int]  # x1, y1, x2, y2 (exclusive) in the frame
    box: list[float]
    score: float
    keypoints: list[list[float]]
    landmarks: list[list[float]]
    forehead_source: str = "extrapolated"
    track: int | None = None  # in a clip: the same person has the same track number in every frame

    def local(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Box (4,), keypoints (5,2) and landmarks (81,2) in the crop's coordinates."""
        offset = np.array(self.crop_box[:2], dtype=np.float32)
        box = np.asarray(self.box, dtype=np.float32) - np.tile(offset, 2)
        return box, np.asarray(self.keypoints, np.float32) - offset, np.asarray(self.landmarks, np.float32) - offset


@dataclass
class FrameRecord:
    index: int
    width: int
    height: int
    faces: list[FaceRecord] = field(default_factory=list)
    clip: int | None = None  # the clip of consecutive frames it belongs to (``mfrn prepare --clip-length``)


@dataclass
class MediaRecord:
    """Everything ``prepare`` learned about one video or image, or why it failed."""

    key: str
    source: str
    status: str
    reason: str = ""
    kind: str = "video"  # "video" | "image"
    label: int | None = None
    split: str | None = None
    dataset: str | None = None
    method: str | None = None
    n_frames_total: int = 0
    frames: list[FrameRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_faces(self) -> int:
        return sum(len(frame.faces) for frame in self.frames)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "MediaRecord":
        frames = [
            FrameRecord(f["index"], f["width"], f["height"], [FaceRecord(**face) for face in f["faces"]], f.get("clip"))
            for f in data.get("frames", [])
        ]
        return cls(**{**data, "frames": frames})


@dataclass
class FaceSample:
    """A face of the manifest, ready to load: what the synthesis and the Dataset iterate over."""

    root: Path
    record: MediaRecord
    frame: FrameRecord
    face: FaceRecord

    @property
    def key(self) -> str:
        return f"{self.record.key}#{self.frame.index}"

    def load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(crop RGB uint8, box (4,), keypoints (5,2), landmarks (81,2)) in crop coordinates."""
        image = read_image_rgb(self.root / self.face.crop_path)
        box, keypoints, landmarks = self.face.local()
        return image, box, keypoints, landmarks


class Manifest:
    """Read and write a prepared folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.crops_dir = self.root / "crops"

    def record_path(self, key: str) -> Path:
        return self.records_dir / f"{safe_name(key)}.json"

    def crop_dir(self, key: str) -> Path:
        return self.crops_dir / safe_name(key)

    def has(self, key: str) -> bool:
        return self.record_path(key).is_file()

    def write(self, record: MediaRecord) -> None:
        atomic_write_text(self.record_path(record.key), json.dumps(record.to_json(), ensure_ascii=False))

    def read(self, key: str) -> MediaRecord:
        return self._load(self.record_path(key))

    @staticmethod
    def _load(path: Path) -> MediaRecord:
        try:
            return MediaRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{path}: unreadable manifest record ({exc})") from exc

    def records(self) -> Iterator[MediaRecord]:
        """All records, sorted by key (from the per-item files, so it works during a run too)."""
        if not self.records_dir.is_dir():
            if not self.root.exists():
                raise FileNotFoundError(f"{self.root}: prepared folder not found (run `mfrn prepare` first)")
            return iter(())
        loaded = [self._load(path) for path in sorted(self.records_dir.glob("*.json"))]
        return iter(sorted(loaded, key=lambda r: r.key))

    def faces(self, split: str | None = None, label: int | None = None) -> list[FaceSample]:
        """Every kept face of the ``ok`` records, optionally of one split / label."""
        samples = []
        for record in self.records():
            if record.status != STATUS_OK:
                continue
            if split is not None and record.split != split:
                continue
            if label is not None and record.label != label:
                continue
            for frame in record.frames:
                for face in frame.faces:
                    samples.append(FaceSample(self.root, record, frame, face))
        return samples

    def why_no_faces(self) -> str:
        """What the folder holds instead of faces, and what to run: for messages of the stages that need faces."""
        records = list(self.records())
        if not records:
            return (f"{self.root}: no prepared media here (no records/); run `mfrn prepare VIDEOS_OR_PHOTOS -o "
                    f"{self.root}` first")
        counts = Counter(record.status for record in records)
        failed = [record for record in records if record.status == STATUS_FAILED]
        text = (f"{self.root}: no prepared faces: {len(records)} media prepared, {counts[STATUS_OK]} with faces, "
                f"{counts[STATUS_NO_FACE]} without a face, {counts[STATUS_FAILED]} failed")
        if failed:
            text += f" (first failure: {failed[0].source}: {failed[0].reason})"
        return text + f"; prepare media that show faces (`mfrn prepare ... -o {self.root}`); each item's record is in {self.records_dir}"

    def consolidate(self) -> Path:
        """Rewrite ``manifest.jsonl`` from the record files (atomically)."""
        lines = [json.dumps(r.to_json(), ensure_ascii=False) for r in self.records()]
        path = self.root / "manifest.jsonl"
        atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
        return path
