"""What every benchmark reader shares: streaming ``records``, ``entries`` (also the videos a label
or split file names but the disk lacks), published ``expected_counts`` and what is missing."""

from __future__ import annotations

import json
import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from mfrn.data.records import SPLITS, UNSPLIT, VIDEO_SUFFIXES, VideoRecord
from mfrn.registry import Registry

log = logging.getLogger(__name__)

READERS: Registry["DatasetReader"] = Registry("dataset reader")


class DatasetReader(ABC):
    """Reads one benchmark as distributed. Subclasses set ``name`` and implement ``entries``
    and ``expected_counts``; they never move or rename the publisher's files."""

    name: ClassVar[str]

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: dataset root is not a folder")
        self.missing: list[str] = []  # subsets (keys of expected_counts or optional parts) not found
        self.warnings: list[str] = []  # things the user should know, never fatal
        self.problems: list[str] = []  # data defects found while streaming (e.g. video without label)

    # -- the public surface -------------------------------------------------------------------
    @abstractmethod
    def entries(self, split: str | None = None) -> Iterator[VideoRecord]:
        """Every video the layout names (on disk, or listed in a label/split file), present or not,
        in a deterministic order."""

    @abstractmethod
    def expected_counts(self) -> dict[str, int]:
        """Published number of videos per subset (subset names as ``subsets_of`` returns them)."""

    def records(self, split: str | None = None) -> Iterator[VideoRecord]:
        """The videos present on disk, streamed, in a deterministic (sorted) order."""
        for record in self.entries(split):
            if record.path.is_file():
                yield record

    def subsets_of(self, record: VideoRecord) -> list[str]:
        """The subsets (keys of ``expected_counts``) a record counts towards."""
        return [record.method]

    def optional_subsets(self) -> set[str]:
        """Subsets whose absence is reported but not counted as an incomplete dataset."""
        return set()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r})"

    # -- helpers for subclasses ---------------------------------------------------------------
    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            log.warning(message)

    def _problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)
            log.warning(message)

    def _missing(self, subset: str, message: str) -> None:
        if subset not in self.missing:
            self.missing.append(subset)
        self._warn(message)


def check_split(split: str | None) -> None:
    if split is not None and split not in SPLITS and split != UNSPLIT:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS + (UNSPLIT,)} or None")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def list_videos(folder: Path) -> list[Path]:
    """Video files directly inside ``folder``, sorted by name; [] when the folder is absent."""
    if not folder.is_dir():
        return []
    with os.scandir(folder) as it:
        names = sorted(e.name for e in it if e.is_file() and is_video(Path(e.name)))
    return [folder / n for n in names]


def walk_videos(folder: Path, suffixes: tuple[str, ...] | frozenset[str] = VIDEO_SUFFIXES) -> Iterator[Path]:
    """Files with one of ``suffixes`` (video files by default) anywhere below ``folder``, streamed
    folder by folder in sorted order."""
    if not folder.is_dir():
        return
    for current, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in suffixes:
                yield Path(current) / name


def relative_id(path: Path, base: Path) -> str:
    """Video id of a nested file: its path below ``base`` without the suffix, '/'-separated."""
    return path.relative_to(base).with_suffix("").as_posix()


def read_json(path: Path) -> tuple[Any, str]:
    """The parsed JSON and its text (for line numbers); errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise OSError(f"{path}: cannot read ({error})") from error
    try:
        return json.loads(text), text
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from error


def json_line(text: str, key: str) -> int | None:
    """1-based line on which ``"key":`` first appears in a JSON text (for error messages)."""
    match = re.search(re.escape(json.dumps(key)) + r"\s*:", text)
    return None if match is None else text.count("\n", 0, match.start()) + 1


def resolve_compression(base: Path, compression: str, aliases: dict[str, tuple[str, ...]]) -> str:
    """The folder name under ``base`` that holds ``compression`` (FF++ calls c0 'raw')."""
    candidates = aliases.get(compression, (compression,))
    for candidate in candidates:
        if (base / candidate).is_dir():
            return candidate
    return candidates[0]
