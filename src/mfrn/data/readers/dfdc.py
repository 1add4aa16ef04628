"""DFDC (full): ``dfdc_train_part_<k>/`` with ``metadata.json`` (labels "REAL"/"FAKE") and the
public test set's ``labels.csv`` (``filename,label`` with 1 = fake)."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from mfrn.data.readers.base import READERS, DatasetReader, check_split, json_line, list_videos, read_json
from mfrn.data.records import FAKE, REAL, VideoRecord, make_record, parse_label

PART_PATTERN = re.compile(r"^dfdc_train_part_(\d+)$")
N_PARTS = 50
METADATA_LABELS = {"real": REAL, "fake": FAKE}
TEST_LABELS = {"0": REAL, "1": FAKE, "0.0": REAL, "1.0": FAKE}
# Published: 119,154 training videos in 50 parts (DFDC paper) and 5,000 public test videos.
EXPECTED = {"train": 119_154, "test": 5_000}


def find_test_dir(root: Path) -> Path | None:
    for candidate in (root / "test", root / "test_videos", root):
        if (candidate / "labels.csv").is_file():
            return candidate
    return None


def read_test_labels(path: Path) -> dict[str, int]:
    """``{file name: label}`` from the public test ``labels.csv`` (1 = fake)."""
    labels: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            if line_number == 1 and row[0].strip().lower() == "filename":
                continue
            if len(row) < 2:
                raise ValueError(f"{path}, line {line_number}: expected 'filename,label', got {','.join(row)!r}")
            labels[row[0].strip()] = parse_label(row[1], TEST_LABELS, path, line_number)
    return labels


@READERS.register("dfdc")
class DFDCReader(DatasetReader):
    """Keys: ``dfdc/original/raw/dfdc_train_part_0/abc`` and ``dfdc/fake/raw/test/xyz``.
    Training parts are ``train``; the public test set is ``test``."""

    name = "dfdc"

    def __init__(self, root: Path | str, test_dir: Path | str | None = None) -> None:
        super().__init__(root)
        self.parts = self._find_parts()
        found = {int(PART_PATTERN.match(p.name).group(1)) for p in self.parts}  # type: ignore[union-attr]
        for index in range(N_PARTS):
            if index not in found:
                self.missing.append(f"dfdc_train_part_{index}")
        if len(found) < N_PARTS:
            self._warn(f"{self.root}: {len(found)} of {N_PARTS} DFDC training parts found")
        if test_dir is not None:
            self.test_dir: Path | None = Path(test_dir)
            if not (self.test_dir / "labels.csv").is_file():
                raise FileNotFoundError(f"{self.test_dir / 'labels.csv'}: DFDC test labels not found")
        else:
            self.test_dir = find_test_dir(self.root)
            if self.test_dir is None:
                self._missing("test", f"{self.root}: DFDC public test set (labels.csv) not found")

    def _find_parts(self) -> list[Path]:
        parts = [p for p in self.root.iterdir() if p.is_dir() and PART_PATTERN.match(p.name)]
        return sorted(parts, key=lambda p: int(PART_PATTERN.match(p.name).group(1)))  # type: ignore[union-attr]

    def entries(self, split: str | None = None) -> Iterator[VideoRecord]:
        check_split(split)
        if split in (None, "train"):
            for part in self.parts:
                yield from self._part_entries(part)
        if split in (None, "test") and self.test_dir is not None:
            labels = read_test_labels(self.test_dir / "labels.csv")
            for file_name in sorted(labels):
                yield self._record("test", file_name, self.test_dir / file_name, labels[file_name], "test")

    def _part_entries(self, part: Path) -> Iterator[VideoRecord]:
        metadata_path = part / "metadata.json"
        on_disk = {p.name for p in list_videos(part)}
        if not metadata_path.is_file():
            self._problem(f"{metadata_path}: missing; {len(on_disk)} videos of {part.name} have no label")
            return
        metadata, text = read_json(metadata_path)
        if not isinstance(metadata, dict):
            raise ValueError(f"{metadata_path}: expected an object {{file: {{label, ...}}}}")
        for file_name in sorted(metadata):
            info = metadata[file_name]
            raw_label = info.get("label") if isinstance(info, dict) else None
            label = parse_label(raw_label, METADATA_LABELS, metadata_path, json_line(text, file_name))
            yield self._record(part.name, file_name, part / file_name, label, "train")
        unlabelled = sorted(on_disk - set(metadata))
        if unlabelled:
            self._problem(f"{metadata_path}: {len(unlabelled)} videos have no entry, e.g. {unlabelled[0]}")

    def _record(self, group: str, file_name: str, path: Path, label: int, split: str) -> VideoRecord:
        method = "original" if label == REAL else "fake"
        return make_record(self.name, method, "raw", f"{group}/{Path(file_name).stem}", path, label, split)

    def expected_counts(self) -> dict[str, int]:
        return dict(EXPECTED)

    def subsets_of(self, record: VideoRecord) -> list[str]:
        return [record.split]

    def optional_subsets(self) -> set[str]:
        return {f"dfdc_train_part_{i}" for i in range(N_PARTS)}
