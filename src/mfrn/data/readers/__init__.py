"""Benchmark readers, one module per dataset, registered by name in ``READERS``.

``build_reader("ffpp", root, compression="raw")`` reads a layout as its publisher ships it;
``detect_dataset(root)`` guesses the name from the folders it finds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mfrn.data.readers import celebdf, deeperforensics, dfdc, dfdcp, ffiw, ffpp, folder  # noqa: F401  (registers)
from mfrn.data.readers.base import READERS, DatasetReader
from mfrn.data.readers.ffiw import RELEASE_FOLDER

__all__ = ["READERS", "DatasetConfig", "DatasetReader", "build_reader", "build_reader_from_config", "detect_dataset"]


def build_reader(name: str, root: Path | str, **options) -> DatasetReader:
    """The reader registered as ``name`` for the dataset at ``root``; ``options`` go to its
    constructor (e.g. ``compression``, ``methods``, ``splits_dir`` for ``ffpp``)."""
    return READERS.build(name, Path(root), **options)


@dataclass
class DatasetConfig:
    """One dataset in an experiment's YAML; empty fields mean the reader's own default."""

    name: str = "ffpp"
    root: str = ""
    compression: str = ""  # ffpp and dfd: raw (c0) by default, as SBI trains and tests; c23 / c40 a switch
    methods: list[str] = field(default_factory=list)  # ffpp: empty = all five methods
    splits_dir: str = ""  # ffpp: searched in ROOT/splits, ROOT/dataset/splits, ROOT
    csv_file: str = ""  # folder: optional path,label[,split] CSV

    def options(self) -> dict:
        candidates = {
            "compression": self.compression,
            "methods": list(self.methods),
            "splits_dir": self.splits_dir,
            "csv_file": self.csv_file,
        }
        return {key: value for key, value in candidates.items() if value}


def build_reader_from_config(config: DatasetConfig) -> DatasetReader:
    if not config.root:
        raise ValueError(f"dataset {config.name!r}: root is empty; set it to the dataset's folder")
    return build_reader(config.name, Path(config.root), **config.options())


def detect_dataset(root: Path | str) -> str | None:
    """The reader name whose layout ``root`` holds, or None. An FF++ tree that also holds DFD
    answers ``ffpp`` (read DFD with ``--dataset dfd``)."""
    root = Path(root)
    if not root.is_dir():
        return None
    if (root / "original_sequences" / "youtube").is_dir() or any(
        (root / "manipulated_sequences" / m).is_dir() for m in ffpp.FFPP_METHODS
    ):
        return "ffpp"
    if (root / "original_sequences" / "actors").is_dir() or (root / "manipulated_sequences" / "DeepFakeDetection").is_dir():
        return "dfd"
    if (root / "Celeb-synthesis").is_dir() and ((root / "Celeb-real").is_dir() or (root / "YouTube-real").is_dir()):
        # interpretation: both versions share one layout; only a 'v1' in the folder name says v1.
        return "celebdf_v1" if "v1" in root.name.lower() else "celebdf_v2"
    if (root / "dataset.json").is_file() and ((root / "original_videos").is_dir() or (root / "method_A").is_dir()):
        return "dfdcp"
    if any(p.is_dir() and dfdc.PART_PATTERN.match(p.name) for p in root.iterdir()) or (root / "test" / "labels.csv").is_file():
        return "dfdc"
    release = root / RELEASE_FOLDER if (root / RELEASE_FOLDER).is_dir() else root
    if (release / "source").is_dir() and (release / "target").is_dir():
        return "ffiw"
    if (root / "manipulated_videos").is_dir() and ((root / "source_videos").is_dir() or (root / "lists").is_dir()):
        return "deeperforensics"
    if (root / "real").is_dir() and (root / "fake").is_dir():
        return "folder"
    return None
