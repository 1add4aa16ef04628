"""FaceForensics++ (``original_sequences/youtube``, ``manipulated_sequences/<method>``) and the
DeepFakeDetection set (DFD) that ships in the same tree."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from mfrn.data.readers.base import (
    READERS,
    DatasetReader,
    check_split,
    list_videos,
    read_json,
    resolve_compression,
)
from mfrn.data.records import FAKE, REAL, SPLITS, UNSPLIT, VideoRecord, make_record

FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
FFPP_OPTIONAL_METHODS = ("FaceShifter",)  # added to FF++ later; many copies lack it
# The four methods of the original FF++ release: SBI's "all" (FaceShifter is not part of it)
FFPP_ORIGINAL_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
FFPP_MASKED_METHODS = FFPP_ORIGINAL_METHODS
# FF++'s download script names the uncompressed version "raw"; papers call it c0.
COMPRESSION_FOLDERS = {"raw": ("raw", "c0"), "c0": ("raw", "c0"), "c23": ("c23",), "c40": ("c40",)}
# Published: 1,000 videos per method and per compression; split files hold 360/70/70 id pairs.
FFPP_VIDEOS_PER_SUBSET = 1000
FFPP_SPLIT_VIDEOS = {"train": 720, "val": 140, "test": 140}
SPLITS_HELP = (
    "FF++ split files train.json, val.json and test.json come from the FaceForensics repository's "
    "dataset/splits folder (https://github.com/ondyari/FaceForensics/tree/master/dataset/splits); "
    "put them in ROOT/splits or pass splits_dir="
)


def _check_compression(compression: str) -> None:
    if compression not in COMPRESSION_FOLDERS:
        raise ValueError(f"unknown compression {compression!r}; expected one of {tuple(COMPRESSION_FOLDERS)}")


def _other_compressions(folder: Path) -> str:
    """"; this tree holds c23: pass compression=c23" when the asked compression is absent but others are there."""
    present = sorted(name for name in ("raw", "c0", "c23", "c40") if (folder / name / "videos").is_dir())
    if not present:
        return ""
    return f"; this tree holds {', '.join(present)}: pass compression={present[0]} (--reader-option compression={present[0]})"


def _mask_path(mask_dir: Path | None, video_id: str) -> Path | None:
    if mask_dir is None:
        return None
    path = mask_dir / f"{video_id}.mp4"
    return path if path.is_file() else None


def load_ffpp_splits(splits_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """``{split: [(a, b), ...]}`` from the split files present in ``splits_dir``."""
    splits: dict[str, list[tuple[str, str]]] = {}
    for split in SPLITS:
        path = splits_dir / f"{split}.json"
        if not path.is_file():
            continue
        data, _ = read_json(path)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of [target, source] id pairs, got {type(data).__name__}")
        pairs = []
        for index, pair in enumerate(data):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise ValueError(f"{path}: entry {index} is {pair!r}, expected a pair of video ids like ['953', '974']")
            pairs.append((str(pair[0]), str(pair[1])))
        splits[split] = pairs
    return splits


@READERS.register("ffpp")
class FFPPReader(DatasetReader):
    """FaceForensics++ at one compression (raw by default). Keys: ``ffpp/original/raw/000``,
    ``ffpp/Deepfakes/c23/000_003``. Reals ``a``, ``b`` and fakes ``a_b``, ``b_a`` take the split of
    the pair ``[a, b]``; without split files every video is ``unsplit`` (and a warning says where
    the files come from)."""

    name = "ffpp"

    def __init__(
        self,
        root: Path | str,
        compression: str = "raw",  # SBI trains and tests on raw (c0); c23 (HQ) and c40 (LQ) are a switch
        methods: Sequence[str] | None = None,
        splits_dir: Path | str | None = None,
        masks: bool = True,
    ) -> None:
        super().__init__(root)
        _check_compression(compression)
        self.masks = masks
        self.methods = tuple(methods) if methods else FFPP_METHODS
        unknown = [m for m in self.methods if m not in FFPP_METHODS]
        if unknown:
            raise ValueError(f"unknown FF++ methods {unknown}; known: {FFPP_METHODS}")
        originals = self.root / "original_sequences" / "youtube"
        self.compression = resolve_compression(originals, compression, COMPRESSION_FOLDERS)
        self.original_dir = originals / self.compression / "videos"
        if not self.original_dir.is_dir():
            self._missing("original", f"{self.original_dir}: FF++ real videos not found{_other_compressions(originals)}")
        self.method_dirs: dict[str, Path] = {}
        self.mask_dirs: dict[str, Path | None] = {}
        for method in self.methods:
            method_root = self.root / "manipulated_sequences" / method
            folder = method_root / self.compression / "videos"
            if not folder.is_dir():
                kind = "optional" if method in FFPP_OPTIONAL_METHODS else "required"
                self._missing(method, f"{folder}: FF++ {method} videos not found ({kind} subset, skipped)")
                continue
            self.method_dirs[method] = folder
            self.mask_dirs[method] = None
            if masks and method in FFPP_MASKED_METHODS:
                mask_dir = method_root / "masks" / "videos"
                if mask_dir.is_dir():
                    self.mask_dirs[method] = mask_dir
                else:
                    self._missing(f"{method}/masks", f"{mask_dir}: FF++ {method} masks not found (optional)")
        self.splits_dir = self._find_splits_dir(Path(splits_dir) if splits_dir is not None else None)
        self.splits = load_ffpp_splits(self.splits_dir) if self.splits_dir is not None else {}
        if not self.splits:
            self._warn(f"{self.root}: no FF++ split files found; videos are 'unsplit'. {SPLITS_HELP}")
        elif len(self.splits) < len(SPLITS):
            absent = [s for s in SPLITS if s not in self.splits]
            self._warn(f"{self.splits_dir}: split files missing for {absent}. {SPLITS_HELP}")
        for split, pairs in self.splits.items():
            if 2 * len(pairs) != FFPP_SPLIT_VIDEOS[split]:
                self._warn(
                    f"{self.splits_dir}/{split}.json: {len(pairs)} pairs; the published file holds "
                    f"{FFPP_SPLIT_VIDEOS[split] // 2} ({FFPP_SPLIT_VIDEOS[split]} videos)"
                )

    def _find_splits_dir(self, given: Path | None) -> Path | None:
        if given is not None:
            if not given.is_dir():
                raise FileNotFoundError(f"{given}: splits_dir is not a folder. {SPLITS_HELP}")
            return given
        for candidate in (self.root / "splits", self.root / "dataset" / "splits", self.root):
            if any((candidate / f"{s}.json").is_file() for s in SPLITS):
                return candidate
        return None

    def _split_of_ids(self) -> tuple[dict[str, str], dict[str, str]]:
        real_split: dict[str, str] = {}
        fake_split: dict[str, str] = {}
        for split, pairs in self.splits.items():
            for a, b in pairs:
                real_split[a] = real_split[b] = split
                fake_split[f"{a}_{b}"] = fake_split[f"{b}_{a}"] = split
        return real_split, fake_split

    def entries(self, split: str | None = None) -> Iterator[VideoRecord]:
        check_split(split)
        if split in SPLITS and split not in self.splits:
            raise FileNotFoundError(f"{self.root}: split {split!r} requested but {split}.json not found. {SPLITS_HELP}")
        groups: list[tuple[str, Path, int, Path | None]] = []
        if self.original_dir.is_dir():
            groups.append(("original", self.original_dir, REAL, None))
        for method, folder in self.method_dirs.items():
            groups.append((method, folder, FAKE, self.mask_dirs.get(method)))
        if self.splits:
            real_split, fake_split = self._split_of_ids()
            for method, folder, label, mask_dir in groups:
                assignment = real_split if label == REAL else fake_split
                for video_id in sorted(assignment):
                    video_split = assignment[video_id]
                    if split is None or split == video_split:
                        yield self._record(method, folder, label, video_id, video_split, mask_dir)
                if split is None:
                    unlisted = sorted({p.stem for p in list_videos(folder)} - set(assignment))
                    if unlisted:
                        self._warn(f"{folder}: {len(unlisted)} videos are in no split file (e.g. {unlisted[0]}); skipped")
            return
        for method, folder, label, mask_dir in groups:
            for path in list_videos(folder):
                if split is None or split == UNSPLIT:
                    yield self._record(method, folder, label, path.stem, UNSPLIT, mask_dir)

    def _record(
        self, method: str, folder: Path, label: int, video_id: str, split: str, mask_dir: Path | None
    ) -> VideoRecord:
        return make_record(
            self.name, method, self.compression, video_id, folder / f"{video_id}.mp4", label, split,
            mask_path=_mask_path(mask_dir, video_id),
        )

    def expected_counts(self) -> dict[str, int]:
        counts = {"original": FFPP_VIDEOS_PER_SUBSET}
        for method in self.methods:
            counts[method] = FFPP_VIDEOS_PER_SUBSET
            if self.masks and method in FFPP_MASKED_METHODS:
                counts[f"{method}/masks"] = FFPP_VIDEOS_PER_SUBSET
        return counts

    def subsets_of(self, record: VideoRecord) -> list[str]:
        return [record.method] + ([f"{record.method}/masks"] if record.mask_path is not None else [])

    def optional_subsets(self) -> set[str]:
        return set(FFPP_OPTIONAL_METHODS) | {f"{m}/masks" for m in FFPP_MASKED_METHODS}


@READERS.register("dfd")
class DFDReader(DatasetReader):
    """DeepFakeDetection (Google/Jigsaw) inside an FF++ tree: ``original_sequences/actors`` (real)
    and ``manipulated_sequences/DeepFakeDetection`` (fake). No split: every video is ``test``."""

    name = "dfd"
    METHOD = "DeepFakeDetection"

    def __init__(self, root: Path | str, compression: str = "raw", masks: bool = True) -> None:
        # SBI evaluates DFD on raw; c23 scores much lower.
        super().__init__(root)
        _check_compression(compression)
        actors = self.root / "original_sequences" / "actors"
        self.compression = resolve_compression(actors, compression, COMPRESSION_FOLDERS)
        self.original_dir = actors / self.compression / "videos"
        method_root = self.root / "manipulated_sequences" / self.METHOD
        self.fake_dir = method_root / self.compression / "videos"
        self.mask_dir: Path | None = None
        for subset, folder in (("original", self.original_dir), (self.METHOD, self.fake_dir)):
            if not folder.is_dir():
                self._missing(subset, f"{folder}: DFD {subset} videos not found{_other_compressions(folder.parent.parent)}")
        if masks:
            mask_dir = method_root / "masks" / "videos"
            if mask_dir.is_dir():
                self.mask_dir = mask_dir
            else:
                self._missing(f"{self.METHOD}/masks", f"{mask_dir}: DFD masks not found (optional)")

    def entries(self, split: str | None = None) -> Iterator[VideoRecord]:
        check_split(split)
        if split not in (None, "test"):
            return
        for path in list_videos(self.original_dir):
            yield make_record(self.name, "original", self.compression, path.stem, path, REAL, "test")
        for path in list_videos(self.fake_dir):
            yield make_record(
                self.name, self.METHOD, self.compression, path.stem, path, FAKE, "test",
                mask_path=_mask_path(self.mask_dir, path.stem),
            )

    def expected_counts(self) -> dict[str, int]:
        # Published: 363 actor videos and 3,068 DeepFakeDetection videos (FF++ page; per compression).
        return {"original": 363, self.METHOD: 3068}

    def subsets_of(self, record: VideoRecord) -> list[str]:
        return [record.method] + ([f"{record.method}/masks"] if record.mask_path is not None else [])

    def optional_subsets(self) -> set[str]:
        return {f"{self.METHOD}/masks"}

