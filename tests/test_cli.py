"""The `mfrn` command's shared plumbing: one-line errors, exit codes, options checked before anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mfrn.cli import EXIT_NOTHING_SUCCEEDED, EXIT_OK, EXIT_USAGE, main


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(err: str, *parts: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err  # no traceback
    for part in parts:
        assert part in err, err


# --- prepare ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("option, message", [
    (["--frames", "0"], "n_frames (--frames) must be a whole number >= 1, got 0"),
    (["--frames", "-4"], "got -4"),
    (["--detector", "dlibb"], "unknown face detector 'dlibb'; known: dlib, mtcnn, retinaface"),
    (["--landmarker", "dlib68"], "unknown landmarker 'dlib68'; known: dlib, dlib81"),
    (["--max-pixels", "0"], "max_pixels (--max-pixels) must be a whole number >= 1"),
    (["--detector-option", "upsample=-2"], "upsample must be 'auto' or an integer >= 0"),
    (["--detector", "mtcnn", "--detect-size", "320"], "--detect-size: the mtcnn detector has no working size"),
])
def test_prepare_refuses_bad_options_in_one_line_and_writes_nothing(capsys, tmp_path, sample_media, option, message):
    out = tmp_path / "out"
    code, _, err = _run(capsys, "prepare", sample_media.single_face_images[0], "-o", out, "--no-progress", *option)
    assert code == EXIT_USAGE
    _one_line_error(err, message)
    assert not out.exists(), "a bad option must not leave a prepare.json that blocks the corrected rerun"


def test_output_that_is_a_file_is_one_line_for_every_command(capsys, tmp_path, prepared_faces, sample_media):
    afile = tmp_path / "results.txt"
    afile.write_text("not a folder\n", encoding="utf-8")
    commands = [
        ["prepare", sample_media.single_face_images[0], "-o", afile, "--no-progress"],
        ["synth", "preview", prepared_faces, "-o", afile],
        ["synth", "cache", prepared_faces, "-o", afile, "--device", "cpu",
         "--set", "rbi.reconstructor=builtin", "--set", "rbi.reconstructor_kwargs={checkpoint: none.pt}"],
        ["generator", "train", prepared_faces, "-o", afile / "gen.pt", "--steps", "1", "--device", "cpu"],
        ["train", "--set", f"data.prepared={prepared_faces}", "--set", f"train.out_dir={afile}",
         "--set", "train.device=cpu"],
    ]
    for command in commands:
        code, _, err = _run(capsys, *command)
        assert code == EXIT_USAGE, command
        _one_line_error(err, str(afile))
    assert afile.read_text(encoding="utf-8") == "not a folder\n"


def test_cuda_without_a_gpu_is_one_line_for_every_command(capsys, tmp_path, prepared_faces, sample_media):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: --device cuda is valid here")
    commands = [
        ["prepare", sample_media.single_face_images[0], "-o", tmp_path / "p", "--device", "cuda", "--no-progress"],
        ["train", "--set", f"data.prepared={prepared_faces}", "--set", f"train.out_dir={tmp_path / 'run'}",
         "--set", "train.device=cuda"],
        ["synth", "cache", prepared_faces, "-o", tmp_path / "cache", "--device", "cuda"],
        ["generator", "train", prepared_faces, "-o", tmp_path / "gen.pt", "--device", "cuda"],
    ]
    for command in commands:
        code, _, err = _run(capsys, *command)
        assert code == EXIT_USAGE, command
        _one_line_error(err, "device 'cuda': no CUDA GPU is visible on this machine; use --device cpu")
    assert not any(tmp_path.iterdir())


def test_prepare_says_no_media_found_and_exits_non_zero(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    folder_named_like_a_video = tmp_path / "x.mp4"
    folder_named_like_a_video.mkdir()
    code, _, err = _run(capsys, "prepare", empty, folder_named_like_a_video, "-o", tmp_path / "out", "--no-progress")
    assert code == EXIT_NOTHING_SUCCEEDED
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("error: no media found in ") for line in lines), err
    assert "a folder named like a video file" in lines[1]
    assert not (tmp_path / "out").exists()


def test_prepare_exits_non_zero_when_every_input_failed_and_zero_when_one_succeeded(capsys, tmp_path, sample_media,
                                                                                    media_maker):
    broken = [media_maker.zero_byte(), media_maker.text_as()]
    code, out, _ = _run(capsys, "prepare", *broken, "-o", tmp_path / "out", "--no-progress", "--frames", "2")
    assert code == EXIT_NOTHING_SUCCEEDED and "2 failed" in out
    code, out, _ = _run(capsys, "prepare", *broken, sample_media.single_face_images[0], "-o", tmp_path / "out",
                        "--no-progress", "--frames", "2")
    assert code == EXIT_OK and "1 ok" in out and "2 already done" in out


def test_prepare_max_pixels_and_detect_size_options(capsys, tmp_path, sample_media):
    photo = sample_media.single_face_images[0]
    code, out, _ = _run(capsys, "prepare", photo, "-o", tmp_path / "small", "--no-progress", "--max-pixels", "1000")
    assert code == EXIT_NOTHING_SUCCEEDED and "max_pixels=1,000" in out
    code, _, _ = _run(capsys, "prepare", photo, "-o", tmp_path / "sized", "--no-progress", "--detect-size", "320",
                      "--detector-option", "search_side=1280", "--max-pixels", "50000000")
    assert code == EXIT_OK
    settings = json.loads((tmp_path / "sized" / "prepare.json").read_text(encoding="utf-8"))["config"]
    assert settings["detector_kwargs"] == {"search_side": 1280, "max_side": 320} and settings["max_pixels"] == 50_000_000


# --- synth, generator -------------------------------------------------------------------------------


def test_synth_preview_with_the_default_config_shows_the_sbi_columns(capsys, tmp_path, prepared_faces):
    """The default config's built-in generator has no checkpoint: the preview once stopped there."""
    from mfrn.io_utils import read_image_rgb

    code, out, err = _run(capsys, "synth", "preview", prepared_faces, "-o", tmp_path / "previews", "-n", "2")
    assert code == EXIT_OK, err
    hint = [line for line in out.splitlines() if "RBI" in line]
    assert len(hint) == 1 and "rbi.reconstructor_kwargs={checkpoint: gen.pt}" in hint[0] and "generator train" in hint[0]
    grids = sorted((tmp_path / "previews").glob("preview_*.png"))
    assert len(grids) == 2 and read_image_rgb(grids[0]).shape[1] == 4 * 256  # real | SBI | region | boundary


