"""Users' own data: ``real/`` and ``fake/`` folders (searched recursively for videos and images), or a
CSV file of ``path,label[,split]`` rows with labels real/fake/0/1 (paths relative to the CSV's folder)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from mfrn.data.media import IMAGE_EXTENSIONS
from mfrn.data.readers.base import READERS, DatasetReader, check_split, relative_id, walk_videos
from mfrn.data.records import FAKE, REAL, SPLITS, UNSPLIT, VIDEO_SUFFIXES, VideoRecord, make_record, parse_label

LABELS = {"real": REAL, "fake": FAKE, "0": REAL, "1": FAKE}
METHOD_OF_LABEL = {REAL: "original", FAKE: "fake"}
MEDIA_SUFFIXES = frozenset(VIDEO_SUFFIXES) | IMAGE_EXTENSIONS  # an image is one-frame media


@READERS.register("folder")
class FolderReader(DatasetReader):
    """Keys: ``<dataset_name>/original/raw/<relative path>`` and ``<dataset_name>/fake/raw/...``.

    The folders are searched for videos and images alike (an image is scored as one-frame media)."""

    name = "folder"

    def __init__(
        self, root: Path | str, csv_file: Path | str | None = None, split: str = "test", dataset_name: str = "folder"
    ) -> None:
        super().__init__(root)
        check_split(split)
        self.default_split = split
        self.dataset_name = dataset_name
        self.csv_path: Path | None = None
        if csv_file is not None:
            csv_path = Path(csv_file)
            self.csv_path = csv_path if csv_path.is_absolute() else self.root / csv_path
            if not self.csv_path.is_file():
                raise FileNotFoundError(f"{self.csv_path}: label CSV not found")
        elif not ((self.root / "real").is_dir() or (self.root / "fake").is_dir()):
            raise FileNotFoundError(f"{self.root}: expected real/ and fake/ subfolders, or pass csv_file=")
        else:
            for side in ("real", "fake"):
                if not (self.root / side).is_dir():
                    self._missing(METHOD_OF_LABEL[LABELS[side]], f"{self.root / side}: folder not found")

    def entries(self, split: str | None = None) -> Iterator[VideoRecord]:
        check_split(split)
        rows = self._csv_rows() if self.csv_path is not None else self._folder_rows()
        for video_id, path, label, row_split in rows:
            if split is None or split == row_split:
                yield make_record(self.dataset_name, METHOD_OF_LABEL[label], "raw", video_id, path, label, row_split)

    def _folder_rows(self) -> Iterator[tuple[str, Path, int, str]]:
        for side in ("real", "fake"):
            base = self.root / side
            for path in walk_videos(base, MEDIA_SUFFIXES):
                # an image keeps its suffix in the id, so that a.mp4 and a.png stay two videos
                video_id = path.relative_to(base).as_posix() if path.suffix.lower() in IMAGE_EXTENSIONS \
                    else relative_id(path, base)
                yield video_id, path, LABELS[side], self.default_split

    def _csv_rows(self) -> Iterator[tuple[str, Path, int, str]]:
        assert self.csv_path is not None
        base = self.csv_path.parent
        rows = []
        with self.csv_path.open(newline="", encoding="utf-8") as handle:
            for line_number, row in enumerate(csv.reader(handle), start=1):
                cells = [c.strip() for c in row]
                if not cells or not "".join(cells):
                    continue
                if line_number == 1 and len(cells) > 1 and cells[1].lower() == "label":
                    continue  # header
                if len(cells) < 2:
                    raise ValueError(f"{self.csv_path}, line {line_number}: expected 'path,label[,split]', got {','.join(row)!r}")
                label = parse_label(cells[1], LABELS, self.csv_path, line_number)
                row_split = cells[2] if len(cells) > 2 and cells[2] else self.default_split
                if row_split not in SPLITS and row_split != UNSPLIT:
                    raise ValueError(
                        f"{self.csv_path}, line {line_number}: unknown split {row_split!r}; expected one of {SPLITS}"
                    )
                path = Path(cells[0])
                path = path if path.is_absolute() else base / path
                video_id = relative_id(path, base) if path.is_relative_to(base) else path.with_suffix("").as_posix().lstrip("/")
                rows.append((video_id, path, label, row_split))
        yield from sorted(rows, key=lambda r: (r[2], r[0]))

    def expected_counts(self) -> dict[str, int]:
        return {}  # nothing is published for a user's own data
