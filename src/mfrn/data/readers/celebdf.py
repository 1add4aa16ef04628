"""Celeb-DF (v1 and v2): ``Celeb-real``, ``YouTube-real``, ``Celeb-synthesis`` and
``List_of_testing_videos.txt`` whose lines read ``<flag> <folder>/<file>.mp4`` with 1 = REAL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mfrn.data.readers.base import READERS, DatasetReader, check_split, list_videos
from mfrn.data.records import FAKE, REAL, VideoRecord, make_record, parse_label

REAL_FOLDERS = ("Celeb-real", "YouTube-real")
FAKE_FOLDER = "Celeb-synthesis"
FOLDERS = ("Celeb-real", "YouTube-real", FAKE_FOLDER)
TEST_LIST = "List_of_testing_videos.txt"
# The test list's own convention: 1 = real, 0 = fake (the opposite of ours).
TEST_LIST_LABELS = {"1": REAL, "0": FAKE}


def read_test_list(path: Path) -> dict[str, int]:
    """``{'<folder>/<file>.mp4': label}`` from Celeb-DF's test list; errors name file and line."""
    listed: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{path}, line {line_number}: expected '<flag> <folder>/<file>.mp4', got {line.strip()!r}")
            flag, relative = parts
            label = parse_label(flag, TEST_LIST_LABELS, path, line_number)
            folder = relative.split("/", 1)[0]
            if folder not in FOLDERS:
                raise ValueError(
                    f"{path}, line {line_number}: unknown folder {folder!r} in {relative!r}; expected one of {FOLDERS}"
                )
            if label != (FAKE if folder == FAKE_FOLDER else REAL):
                raise ValueError(
                    f"{path}, line {line_number}: flag {flag} ({'real' if label == REAL else 'fake'}; "
                    f"1 = real in this file) contradicts the folder of {relative!r}"
                )
            listed[relative] = label
    return listed


class CelebDFReader(DatasetReader):
    """Keys: ``celebdf_v2/Celeb-synthesis/raw/id0_id1_0000`` for fakes and
    ``celebdf_v2/original/raw/Celeb-real/id0_0000`` for reals (the folder keeps the two real
    sets apart). Listed test videos are ``test``; every other video is ``train``."""

    name = "celebdf_v2"
    # Published totals: v2 has 590 Celeb-real, 300 YouTube-real, 5,639 Celeb-synthesis, 518 test.
    EXPECTED = {"Celeb-real": 590, "YouTube-real": 300, FAKE_FOLDER: 5639, "test": 518}

    def __init__(self, root: Path | str) -> None:
        super().__init__(root)
        for folder in FOLDERS:
            if not (self.root / folder).is_dir():
                self._missing(folder, f"{self.root / folder}: Celeb-DF folder {folder} not found")
        self.test_list_path = self.root / TEST_LIST
        if self.test_list_path.is_file():
            self.test_list = read_test_list(self.test_list_path)
        else:
            self.test_list = {}
            self._missing("test", f"{self.test_list_path}: Celeb-DF test list not found; no video is 'test'")

    def entries(self, split: str | None = None) -> Iterator[VideoRecord]:
        check_split(split)
        seen: set[str] = set()
        for folder in FOLDERS:
            for path in list_videos(self.root / folder):
                relative = f"{folder}/{path.name}"
                seen.add(relative)
                # interpretation: Celeb-DF has no official train/val split; unlisted videos are "train".
                record = self._record(relative, "test" if relative in self.test_list else "train")
                if split is None or split == record.split:
                    yield record
        if split in (None, "test"):
            for relative in sorted(set(self.test_list) - seen):
                yield self._record(relative, "test")

    def _record(self, relative: str, split: str) -> VideoRecord:
        folder, file_name = relative.split("/", 1)
        stem = Path(file_name).stem
        if folder == FAKE_FOLDER:
            return make_record(self.name, FAKE_FOLDER, "raw", stem, self.root / relative, FAKE, split)
        return make_record(self.name, "original", "raw", f"{folder}/{stem}", self.root / relative, REAL, split)

    def expected_counts(self) -> dict[str, int]:
        return dict(self.EXPECTED)

    def subsets_of(self, record: VideoRecord) -> list[str]:
        folder = FAKE_FOLDER if record.label == FAKE else record.video_id.split("/", 1)[0]
        return [folder] + (["test"] if record.split == "test" else [])


@READERS.register("celebdf_v2")
class CelebDFV2Reader(CelebDFReader):
    name = "celebdf_v2"


@READERS.register("celebdf_v1")
class CelebDFV1Reader(CelebDFReader):
    name = "celebdf_v1"
    # v1 paper: 408 Celeb-real and 795 Celeb-synthesis videos. Unsure: YouTube-real (300 as in v2)
    # and the size of v1's test list (100 is what later papers quote), so verify may disagree.
    EXPECTED = {"Celeb-real": 408, "YouTube-real": 300, FAKE_FOLDER: 795, "test": 100}
