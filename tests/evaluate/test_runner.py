"""`mfrn eval` end to end on a tiny FF++ tree holding real face videos, and `mfrn detect` on real media."""

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


def test_detect_cli_records_a_missing_input_and_goes_on(sample_media, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "detect"
    photo = sample_media.single_face_images[0]
    assert main(["detect", str(photo), str(tmp_path / "missing.mp4"), "-m", str(tiny_checkpoint),
                 "-o", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "missing.mp4: skipped" in printed and photo.name in printed
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert len(data["results"]) == 1 and Path(data["results"][0]["overlay"]).is_file()


def test_detect_writes_json_csv_and_overlays(sample_media, tiny_checkpoint, tmp_path):
    from mfrn.detect import run_detect

    photo, video = sample_media.single_face_images[0], sample_media.single_face_video
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    summary = run_detect([photo, video, empty], tiny_checkpoint, tmp_path / "out", device="cpu")
    data = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert [Path(r["path"]).name for r in data["results"]] == [photo.name, video.name]
    assert data["skipped"] and data["skipped"][0]["path"].endswith("empty.mp4")
    image_result, video_result = data["results"]
    assert image_result["kind"] == "image" and len(image_result["frames"][0]["faces"]) == 1
    assert 0.0 <= image_result["score"] <= 1.0 and image_result["label"] in ("real", "fake")
    assert video_result["kind"] == "video" and video_result["n_frames"] == 2  # the checkpoint's protocol
    overlay_png = Path(image_result["overlay"])
    from mfrn.io_utils import read_image_rgb

    assert read_image_rgb(overlay_png).shape == np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(photo)).shape[:2] + (3,)
    with av.open(str(video_result["overlay"])) as container:
        frames = [f for f in container.decode(video=0)]
    assert len(frames) == 2
    rows = _rows(tmp_path / "out" / "results.csv")
    assert any(r["label"].startswith("skipped") for r in rows)
    assert "empty.mp4" in str(summary)


def test_detector_python_api_on_an_array(tiny_checkpoint, astronaut):
    from mfrn.inference import Detector

    detector = Detector.from_checkpoint(tiny_checkpoint, device="cpu")
    result = detector(astronaut)
    assert result.kind == "image" and not result.no_face and len(result.frames[0].faces) == 1
    face = result.frames[0].faces[0]
    assert face.region_map is not None and face.region_map.shape == (64, 64)
    assert 0.0 <= face.score <= 1.0 and result.score == pytest.approx(face.score)
    blank = detector(np.full((200, 200, 3), 127, np.uint8))
    assert blank.no_face and blank.score == 0.5  # no face: the protocol's 0.5, flagged


def test_wrong_checkpoints_get_clear_errors(tmp_path, tiny_checkpoint):
    import torch

    from mfrn.inference import Detector
    from mfrn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    state = load_checkpoint(tiny_checkpoint)
    state["config"]["model"]["use_noise_stream"] = False  # another model than the weights
    other = tmp_path / "other.pt"
    save_checkpoint(other, state)
    with pytest.raises(CheckpointError, match="does not match"):
        Detector.from_checkpoint(other, device="cpu")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        Detector.from_checkpoint(truncated, device="cpu")
    torch.save({"format": "mfrn-checkpoint-v1"}, tmp_path / "hollow.pt")
    with pytest.raises(CheckpointError, match="no 'model'"):
        Detector.from_checkpoint(tmp_path / "hollow.pt", device="cpu")


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
    for level in range(1, 6):
        assert (out / "ffpp" / f"jpeg_level{level}" / "videos.csv").is_file()
    assert (out / "ffpp" / "auc_vs_jpeg.png").stat().st_size > 1000


def test_eval_under_torchrun_splits_videos_and_merges(ffpp_tree, tiny_checkpoint, tmp_path):
    """Two CPU processes (gloo) take every other video; rank 0 merges the part files and writes the tables."""
    import subprocess
    import sys

    root, records, _ = ffpp_tree
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29521",
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
