"""benchmarks/gpu_check.py: its CPU form runs end to end (every section, JSON + Markdown), a full run
without CUDA says so and exits 0, and the synthetic dlib predictor has the real model's structure."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.benchmarks import BENCHMARKS, script_module

SCRIPT = BENCHMARKS / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    """The script as a module (it is run as a script everywhere else)."""
    with script_module("gpu_check") as module:
        yield module


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("OUT", None)
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_reduced_cpu_run_writes_every_section(tmp_path, gpu_check):
    # budgets scaled up: on a loaded CI machine the run must finish its (tiny) work, not be cut short
    completed = _run("--reduced", "--out", str(tmp_path), "--budget-scale", "10")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["status"] == "complete" and report["reduced"] is True
    assert set(report["sections"]) == set(gpu_check.SECTIONS)
    assert all(s["status"] == "ok" for s in report["sections"].values()), {
        n: s.get("error") for n, s in report["sections"].items()}
    result = {name: s["result"] for name, s in report["sections"].items()}

    assert result["inputs"]["faces"] == {"train": 4, "val": 2} and "astronaut" in result["inputs"]["faces_origin"]
    assert result["inputs"]["rbi_cache"]["reconstructions"] == 6 * 4

    rows = result["training"]["rows"]
    combos = gpu_check.Plan.cpu().combos()
    assert {(r["model"], r["precision"], r["channels_last"]) for r in rows} == {
        (m, p, cl) for p, cl in combos for m in ("baseline", "mfrn")}
    assert all(r["images_per_s"] > 0 and r["steps_timed"] >= 1 for r in rows)
    assert {(r["precision"], r["channels_last"]) for r in result["training"]["ratios"]} == set(combos)
    assert result["training"]["target"]["ratio"] is not None

    loader = result["data_pipeline"]["loader"]
    assert {r["pipeline"] for r in loader} == {"rbi_mix", "sbi", "rbi_mix, cv2 1 thread/worker"}
    assert all(r["images_per_s"] > 0 for r in loader)
    assert result["data_pipeline"]["margins"] and result["data_pipeline"]["end_to_end"]["images_per_s"] > 0

    paths = {r["path"]: r for r in result["evaluation"]["paths"]}
    assert set(paths) == {"dlib", "retinaface", "mtcnn"}
    assert all(r["videos"] >= 1 and r["videos_per_min"] > 0 for r in paths.values())
    assert "RANDOM weights" in paths["retinaface"]["how"]
    assert result["evaluation"]["model_only"]["score_crops_fp32_images_per_s"] > 0

    ddp = result["ddp"]
    assert ddp["passed"] and ddp["worker"]["backend"] == "gloo" and ddp["worker"]["all_reduce"] == 1.0
    assert ddp["worker"]["train_loop"]["global_step"] >= 1 and ddp["worker"]["train_loop"]["best_checkpoint"]

    assert result["max_batch"]["largest_fitting_pairs"] == 4
    assert len(result["projection"]["training"]) == len(rows)
    assert all(r["hours_per_100_epochs"] > 0 for r in result["projection"]["training"])

    markdown = (tmp_path / "gpu_check.md").read_text()
    for heading in ("| model | precision |", "| pipeline | workers |", "| eval path |", "DDP smoke (gloo",
                    "Largest batch", "| 100 FF++ epochs |"):
        assert heading in markdown, heading
    assert "**PASS**" in markdown and "reduced form" in markdown
    # the Markdown is a pure function of the JSON
    rendered = _run("render", str(tmp_path / "gpu_check.json"), timeout=120)
    assert rendered.returncode == 0 and rendered.stdout == markdown


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_full_run_without_cuda_says_so_and_exits_0(tmp_path, gpu_check, capsys):
    assert gpu_check.main(["--out", str(tmp_path)]) == 0
    assert "no CUDA device" in capsys.readouterr().out
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["status"] == "no_cuda" and report["sections"] == {}
    assert "no_cuda" in (tmp_path / "gpu_check.md").read_text()


def test_unknown_section_is_a_usage_error(tmp_path, gpu_check, capsys):
    assert gpu_check.main(["--reduced", "--out", str(tmp_path), "--sections", "training,warp"]) == 2
    assert "warp" in capsys.readouterr().err


def test_failed_section_is_reported_in_the_markdown(gpu_check):
    data = {"status": "complete, 1 section(s) failed: evaluation", "reduced": False, "notes": ["a note"],
            "sections": {"environment": {"status": "ok", "result": {"gpu": "NVIDIA H200"}},
                         "evaluation": {"status": "failed", "error": "ImportError: No module named 'av'", "result": {
                             "paths": [{"path": "dlib", "error": "ImportError: No module named 'av'"}]}}}}
    markdown = gpu_check.render_markdown(data)
    assert "NVIDIA H200" in markdown and "| dlib | failed |" in markdown
    assert "- evaluation: ImportError: No module named 'av'" in markdown and "- a note" in markdown


def test_synthetic_dlib_predictor_loads_and_has_the_structure_asked_for(tmp_path, gpu_check, astronaut):
    import dlib

    small = {**gpu_check.DLIB68_STRUCTURE, "cascades": 2, "trees_per_cascade": 5, "feature_pool_size": 40}
    path = gpu_check.write_synthetic_dlib_predictor(tmp_path / "small.dat", small)
    assert gpu_check.read_dlib_structure(path) == small
    predictor = dlib.shape_predictor(str(path))  # dlib's own reader accepts the file
    box = dlib.rectangle(175, 76, 265, 166)
    points = np.array([[p.x, p.y] for p in predictor(astronaut, box).parts()])
    assert points.shape == (68, 2)
    # zero leaf updates: the mean face, placed in the box
    assert (points[:, 0] >= 170).all() and (points[:, 0] <= 270).all() and (points[:, 1] >= 70).all()


def test_the_real_predictor_has_the_recorded_structure(gpu_check):
    from mfrn.faces.backends.dlib_backend import find_model_file

    quick = gpu_check.read_dlib_structure(find_model_file("shape_predictor_68_face_landmarks.dat"), full=False)
    expected = {k: v for k, v in gpu_check.DLIB68_STRUCTURE.items() if k != "feature_pool_size"}
    assert {k: v for k, v in quick.items() if k != "feature_pool_size"} == expected


def test_dlib_float_encoding_matches_the_real_file(gpu_check):
    """The first number of dlib's model, 0x4d38f1 x 2**-29, encodes to the bytes dlib wrote."""
    from mfrn.faces.backends.dlib_backend import find_model_file

    head = find_model_file("shape_predictor_68_face_landmarks.dat").read_bytes()[:12]
    reader = gpu_check._DlibReader(head)
    assert reader.int() == 1 and reader.int() == -136 and reader.int() == -1
    value = reader.float()
    assert gpu_check._dlib_float(value) == head[6:12]
    assert gpu_check._dlib_int(0) == b"\x01\x00" and gpu_check._dlib_int(-136) == b"\x81\x88"