def test_stages_that_need_faces_say_what_is_missing_and_what_to_run(capsys, tmp_path):
    from mfrn.data.manifest import STATUS_NO_FACE, Manifest, MediaRecord

    empty = tmp_path / "empty"
    empty.mkdir()
    faceless = tmp_path / "faceless"
    Manifest(faceless).write(MediaRecord(key="media/landscape", source="landscape.jpg", status=STATUS_NO_FACE,
                                         reason="no face in 1 sampled frames", kind="image"))
    for command in (["synth", "preview", "{p}", "-o", tmp_path / "previews"],
                    ["generator", "train", "{p}", "-o", tmp_path / "gen.pt", "--device", "cpu"],
                    ["train", "--set", "data.prepared={p}", "--set", f"train.out_dir={tmp_path / 'run'}",
                     "--set", "train.device=cpu"]):
        for prepared, expected in ((empty, "no prepared media here (no records/); run `mfrn prepare"),
                                   (faceless, "no prepared faces: 1 media prepared, 0 with faces, 1 without a face")):
            argv = [str(a).replace("{p}", str(prepared)) for a in command]
            code, _, err = _run(capsys, *argv)
            assert code == EXIT_USAGE, argv
            _one_line_error(err, expected)
            assert "val_fraction" not in err


def test_train_refuses_to_resume_nothing_and_to_overwrite_an_earlier_run(capsys, tmp_path, prepared_faces):
    """`train --resume` without last.pt once started from scratch and replaced an existing best.pt."""
    run = tmp_path / "run"
    run.mkdir()
    best = run / "best.pt"
    best.write_bytes(b"the 25-epoch model")
    base = ["train", "--no-progress", "--set", f"data.prepared={prepared_faces}", "--set", f"train.out_dir={run}",
            "--set", "train.device=cpu"]
    code, _, err = _run(capsys, *base, "--resume")
    assert code == EXIT_USAGE
    _one_line_error(err, "nothing to resume", "last.pt does not exist", "only best.pt")
    code, _, err = _run(capsys, *base)
    assert code == EXIT_USAGE
    _one_line_error(err, "already holds the checkpoints of an earlier run (best.pt)", "--resume", "--overwrite")
    code, _, err = _run(capsys, *base, "--resume", "--overwrite")
    assert code == EXIT_USAGE and "give one of them" in err
    assert best.read_bytes() == b"the 25-epoch model"
