"""benchmarks/bench_demo_seeds.py: a finished demo folder is read into one row (validation from the run's history,
test AUCs from the sweep, verdicts from detect), and the table gives mean and sample std over the rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.benchmarks import script_module


@pytest.fixture(scope="module")
def seeds():
    with script_module("bench_demo_seeds") as module:
        yield module


def _demo_folder(root: Path, seed: int, clean: float, crf40: float, real_label: str) -> Path:
    """What a finished demo leaves behind, as far as the benchmark reads it."""
    (root / "run").mkdir(parents=True)
    history = [{"epoch": e, "val_auc": 0.5 + 0.05 * e, "val_auc_crf": 0.4 + 0.05 * e} for e in range(1, 6)]
    torch.save({"history": history, "config": {"train": {"seed": seed}}}, root / "run" / "last.pt")
    (root / "eval" / "ffpp").mkdir(parents=True)
    levels = [{"value": None, "video_auc": clean}, {"value": 23.0, "video_auc": 0.5}, {"value": 40.0, "video_auc": crf40}]
    (root / "eval" / "ffpp" / "robustness_h264.json").write_text(json.dumps({"levels": levels}))
    (root / "detect").mkdir()
    results = [{"path": "/x/original/000.mp4", "label": real_label, "score": 0.2},
               {"path": "/x/manipulated/000_004.mp4", "label": "fake", "score": 0.9}]
    (root / "detect" / "results.json").write_text(json.dumps({"threshold": 0.6, "results": results}))
    return root


def test_a_demo_folder_becomes_one_row_and_the_table_summarises_them(seeds, tmp_path, capsys):
    a = seeds.summarise(_demo_folder(tmp_path / "a", 0, 0.9, 0.7, "real"))
    assert a.seed == 0 and a.val_auc_last3 == pytest.approx(0.7) and a.val_auc_crf_last3 == pytest.approx(0.6)
    assert (a.test_video_auc, a.test_video_auc_crf40, a.threshold) == (0.9, 0.7, 0.6)
    assert (a.real_score, a.fake_score, a.verdicts_right) == (0.2, 0.9, True)
    b = seeds.summarise(_demo_folder(tmp_path / "b", 1, 1.0, 0.8, "fake"))
    assert not b.verdicts_right  # the held-out real called fake
    seeds.print_table([a, b])
    out = capsys.readouterr().out
    assert "test 0.950 +- 0.071" in out and "CRF 40 0.750 +- 0.071" in out and "right in 1 of 2" in out


def test_it_refuses_a_folder_that_is_not_a_finished_demo(seeds, tmp_path):
    with pytest.raises(FileNotFoundError, match="needs a finished demo folder"):
        seeds.run_seed(tmp_path / "nothing", tmp_path / "work", 1, [])
    assert not (tmp_path / "work").exists()  # nothing made before the check


def test_the_ensemble_score_is_the_auc_of_the_mean_logits(seeds):
    labels = [0, 0, 1, 1]
    # each member ranks one fake below a real; their mean logits rank every fake above every real
    a = [[0.0, 0.0], [0.0, 3.0], [0.0, 4.0], [0.0, 1.0]]
    b = [[0.0, 3.0], [0.0, 0.0], [0.0, 1.0], [0.0, 4.0]]
    assert seeds.mean_logit_auc([a], labels) == pytest.approx(0.75)
    assert seeds.mean_logit_auc([b], labels) == pytest.approx(0.75)
    assert seeds.mean_logit_auc([a, b], labels) == pytest.approx(1.0)
    # the score is the fake-minus-real logit, not the fake logit alone
    assert seeds.mean_logit_auc([[[5.0, 6.0], [0.0, 0.5], [0.0, 2.0], [0.0, 3.0]]], labels) == pytest.approx(1.0)


def test_the_ensemble_mode_refuses_a_folder_without_a_selected_checkpoint(seeds, tmp_path):
    with pytest.raises(FileNotFoundError, match="--ensemble needs finished demo folders"):
        seeds.ensemble_validation([tmp_path / "nothing"])
