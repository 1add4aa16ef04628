"""`mfrn detect` on real media: results as they are made, resume, no_face, damaged files, exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest

from mfrn.checkpoint import Calibration, set_calibration
from mfrn.cli import EXIT_INTERRUPTED, EXIT_NOTHING_SUCCEEDED, EXIT_USAGE, main
from mfrn.detect import run_detect

pytestmark = pytest.mark.slow


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _json(out: Path) -> dict:
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def _detector(checkpoint, analyzer=None, batch_size=None):
    from mfrn.inference import Detector

    detector = Detector.from_checkpoint(checkpoint, device="cpu", analyzer=analyzer, warn_uncalibrated=False)
    if batch_size:
        detector.protocol.batch_size = batch_size
    return detector


def test_detect_writes_json_csv_and_overlays(sample_media, tiny_checkpoint, tmp_path):
    from mfrn.io_utils import read_image_rgb

    photo, video = sample_media.single_face_images[0], sample_media.single_face_video
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    summary = run_detect([photo, video, empty], tiny_checkpoint, tmp_path / "out", device="cpu", progress=False)
    data = _json(tmp_path / "out")
    assert data["schema"] == "mfrn-detect-results" and data["complete"] is True
    assert [Path(r["path"]).name for r in data["results"]] == [photo.name, video.name]
    assert data["skipped"] and data["skipped"][0]["path"].endswith("empty.mp4")
    assert data["skipped"][0]["error"] == "empty file (0 bytes)"
    image_result, video_result = data["results"]
    assert image_result["schema_version"] == 2 and image_result["status"] == "ok"
    assert image_result["kind"] == "image" and len(image_result["frames"][0]["faces"]) == 1
    assert 0.0 <= image_result["score"] <= 1.0 and image_result["label"] in ("real", "fake")
    assert video_result["kind"] == "video" and video_result["n_frames"] == 2  # the checkpoint's protocol
    assert read_image_rgb(Path(image_result["overlay"])).shape == read_image_rgb(photo).shape
    with av.open(str(video_result["overlay"])) as container:
        assert len(list(container.decode(video=0))) == 2
    rows = _rows(tmp_path / "out" / "results.csv")
    assert any(r["status"] == "failed" and r["path"].endswith("empty.mp4") for r in rows)
    assert "empty.mp4: skipped (empty file (0 bytes))" in str(summary)
    assert summary.n_ok == 2


def test_detect_cli_records_a_missing_input_and_goes_on(sample_media, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "detect"
    photo = sample_media.single_face_images[0]
    assert main(["detect", str(photo), str(tmp_path / "missing.mp4"), "-m", str(tiny_checkpoint),
                 "-o", str(out), "--device", "cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "missing.mp4: skipped" in printed and photo.name in printed
    assert "stores no calibration: verdicts use the uncalibrated threshold 0.5" in printed  # said once
    assert printed.count("stores no calibration") == 1
    data = _json(out)
    assert len(data["results"]) == 1 and Path(data["results"][0]["overlay"]).is_file()


def test_no_face_is_reported_as_no_face_everywhere(sample_media, tiny_checkpoint, tmp_path, capsys):
    """Issue 10 item 1: a faceless image was `FAKE (P(fake) = 0.500, no face found)` on the console and in the CSV."""
    out = tmp_path / "out"
    landscape, face = sample_media.no_face_images[0], sample_media.single_face_images[0]
    assert main(["detect", str(landscape), str(face), "-m", str(tiny_checkpoint), "-o", str(out), "--device", "cpu",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith(str(landscape)))
    assert "NO FACE" in line and "FAKE" not in line and "0.500" not in line
    record = next(r for r in _json(out)["results"] if r["path"] == str(landscape))
    assert record["label"] == "no_face" and record["score"] is None and record["no_face"] is True
    assert _json(out)["counts"]["no_face"] == 1
    row = next(r for r in _rows(out / "results.csv") if r["path"] == str(landscape) and r["face"] == "")
    assert row["label"] == "no_face" and row["no_face"] == "1" and row["score"] == ""
    assert "1 without a face" in printed


def test_results_are_streamed_and_a_rerun_resumes(sample_media, tiny_checkpoint, tmp_path):
    """Issue 10 item 7: results were written only at the end; a rerun scored everything again."""
    out = tmp_path / "out"
    photos = sample_media.single_face_images[:2]
    first = run_detect(photos, tiny_checkpoint, out, device="cpu", overlays=False, progress=False)
    assert first.n_ok == 2 and first.n_resumed == 0
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["header"]["checkpoint_sha256"]
    again = run_detect([*photos, sample_media.single_face_images[2]], tiny_checkpoint, out, device="cpu",
                       overlays=False, progress=False)
    assert again.n_resumed == 2 and again.n_ok == 3
    assert len((out / "results.jsonl").read_text(encoding="utf-8").splitlines()) == 4  # only the new one scored
    assert len(_json(out)["results"]) == 3


class _InterruptingAnalyzer:
    """The real face analyzer, with a Ctrl-C arriving while the third file is being read."""

    def __init__(self, analyzer, after: int) -> None:
        self.analyzer, self.after, self.calls = analyzer, after, 0

    def __call__(self, image):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.analyzer(image)


def test_ctrl_c_keeps_what_was_done_and_a_rerun_finishes(sample_media, tiny_checkpoint, face_analyzer, tmp_path):
    out = tmp_path / "out"
    photos = sample_media.single_face_images[:4]
    interrupted = _detector(tiny_checkpoint, _InterruptingAnalyzer(face_analyzer, after=2), batch_size=1)
    summary = run_detect(photos, tiny_checkpoint, out, detector=interrupted, overlays=False, progress=False)
    assert not summary.complete and summary.n_ok == 2 and "interrupted" in str(summary)
    data = _json(out)
    assert data["complete"] is False and [r["path"] for r in data["results"]] == [str(p) for p in photos[:2]]
    summary = run_detect(photos, tiny_checkpoint, out, detector=_detector(tiny_checkpoint), overlays=False,
                         progress=False)
    assert summary.complete and summary.n_resumed == 2 and summary.n_ok == 4 and _json(out)["complete"] is True


def test_ctrl_c_exit_code(sample_media, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import mfrn.detect

    def interrupted(*args, **kwargs):
        summary = mfrn.detect.DetectSummary(tmp_path)
        summary.complete = False
        return summary

    monkeypatch.setattr(mfrn.detect, "run_detect", interrupted)
    assert main(["detect", str(sample_media.single_face_images[0]), "-m", str(tiny_checkpoint),
                 "-o", str(tmp_path / "o")]) == EXIT_INTERRUPTED


def test_a_partly_readable_video_is_scored_on_what_decodes(sample_media, media_maker, tiny_checkpoint, tmp_path, capsys):
    """Issue 10 item 8: detect skipped the whole file."""
    damaged = media_maker.truncated_copy(sample_media.single_face_video_long, 0.15)
    out = tmp_path / "out"
    assert main(["detect", str(damaged), "-m", str(tiny_checkpoint), "-o", str(out), "--device", "cpu",
                 "--no-progress", "--no-overlay"]) == 0
    record = _json(out)["results"][0]
    assert record["status"] == "ok" and record["n_frames"] >= 1 and record["label"] in ("real", "fake")
    assert record["warning"].startswith("partly readable")
    assert "partly readable" in capsys.readouterr().out
    row = next(r for r in _rows(out / "results.csv") if r["face"] == "")
    assert row["note"].startswith("partly readable")


def test_nothing_succeeded_exits_3_and_an_empty_folder_says_no_media(tiny_checkpoint, tmp_path, capsys):
    """Issue 10 item 11: detect exited 0 when every input failed; a folder named x.mp4 was a silent 0."""
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video\n", encoding="utf-8")
    folder = tmp_path / "x.mp4"
    folder.mkdir()
    code = main(["detect", str(broken), str(folder), "-m", str(tiny_checkpoint), "-o", str(tmp_path / "out"),
                 "--device", "cpu", "--no-progress"])
    captured = capsys.readouterr()
    assert code == EXIT_NOTHING_SUCCEEDED
    assert f"no media found in {folder}" in captured.out
    assert "error: no input could be scored (2 failed)" in captured.err


def test_output_path_that_is_a_file_is_one_line(sample_media, tiny_checkpoint, tmp_path, capsys):
    """Issue 10 item 10: a traceback."""
    taken = tmp_path / "taken"
    taken.write_text("x", encoding="utf-8")
    assert main(["detect", str(sample_media.single_face_images[0]), "-m", str(tiny_checkpoint),
                 "-o", str(taken)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists and is not a folder" in err


def test_cuda_without_a_gpu_is_one_line(sample_media, tiny_checkpoint, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["detect", str(sample_media.single_face_images[0]), "-m", str(tiny_checkpoint),
                 "-o", str(tmp_path / "o"), "--device", "cuda"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA GPU is visible" in err


def test_detect_uses_the_stored_threshold_and_prints_its_rule(sample_media, tiny_checkpoint, tmp_path, capsys):
    photo = sample_media.single_face_images[0]
    score = run_detect([photo], tiny_checkpoint, tmp_path / "plain", device="cpu", overlays=False,
                       progress=False).results[0]["score"]
    checkpoint = tmp_path / "calibrated.pt"
    checkpoint.write_bytes(tiny_checkpoint.read_bytes())
    set_calibration(checkpoint, Calibration(min(1.0, score + 0.05), "EER point on the validation split (8 + 8 faces)",
                                            pixel_threshold=0.3, pixel_rule="best IoU on validation fakes"))
    capsys.readouterr()
    assert main(["detect", str(photo), "-m", str(checkpoint), "-o", str(tmp_path / "cal"), "--device", "cpu",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "EER point on the validation split (8 + 8 faces)" in printed and "stores no calibration" not in printed
    record = _json(tmp_path / "cal")["results"][0]
    assert record["label"] == "real" and record["threshold"] == pytest.approx(score + 0.05)
    assert _json(tmp_path / "cal")["calibration"]["pixel_threshold"] == 0.3
    # a calibration counted on videos keeps a threshold of its own for single images: a photo uses it
    set_calibration(checkpoint, Calibration(max(0.0, score - 0.05), "at most 5% of 4 validation real videos",
                                            image_threshold=min(1.0, score + 0.05),
                                            image_rule="at most 5% of 32 validation real faces"))
    result = _detector(checkpoint).detect_path(photo)
    assert result.label == "real" and result.threshold == pytest.approx(score + 0.05)
    assert result.threshold_rule == "at most 5% of 32 validation real faces"


def test_a_rerun_with_another_checkpoint_is_refused(sample_media, tiny_checkpoint, tmp_path, capsys):
    photo = sample_media.single_face_images[0]
    out = tmp_path / "out"
    run_detect([photo], tiny_checkpoint, out, device="cpu", overlays=False, progress=False)
    other = tmp_path / "other.pt"
    other.write_bytes(tiny_checkpoint.read_bytes())
    set_calibration(other, Calibration(0.3, "r"))
    assert main(["detect", str(photo), "-m", str(other), "-o", str(out), "--device", "cpu"]) == EXIT_USAGE
    assert "another checkpoint" in capsys.readouterr().err


def test_the_api_and_detect_write_the_same_schema(sample_media, tiny_checkpoint, tmp_path):
    photo = sample_media.single_face_images[0]
    record = run_detect([photo], tiny_checkpoint, tmp_path / "o", device="cpu", overlays=False,
                        progress=False).results[0]
    api = _detector(tiny_checkpoint).detect_path(photo).to_json()
    assert set(api) == set(record) and api["score"] == pytest.approx(record["score"])
    assert api["frames"][0]["faces"][0]["box"] == record["frames"][0]["faces"][0]["box"]
    assert np.isfinite(api["score"])


def test_a_symlink_loop_among_the_inputs_is_a_failed_item(sample_media, tiny_checkpoint, tmp_path, capsys):
    """Issue 10 item 6: a symbolic link loop in an input folder raised a traceback before any file was read."""
    import shutil

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(sample_media.single_face_images[0], folder / "a_face.jpg")
    (folder / "b_loop.jpg").symlink_to("b_loop.jpg")
    out = tmp_path / "out"
    assert main(["detect", str(folder), "-m", str(tiny_checkpoint), "-o", str(out), "--device", "cpu",
                 "--no-progress", "--no-overlay"]) == 0
    results = _json(out)
    assert [Path(r["path"]).name for r in results["results"] if r["status"] == "ok"] == ["a_face.jpg"]
    loop = next(r for r in results["skipped"] if Path(r["path"]).name == "b_loop.jpg")
    assert loop["status"] == "failed" and "symbolic link loop" in loop["error"]
