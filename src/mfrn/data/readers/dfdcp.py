"""DFDC preview (DFDCP): ``original_videos/``, ``method_A/``, ``method_B/`` and ``dataset.json``
mapping each relative path to ``{label: real/fake, set: train/test}``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mfrn.data.readers.base import READERS, DatasetReader, check_split, json_line, read_json
from mfrn.data.records import FAKE, REAL, VideoRecord, make_record, parse_label

LABELS = {"real": REAL, "fake": FAKE}
SETS = {"train": "train", "test": "test"}


@READERS.register("dfdcp")
class DFDCPReader(DatasetReader):
    """Keys: ``dfdcp/original/raw/<id>/<file>``, ``dfdcp/method_A/raw/<id>/<id>_A/<file>``."""

    name = "dfdcp"

    def __init__(self, root: Path | str) -> None:
        super().__init__(root)
        self.index_path = self.root / "dataset.json"
        if not self.index_path.is_file():
            raise FileNotFoundError(f"{self.index_path}: DFDCP index not found (it ships with the preview set)")

    def entries(self, split: str | None = None) -> Iterator[VideoRecord]:
        check_split(split)
        index, text = read_json(self.index_path)
        if not isinstance(index, dict):
            raise ValueError(f"{self.index_path}: expected an object {{relative path: {{label, set}}}}")
        for relative in sorted(index):
            info = index[relative]
            line = json_line(text, relative)
            if not isinstance(info, dict):
                raise ValueError(f"{self.index_path}, line {line}: entry {relative!r} is not an object")
            label = parse_label(info.get("label"), LABELS, self.index_path, line)
            video_split = SETS.get(str(info.get("set", "")).strip().lower())
            if video_split is None:
                raise ValueError(
                    f"{self.index_path}, line {line}: unknown set {info.get('set')!r} for {relative!r}; expected train/test"
                )
            if split is not None and split != video_split:
                continue
            top, _, rest = relative.partition("/")
            if not rest:
                raise ValueError(f"{self.index_path}, line {line}: {relative!r} has no method folder")
            method = "original" if top == "original_videos" else top
            yield make_record(
                self.name, method, "raw", str(Path(rest).with_suffix("").as_posix()), self.root / relative, label, video_split
            )

    def expected_counts(self) -> dict[str, int]:
        # DFDC preview paper: 5,214 videos, 1,131 of them original. Unsure: the split of the fakes
        # between method_A and method_B, and the size of the test set, so they are not checked.
        return {"original": 1131, "fake": 5214 - 1131}

    def subsets_of(self, record: VideoRecord) -> list[str]:
        return ["original" if record.label == REAL else "fake"] + (["test"] if record.split == "test" else [])
