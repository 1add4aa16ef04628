"""Tiny benchmark trees, laid out as each publisher ships them, with few-byte placeholder videos."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

FFPP_PAIRS = {"train": [("000", "003")], "val": [("001", "002")], "test": [("004", "005")]}
FFPP_FOUR = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")


def touch(path: Path, size: int = 4) -> Path:
    """A placeholder file of ``size`` bytes (0 makes the zero-byte file verify must flag)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00" * size)
    return path


def build_ffpp(
    root: Path,
    compression: str = "raw",
    methods: Sequence[str] = FFPP_FOUR,
    pairs: dict[str, list[tuple[str, str]]] | None = None,
    with_splits: bool = True,
    with_masks: bool = True,
    skip: Iterable[str] = (),
) -> Path:
    """FF++ with the videos of ``pairs``; ``skip`` names 'method/id' files left out."""
    pairs = FFPP_PAIRS if pairs is None else pairs
    skip = set(skip)
    real_ids = sorted({i for split_pairs in pairs.values() for pair in split_pairs for i in pair})
    fake_ids = sorted({f"{a}_{b}" for split_pairs in pairs.values() for a, b in split_pairs}
                      | {f"{b}_{a}" for split_pairs in pairs.values() for a, b in split_pairs})
    for video_id in real_ids:
        if f"original/{video_id}" not in skip:
            touch(root / "original_sequences" / "youtube" / compression / "videos" / f"{video_id}.mp4")
    for method in methods:
        for video_id in fake_ids:
            if f"{method}/{video_id}" not in skip:
                touch(root / "manipulated_sequences" / method / compression / "videos" / f"{video_id}.mp4")
                if with_masks and method != "FaceShifter":
                    touch(root / "manipulated_sequences" / method / "masks" / "videos" / f"{video_id}.mp4")
    if with_splits:
        splits_dir = root / "splits"
        splits_dir.mkdir(parents=True, exist_ok=True)
        for split, split_pairs in pairs.items():
            (splits_dir / f"{split}.json").write_text(json.dumps([list(p) for p in split_pairs]))
    return root


def build_dfd(root: Path, compression: str = "raw") -> Path:
    for name in ("01__kitchen_pan", "02__outside_talking"):
        touch(root / "original_sequences" / "actors" / compression / "videos" / f"{name}.mp4")
    for name in ("01_02__kitchen_pan__ABCDEF12", "02_01__outside_talking__XYZ98765", "01_03__hugging__QWER1234"):
        touch(root / "manipulated_sequences" / "DeepFakeDetection" / compression / "videos" / f"{name}.mp4")
    return root


def build_celebdf(root: Path, test_lines: Sequence[str] | None = None) -> Path:
    for name in ("id0_0000", "id1_0001"):
        touch(root / "Celeb-real" / f"{name}.mp4")
    for name in ("00000", "00001"):
        touch(root / "YouTube-real" / f"{name}.mp4")
    for name in ("id0_id1_0000", "id1_id0_0001", "id0_id2_0002"):
        touch(root / "Celeb-synthesis" / f"{name}.mp4")
    if test_lines is None:
        # Celeb-DF's own convention: 1 = real, 0 = fake.
        test_lines = ["1 YouTube-real/00000.mp4", "1 Celeb-real/id1_0001.mp4", "0 Celeb-synthesis/id0_id2_0002.mp4"]
    (root / "List_of_testing_videos.txt").write_text("\n".join(test_lines) + "\n")
    return root


def build_dfdc(root: Path, test_rows: Sequence[str] | None = None, part_label: str = "FAKE") -> Path:
    part = root / "dfdc_train_part_0"
    touch(part / "aaaaaaaaaa.mp4")
    touch(part / "bbbbbbbbbb.mp4")
    metadata = {
        "aaaaaaaaaa.mp4": {"label": "REAL", "split": "train", "original": None},
        "bbbbbbbbbb.mp4": {"label": part_label, "split": "train", "original": "aaaaaaaaaa.mp4"},
    }
    (part / "metadata.json").write_text(json.dumps(metadata, indent=1))
    test = root / "test"
    touch(test / "cccccccccc.mp4")
    touch(test / "dddddddddd.mp4")
    rows = ["filename,label", "cccccccccc.mp4,1", "dddddddddd.mp4,0"] if test_rows is None else list(test_rows)
    (test / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def build_dfdcp(root: Path) -> Path:
    index = {
        "original_videos/1255229/1255229_A_001.mp4": {"label": "real", "set": "test"},
        "original_videos/1255229/1255229_A_002.mp4": {"label": "real", "set": "train"},
        "method_A/1255229/1255229_A/1255229_A_001_x.mp4": {"label": "fake", "set": "test"},
        "method_B/1255229/1255229_B/1255229_A_001_x.mp4": {"label": "fake", "set": "train"},
    }
    for relative in index:
        touch(root / relative)
    (root / "dataset.json").write_text(json.dumps(index, indent=1))
    return root


def build_ffiw(root: Path, with_train: bool = True) -> Path:
    release = root / "FFIW10K-v1-release"
    for side in ("source", "target"):
        for split in ("train", "val") if with_train else ("val",):
            for name in ("00001", "00002"):
                touch(release / side / split / "videos" / f"{name}.mp4")
    return root


def build_deeperforensics(root: Path) -> Path:
    for perturbation in ("end_to_end", "end_to_end_level_1_JPEG"):
        for name in ("000_M101", "001_W102", "002_M103"):
            touch(root / "manipulated_videos" / perturbation / f"{name}.mp4")
    touch(root / "source_videos" / "M101" / "BlendShape" / "camera_front" / "M101_BlendShape.mp4")
    touch(root / "source_videos" / "W102" / "light_up" / "camera_front" / "W102_light_up.mp4")
    splits = root / "lists" / "splits"
    splits.mkdir(parents=True)
    (splits / "train.txt").write_text("000_M101.mp4\n")
    (splits / "val.txt").write_text("001_W102.mp4\n")
    (splits / "test.txt").write_text("002_M103.mp4\n")
    return root


def build_folder(root: Path) -> Path:
    touch(root / "real" / "clip_a.mp4")
    touch(root / "real" / "holiday" / "clip_b.mp4")
    touch(root / "fake" / "clip_a.mp4")
    return root
