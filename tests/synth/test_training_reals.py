"""Only the real faces of the training and validation splits reach the built-in generator and the RBI
cache (method.md section 3 item 7), and `mfrn prepare` can prepare just those videos."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mfrn.cli import EXIT_NOTHING_SUCCEEDED, EXIT_USAGE, main
from mfrn.data.manifest import STATUS_OK, FaceRecord, FaceSample, FrameRecord, Manifest, MediaRecord
from mfrn.data.readers import build_reader
from mfrn.synth.dataset import TRAINING_SPLITS, select_faces
from tests.data.dataset_trees import FFPP_FOUR, build_ffpp

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
METHODS = FFPP_FOUR + ("FaceShifter",)
# the tree's pairs: train (000, 003), val (001, 002), test (004, 005)
TRAINING_REALS = {f"ffpp/original/raw/{i}" for i in ("000", "003", "001", "002")}
TINY_GENERATOR = ["crop_size=32", "base_channels=8", "max_channels=16", "n_downsample=2", "n_blocks=1",
                  "identity_dim=32", "identity_channels=4", "identity_input_size=32"]


@pytest.fixture
def ffpp_tree(tmp_path) -> Path:
    return build_ffpp(tmp_path / "ffpp", methods=METHODS)


def _records_in(out: Path) -> set[str]:
    return {record.key for record in Manifest(out).records()}


def test_prepare_real_videos_of_chosen_splits_only(ffpp_tree, tmp_path, capsys):
    out = tmp_path / "prepared"
    # the tree's videos are placeholders: each is recorded as failed, which shows what was attempted (and as
    # nothing succeeded, the exit code says so)
    assert main(["prepare", "--dataset", "ffpp", "--root", str(ffpp_tree), "--split", "train,val", "--real-only",
                 "-o", str(out), "--no-progress"]) == EXIT_NOTHING_SUCCEEDED
    assert _records_in(out) == TRAINING_REALS
    printed = capsys.readouterr().out
    assert "ffpp: 4 videos to prepare (splits train, val; real only: 20 fake videos left out)" in printed
    assert main(["prepare", "--dataset", "ffpp", "--root", str(ffpp_tree), "--split", "train,holdout",
                 "-o", str(tmp_path / "bad")]) == EXIT_USAGE


def test_paper_config_names_sbis_preparation(ffpp_tree, tmp_path, capsys):
    """`mfrn prepare -c configs/mfrn_effb4.yaml` is FF++ raw, train + val reals, RetinaFace + dlib-81."""
    from mfrn.config import load_config

    section = load_config(CONFIGS / "sbi_effb4.yaml").prepare
    assert (section.dataset, section.reader_options, section.splits, section.real_only) == (
        "ffpp", {"compression": "raw"}, ["train", "val"], True)
    assert (section.detector, section.landmarker, section.n_frames) == ("retinaface", "dlib81", 32)
    assert load_config(CONFIGS / "mfrn_tiny.yaml").prepare.detector == "dlib"  # the CPU config stays offline
    out = tmp_path / "prepared"
    config = str(CONFIGS / "sbi_effb4.yaml")
    assert main(["prepare", "-c", config, "--root", str(ffpp_tree), "-o", str(out)]) == EXIT_USAGE
    assert "retinaface' needs its weights file: give --detector-weights PATH (Resnet50_Final.pth)" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written
    assert main(["prepare", "-c", config, "--root", str(ffpp_tree), "-o", str(out), "--detector", "dlib",
                 "--landmarker", "dlib", "--no-progress"]) == EXIT_NOTHING_SUCCEEDED  # placeholder videos
    assert _records_in(out) == TRAINING_REALS


def _manifest_of_everything(tree: Path, face: FaceSample, out: Path, frames: int = 3) -> Manifest:
    """What a prepare of the whole benchmark writes (fakes and the test split included): one real face
    crop per frame, copied under every video of the tree."""
    manifest = Manifest(out)
    for video in build_reader("ffpp", tree).records():
        record = MediaRecord(key=video.key, source=str(video.path), status=STATUS_OK, label=video.label,
                             split=video.split, dataset=video.dataset, method=video.method)
        for index in range(frames):
            crop = manifest.crop_dir(video.key) / f"{index:06d}_0.png"
            crop.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(face.root / face.face.crop_path, crop)
            record.frames.append(FrameRecord(index, face.frame.width, face.frame.height, [
                FaceRecord(crop.relative_to(out).as_posix(), list(face.face.crop_box), list(face.face.box),
                           face.face.score, face.face.keypoints, face.face.landmarks)]))
        manifest.write(record)
    manifest.consolidate()
    return manifest


def test_generator_and_cache_see_training_reals_only(ffpp_tree, prepared_faces, tmp_path, capsys, monkeypatch):
    face = Manifest(prepared_faces).faces()[0]
    prepared = tmp_path / "prepared"
    manifest = _manifest_of_everything(ffpp_tree, face, prepared)
    loaded: list[str] = []
    real_load = FaceSample.load

    def spy(sample):
        loaded.append(sample.record.key)
        return real_load(sample)

    monkeypatch.setattr(FaceSample, "load", spy)  # every face's pixels reach a stage through load()

    generator = tmp_path / "gen.pt"
    sets = [arg for item in TINY_GENERATOR for arg in ("--set", item)]
    assert main(["generator", "train", str(prepared), "-o", str(generator), "--steps", "1", "--device", "cpu",
                 *sets]) == 0
    assert set(loaded) == TRAINING_REALS and len(loaded) == 4 * 3
    printed = capsys.readouterr().out
    # 36 videos x 3 faces: 4 x 3 training reals used; 30 fake videos and the 2 test reals left out
    assert ("generator train: 12 faces used (real faces of the train and val splits); 96 left out: "
            "90 of fake videos (training fakes are synthetic), 6 of the test split") in printed

    loaded.clear()
    cache = tmp_path / "cache"
    assert main(["synth", "cache", str(prepared), "-o", str(cache), "--device", "cpu", "-c",
                 str(CONFIGS / "mfrn_tiny.yaml"), "--set", f"rbi.reconstructor_kwargs={{checkpoint: '{generator}'}}",
                 "--set", "rbi.variants_per_face=1", "--set", "data.frames_per_video=2"]) == 0
    assert set(loaded) == TRAINING_REALS
    import json

    entries = json.loads((cache / "index.json").read_text())["entries"]
    by_crop = {s.face.crop_path: s.record.key for s in manifest.faces()}
    assert {by_crop[crop] for crop in entries} == TRAINING_REALS and len(entries) == 4 * 2
    printed = capsys.readouterr().out
    assert "synth cache: 8 faces used (real faces of the train and val splits); 100 left out: 90 of fake videos" in printed
    assert "4 of frames beyond 2 per video (data.frames_per_video)" in printed and "6 of the test split" in printed


def test_selection_without_dataset_splits(prepared_faces, tmp_path):
    """Media prepared without a dataset (no split, no label): train + val by video hash cover every
    face; videos of a benchmark without its split files are left out, with the reason."""
    manifest = Manifest(prepared_faces)
    everything = manifest.faces()
    selection = select_faces(manifest, TRAINING_SPLITS)
    assert len(selection.faces) == len(everything) and selection.left_out == {}
    assert "none left out" in selection.format("generator train")

    unsplit = Manifest(tmp_path / "unsplit")
    record = MediaRecord(key="ffpp/original/raw/000", source="000.mp4", status=STATUS_OK, label=0, split="unsplit",
                         frames=[everything[0].frame])
    unsplit.write(record)
    selection = select_faces(unsplit, TRAINING_SPLITS)
    assert selection.faces == [] and selection.left_out == {
        "of videos in no split (the dataset's split files were not found)": len(everything[0].frame.faces)}
