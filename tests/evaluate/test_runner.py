"""`mfrn eval` end to end on a tiny FF++ tree holding real face videos."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from mfrn.cli import main
from tests.data.dataset_trees import build_ffpp

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ffpp_tree(sample_media, tmp_path_factory):
    """FF++ (c23) with the test pair 004/005: real sample videos in place of every test video, one corrupt."""
    root = build_ffpp(tmp_path_factory.mktemp("ffpp"), "c23", methods=("Deepfakes", "FaceSwap"), with_masks=False)
    from mfrn.data.readers import build_reader

    records = list(build_reader("ffpp", root, compression="c23").records("test"))
    for record in records:
        shutil.copy(sample_media.single_face_video, record.path)
    broken = next(r for r in records if r.method == "FaceSwap")
    Path(broken.path).write_bytes(b"not a video")
    return root, records, broken


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_eval_scores_every_video_writes_tables_and_resumes(ffpp_tree, tiny_checkpoint, tmp_path, capsys):
    root, records, broken = ffpp_tree
    out = tmp_path / "eval"
    args = ["eval", "-m", str(tiny_checkpoint), "--dataset", "ffpp", "--root", str(root), "--reader-option",
            "compression=c23", "-o", str(out), "--bootstrap", "20", "--no-progress", "--set", "eval.n_frames=2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "protocol: 2 evenly spaced frames/video" in printed
    rows = _rows(out / "ffpp" / "videos.csv")
    assert sorted(r["key"] for r in rows) == sorted(r.key for r in records)
    by_key = {r["key"]: r for r in rows}
    assert by_key[broken.key]["status"] == "failed" and by_key[broken.key]["reason"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(0.0 <= float(r["score"]) <= 1.0 for r in ok)
    assert {r["label"] for r in ok} == {"0", "1"}
    for name in ("cross_manipulation.md", "cross_manipulation.csv", "cross_dataset.md", "roc.png"):
        assert (out / name).is_file(), name
    table = (out / "cross_manipulation.md").read_text(encoding="utf-8")
    assert "Deepfakes" in table and "| all (DF+FS) |" in table
    # the compression of the scored videos reaches the saved table: c23 here, not SBI's raw
    assert "### Cross-manipulation (ffpp, c23)" in table and "c23 videos; SBI trains and tests on raw (c0)" in table
    assert "| ffpp (c23) |" in (out / "cross_dataset.md").read_text(encoding="utf-8")
    # a second run resumes: nothing is scored again
    assert main(args) == 0
    assert "0 scored" in capsys.readouterr().out
    assert len(_rows(out / "ffpp" / "videos.csv")) == len(rows)


@pytest.fixture(scope="module")
def ffpp_tree_with_masks(sample_media, tmp_path_factory):
    """FF++ Deepfakes test pair with real videos, and a mask video per fake (a real video stands in)."""
    root = build_ffpp(tmp_path_factory.mktemp("ffpp_masks"), "c23", methods=("Deepfakes",), with_masks=True)
    from mfrn.data.readers import build_reader

    records = list(build_reader("ffpp", root, compression="c23").records("test"))
    for record in records:
        shutil.copy(sample_media.single_face_video, record.path)
        if record.mask_path is not None:
            shutil.copy(sample_media.single_face_video, record.mask_path)
    return root


def test_eval_localisation_and_a_perturbation_sweep(ffpp_tree_with_masks, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "-m", str(tiny_checkpoint), "--dataset", "ffpp", "--root", str(ffpp_tree_with_masks),
                 "--reader-option", "compression=c23", "--reader-option", "methods=[Deepfakes]", "-o", str(out),
                 "--bootstrap", "10", "--no-progress", "--set", "eval.n_frames=1", "--localisation",
                 "--perturb", "jpeg"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "ffpp" / "localisation.json").read_text(encoding="utf-8"))
    assert metrics["n_frames"] == 2 and 0.0 <= metrics["pixel_auc"] <= 1.0  # two fakes, one frame each
    assert "pixel AUC" in printed
    for quality in (90, 70, 50, 30, 10):
        assert (out / "ffpp" / f"jpeg_quality{quality}" / "videos.csv").is_file()
    assert (out / "ffpp" / "auc_vs_jpeg.png").stat().st_size > 1000
    sweep = json.loads((out / "ffpp" / "robustness_jpeg.json").read_text(encoding="utf-8"))
    assert [row["value"] for row in sweep["levels"]] == [None, 90, 70, 50, 30, 10] and sweep["parameter"] == "quality"


def test_eval_under_torchrun_splits_videos_and_merges(ffpp_tree, tiny_checkpoint, tmp_path):
    """Two CPU processes (gloo) take every other video; rank 0 merges the part files and writes the tables."""
    import subprocess
    import sys

    root, records, _ = ffpp_tree
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               "-m", "mfrn.cli", "eval", "-m", str(tiny_checkpoint), "--dataset", "ffpp", "--root", str(root),
               "--reader-option", "compression=c23", "-o", str(out), "--bootstrap", "10", "--no-progress",
               "--device", "cpu", "--set", "eval.n_frames=1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    parts = [_rows(out / "ffpp" / f"videos.rank{r}.csv") for r in (0, 1)]
    assert parts[0] and parts[1] and not {r["key"] for r in parts[0]} & {r["key"] for r in parts[1]}
    merged = _rows(out / "ffpp" / "videos.csv")
    assert sorted(r["key"] for r in merged) == sorted(r.key for r in records)
    assert (out / "cross_dataset.md").is_file()


@pytest.fixture(scope="module")
def ffpp_with_a_missing_video(sample_media, tmp_path_factory):
    """FF++ Deepfakes test pair of real videos whose split file lists one fake that is not on disk."""
    root = build_ffpp(tmp_path_factory.mktemp("ffpp_missing"), "c23", methods=("Deepfakes",), with_masks=False,
                      skip=("Deepfakes/005_004",))
    from mfrn.data.readers import build_reader

    for record in build_reader("ffpp", root, compression="c23").records("test"):
        shutil.copy(sample_media.single_face_video, record.path)
    return root


def _eval_args(checkpoint, root, out, *extra, dataset="ffpp"):
    args = ["eval", "-m", str(checkpoint), "--dataset", dataset, "--root", str(root), "-o", str(out),
            "--bootstrap", "10", "--no-progress", "--set", "eval.n_frames=1", "--device", "cpu", *extra]
    return args + (["--reader-option", "compression=c23"] if dataset == "ffpp" else [])


def test_listed_videos_missing_on_disk_are_counted_and_shown(ffpp_with_a_missing_video, tiny_checkpoint, tmp_path, capsys):
    """Issue 10 item 4: they vanished ("0 failed") and the metrics were computed on the rest."""
    out = tmp_path / "eval"
    assert main(_eval_args(tiny_checkpoint, ffpp_with_a_missing_video, out)) == 0
    printed = capsys.readouterr().out
    assert "3 scored, 0 already done, 0 failed, 1 missing (listed, not on disk)" in printed
    rows = {r["key"]: r for r in _rows(out / "ffpp" / "videos.csv")}
    assert rows["ffpp/Deepfakes/c23/005_004"]["status"] == "missing"
    for table in ("cross_dataset.md", "cross_manipulation.md"):
        text = (out / table).read_text(encoding="utf-8")
        assert "1 listed but missing on disk and excluded (ffpp/Deepfakes/c23/005_004)" in text, table
    # a rerun neither scores again nor repeats the missing row
    assert main(_eval_args(tiny_checkpoint, ffpp_with_a_missing_video, out)) == 0
    assert "0 scored, 3 already done, 0 failed, 1 missing" in capsys.readouterr().out
    assert len(_rows(out / "ffpp" / "videos.csv")) == 4


def test_strict_makes_a_missing_video_an_error(ffpp_with_a_missing_video, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(_eval_args(tiny_checkpoint, ffpp_with_a_missing_video, out, "--strict")) == 2
    err = capsys.readouterr().err
    assert "1 listed video(s) are not on disk" in err and "005_004" in err
    assert not (out / "ffpp").exists()  # refused before anything was scored


def test_one_class_eval_reports_scores_without_failing(sample_media, tiny_checkpoint, tmp_path, capsys):
    """Issue 10 item 13: `video AUC nan`, then `error: no video-level ROC curve to plot`, exit 2; images ignored."""
    root = tmp_path / "reals"
    (root / "real").mkdir(parents=True)
    shutil.copy(sample_media.single_face_video, root / "real" / "clip.mp4")
    shutil.copy(sample_media.single_face_images[0], root / "real" / "photo.jpg")
    out = tmp_path / "eval"
    assert main(_eval_args(tiny_checkpoint, root, out, dataset="folder")) == 0
    printed = capsys.readouterr().out
    assert "video AUC n/a (one class: 2 real, 0 fake)" in printed and "nan" not in printed.lower()
    assert "ROC plot skipped" in printed and not (out / "roc.png").exists()
    rows = {r["key"]: r for r in _rows(out / "folder" / "videos.csv")}
    assert set(rows) == {"folder/original/raw/clip", "folder/original/raw/photo.jpg"}  # the image is read
    table = (out / "cross_dataset.md").read_text(encoding="utf-8")
    assert "n/a (one class)" in table
    per_video = (out / "folder" / "per_video.md").read_text(encoding="utf-8")
    assert "folder/original/raw/photo.jpg" in per_video and "called fake at threshold 0.5" in per_video
    assert "Per-video scores (folder)" in printed


def test_eval_warns_when_its_protocol_differs_from_the_calibration(sample_media, tiny_checkpoint, tmp_path, capsys):
    """A checkpoint recalibrated with flip TTA: eval follows it, and ``--set eval.tta_flip=false`` is warned of."""
    from mfrn.checkpoint import Calibration, set_calibration

    checkpoint = tmp_path / "flip.pt"
    checkpoint.write_bytes(tiny_checkpoint.read_bytes())
    set_calibration(checkpoint, Calibration(0.4, "r", tta_flip=True))
    root = tmp_path / "reals"
    (root / "real").mkdir(parents=True)
    shutil.copy(sample_media.single_face_images[0], root / "real" / "photo.jpg")
    assert main(_eval_args(checkpoint, root, tmp_path / "followed", dataset="folder")) == 0
    captured = capsys.readouterr()
    assert "flip TTA on" in captured.out and "warning" not in captured.err
    assert main(_eval_args(checkpoint, root, tmp_path / "differs", "--set", "eval.tta_flip=false", dataset="folder")) == 0
    captured = capsys.readouterr()
    assert "flip TTA off" in captured.out
    warning = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "learned on scores with flip TTA on" in warning[0]
    assert "mfrn calibrate CKPT --set eval.tta_flip=false" in warning[0]


def test_eval_where_nothing_could_be_scored_exits_3(tiny_checkpoint, tmp_path, capsys):
    root = tmp_path / "broken"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a.mp4").write_text("not a video\n", encoding="utf-8")
    assert main(_eval_args(tiny_checkpoint, root, tmp_path / "eval", dataset="folder")) == 3
    captured = capsys.readouterr()
    assert "0 scored, 0 already done, 1 failed" in captured.out
    assert "error: no video of folder could be scored" in captured.err


def test_eval_output_file_and_missing_gpu_are_one_line(tiny_checkpoint, tmp_path, capsys):
    import torch

    root = tmp_path / "data"
    (root / "real").mkdir(parents=True)
    taken = tmp_path / "taken"
    taken.write_text("x", encoding="utf-8")
    assert main(_eval_args(tiny_checkpoint, root, taken, dataset="folder")) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    if not torch.cuda.is_available():
        args = _eval_args(tiny_checkpoint, root, tmp_path / "o", dataset="folder")
        args[args.index("cpu")] = "cuda"
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no CUDA GPU is visible" in err


def test_eval_of_a_temporal_checkpoint_puts_frame_mean_and_temporal_side_by_side(ffpp_tree, tiny_temporal_checkpoint,
                                                                                   tmp_path, capsys):
    root, records, broken = ffpp_tree
    out = tmp_path / "eval"
    args = ["eval", "-m", str(tiny_temporal_checkpoint), "--dataset", "ffpp", "--root", str(root), "--reader-option",
            "compression=c23", "-o", str(out), "--bootstrap", "20", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "temporal: 2 clips of 3 consecutive frames per video" in printed
    frame_rows = {r["key"]: r for r in _rows(out / "ffpp" / "videos.csv")}
    temporal_rows = {r["key"]: r for r in _rows(out / "ffpp" / "temporal_videos.csv")}
    ok = {key for key, row in frame_rows.items() if row["status"] == "ok"}
    assert set(temporal_rows) == ok and broken.key not in temporal_rows  # the same videos
    for key in ok:
        row = temporal_rows[key]
        assert row["n_frames"] == "2" and row["n_frames_with_face"] == "2" and 0 <= float(row["score"]) <= 1
        assert row["label"] == frame_rows[key]["label"]
    table = (out / "ffpp" / "temporal_vs_frame_mean.md").read_text(encoding="utf-8")
    assert "| frame mean (frame detector) |" in table and "| temporal head (clips) |" in table
    assert "Frame mean vs temporal head" in printed
    assert main(args) == 0  # a resumed run adds no temporal row twice
    assert len(_rows(out / "ffpp" / "temporal_videos.csv")) == len(temporal_rows)


@pytest.mark.parametrize("files, expected", [
    (["a.png", "b.JPG"], "image"), (["a.mp4", "b.avi"], "video"), (["a.mp4", "b.png"], "mixed"), ([], "video")])
def test_the_accuracy_column_counts_at_the_threshold_detect_judges_the_files_by(files, expected):
    """A dataset of images is counted at the calibration's single-image threshold, not the videos'."""
    from types import SimpleNamespace

    from mfrn.checkpoint import Calibration
    from mfrn.config import load_config
    from mfrn.evaluate.runner import _verdict_threshold
    from mfrn.inference import Detector
    from mfrn.models import build_model
    from tests.conftest import TINY_MODEL

    config = load_config(None, list(TINY_MODEL))
    calibration = Calibration(threshold=0.6, rule="videos' rule", image_threshold=0.9, image_rule="images' rule")
    entries = [SimpleNamespace(path=f"/data/real/{name}") for name in files]
    for calibrated in (True, False):
        detector = Detector(build_model(config.model), config.sbi.crop, config.eval, {"input_size": 64},
                            calibration if calibrated else None)
        verdict = _verdict_threshold(detector, entries)
        if not calibrated:
            assert verdict == {"threshold": 0.5, "threshold_rule": None}
        elif expected == "image":
            assert verdict == {"threshold": 0.9, "threshold_rule": "images' rule"}
        else:
            assert verdict["threshold"] == 0.6 and verdict["threshold_rule"].startswith("videos' rule")
            note = "the 1 single image(s) among these videos are counted at it too"
            assert (note in verdict["threshold_rule"]) == (expected == "mixed") and ("0.9" in verdict["threshold_rule"]) == (expected == "mixed")
