"""FFIW-10K: ``FFIW10K-v1-release/{source,target}/{train,val}/videos/*.mp4``; source = real,
target = fake; the validation set serves as the test set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mfrn.data.readers.base import READERS, DatasetReader, check_split, list_videos
from mfrn.data.records import FAKE, REAL, SPLITS, VideoRecord, make_record

RELEASE_FOLDER = "FFIW10K-v1-release"
SIDES = (("source", "original", REAL), ("target", "target", FAKE))
FOLDER_SPLITS = ("train", "val")


def find_release(root: Path) -> Path:
    """The release folder: ``root`` itself or ``root/FFIW10K-v1-release``."""
    nested = root / RELEASE_FOLDER
    return nested if nested.is_dir() else root


@READERS.register("ffiw")
class FFIWReader(DatasetReader):
    """Keys: ``ffiw/original/raw/val/<stem>`` (source) and ``ffiw/target/raw/val/<stem>``."""

    name = "ffiw"

    def __init__(self, root: Path | str, val_split: str = "test") -> None:
        # interpretation: FFIW's test labels are not public; SBI evaluates on val, so val -> "test".
        super().__init__(root)
        if val_split not in SPLITS:
            raise ValueError(f"val_split must be one of {SPLITS}, got {val_split!r}")
        self.val_split = val_split
        self.release = find_release(self.root)
        for side, _, _ in SIDES:
            for folder_split in FOLDER_SPLITS:
                folder = self.release / side / folder_split / "videos"
                if not folder.is_dir():
                    self._missing(f"{side}/{folder_split}", f"{folder}: FFIW {side} {folder_split} videos not found")

    def entries(self, split: str | None = None) -> Iterator[VideoRecord]:
        check_split(split)
        for side, method, label in SIDES:
            for folder_split in FOLDER_SPLITS:
                record_split = self.val_split if folder_split == "val" else "train"
                if split is not None and split != record_split:
                    continue
                for path in list_videos(self.release / side / folder_split / "videos"):
                    yield make_record(self.name, method, "raw", f"{folder_split}/{path.stem}", path, label, record_split)

    def expected_counts(self) -> dict[str, int]:
        # FFIW-10K is published as 10,000 forged (target) videos with their 10,000 sources. Unsure:
        # the train/val sizes per folder, so only the totals are checked.
        return {"original": 10_000, "target": 10_000}

    def optional_subsets(self) -> set[str]:
        # Many copies hold only the validation set that papers evaluate on.
        return {f"{side}/train" for side, _, _ in SIDES}
