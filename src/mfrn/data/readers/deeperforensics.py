"""DeeperForensics-1.0: ``manipulated_videos/<perturbation>/*.mp4``, ``source_videos/<actor>/...``
and ``lists/splits/{train,val,test}.txt`` (file names of manipulated videos)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from mfrn.data.readers.base import READERS, DatasetReader, check_split, list_videos, relative_id, walk_videos
from mfrn.data.records import FAKE, REAL, SPLITS, UNSPLIT, VideoRecord, make_record

# Published: 1,000 manipulated videos per perturbation folder, 48,475 source videos (unsure: the
# counts of the source set differ between the paper and the release notes).
PER_PERTURBATION = 1000
SOURCE_VIDEOS = 48_475


def read_split_lists(splits_dir: Path) -> dict[str, str]:
    """``{video stem: split}`` from the split text files present; errors name file and line."""
    assignment: dict[str, str] = {}
    for split in SPLITS:
        path = splits_dir / f"{split}.txt"
        if not path.is_file():
            continue
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                name = line.strip()
                if not name:
                    continue
                stem = Path(name).stem
                if stem in assignment and assignment[stem] != split:
                    raise ValueError(f"{path}, line {line_number}: {name!r} is already in the {assignment[stem]} list")
                assignment[stem] = split
    return assignment


@READERS.register("deeperforensics")
class DeeperForensicsReader(DatasetReader):
    """Keys: ``deeperforensics/<perturbation>/raw/<stem>`` for fakes (e.g. ``end_to_end``) and
    ``deeperforensics/original/raw/<actor>/<...>`` for sources. Fakes take their split from the
    lists; sources are ``unsplit``."""

    name = "deeperforensics"

    def __init__(
        self, root: Path | str, perturbations: Sequence[str] | None = None, include_source: bool = True
    ) -> None:
        super().__init__(root)
        self.manipulated = self.root / "manipulated_videos"
        self.source = self.root / "source_videos"
        found = sorted(p.name for p in self.manipulated.iterdir() if p.is_dir()) if self.manipulated.is_dir() else []
        self.perturbations = tuple(perturbations) if perturbations else tuple(found)
        if not found:
            self._missing("manipulated_videos", f"{self.manipulated}: DeeperForensics manipulated videos not found")
        for name in self.perturbations:
            if name not in found:
                self._missing(name, f"{self.manipulated / name}: perturbation folder not found")
        self.include_source = include_source
        if include_source and not self.source.is_dir():
            self._missing("original", f"{self.source}: DeeperForensics source videos not found")
        splits_dir = self.root / "lists" / "splits"
        self.split_of = read_split_lists(splits_dir)
        if not self.split_of:
            self._warn(f"{splits_dir}: no split lists (train/val/test.txt); manipulated videos are 'unsplit'")

    def entries(self, split: str | None = None) -> Iterator[VideoRecord]:
        check_split(split)
        for perturbation in self.perturbations:
            folder = self.manipulated / perturbation
            on_disk = {p.stem: p for p in list_videos(folder)}
            stems = sorted(set(on_disk) | set(self.split_of)) if self.split_of else sorted(on_disk)
            for stem in stems:
                video_split = self.split_of.get(stem, UNSPLIT)
                if split is None or split == video_split:
                    path = on_disk.get(stem, folder / f"{stem}.mp4")
                    yield make_record(self.name, perturbation, "raw", stem, path, FAKE, video_split)
        if self.include_source and split in (None, UNSPLIT):
            # interpretation: the split lists name manipulated videos only, so sources are unsplit.
            for path in walk_videos(self.source):
                yield make_record(self.name, "original", "raw", relative_id(path, self.source), path, REAL, UNSPLIT)

    def expected_counts(self) -> dict[str, int]:
        counts = {name: PER_PERTURBATION for name in self.perturbations}
        if self.include_source:
            counts["original"] = SOURCE_VIDEOS
        return counts
