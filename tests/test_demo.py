"""`mfrn demo --quick`: the README's main job, end to end on a few real clips (shortened budgets)."""

import json

import pytest

from mfrn.cli import main

pytestmark = pytest.mark.slow


def test_quick_demo_trains_calibrates_judges_real_manipulations_and_reports(sample_media, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    for step in range(1, 10):
        assert f"[{step}/9]" in printed
    assert "RBI fakes: AUC" in printed and "SBI fakes: AUC" in printed
    assert "calibration: verdict threshold" in printed and "val_fpr" in printed  # chosen on validation, rule printed
    report = (out / "report.md").read_text(encoding="utf-8")
    for section in ("## Results", "1. Data", "Built-in generator", "Training samples", "4. Training", "Calibration",
                    "5. Real manipulations", "6. Heavy compression", "7. Verdicts", "8. How this was measured"):
        assert section in report, section
    assert "commit" in report and "CPU" in report and "mfrn eval -m" in report  # how the numbers were measured
    assert "video AUC, real manipulations (2 real + 2 face-swap test videos)" in report  # one test pair, both ways
    assert "after H.264 CRF 40" in report and "Localisation against the swap masks" in report
    assert "val AUC at H.264 CRF 40" in report  # the compression signal on validation data, per epoch
    assert len(list((out / "previews").glob("*.png"))) == 4
    results = json.loads((out / "detect" / "results.json").read_text(encoding="utf-8"))
    names = {r["path"].rsplit("/", 1)[-1]: r for r in results["results"]}
    fake_name = next(name for name in names if name != "000.mp4")
    assert set(names) == {"000.mp4", fake_name} and fake_name.startswith("000_")  # the swap into the held-out clip
    assert all(r["threshold_rule"].startswith("val_fpr") for r in names.values())  # the stored threshold decides
    assert (out / "detect" / f"overlay_{fake_name[:-4]}.png").is_file() and (out / "eval" / "ffpp" / "auc_vs_h264.png").is_file()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("<img") >= 6 and "<table" in page
    assert (out / "run" / "selected.pt").is_file()
    generator = json.loads((out / "generator_report.json").read_text(encoding="utf-8"))
    train_ids = {clip for pair in json.loads((out / "benchmark" / "splits" / "train.json").read_text()) for clip in pair}
    assert generator["faces"] and all(any(f"_original_raw_{clip}-" in f for clip in train_ids)
                                      for f in generator["faces"])  # the generator saw training faces only


def test_demo_overrides_reach_its_config_and_a_bad_one_is_refused_before_any_work(tmp_path, capsys):
    from mfrn.demo import demo_config

    config = demo_config(tmp_path, tmp_path / "prepared", tmp_path / "g.pt", quick=False,
                         extra=["train.sam=false", "calibration.unit=face"])
    assert config.train.sam is False and config.calibration.unit == "face" and config.train.epochs == 10
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--set", "train.no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    assert not (out / "benchmark").exists()


def test_the_report_says_when_the_time_cap_stopped_the_generator_early(tmp_path, capsys):
    from types import SimpleNamespace

    from mfrn.demo import _generator_cap_lines

    assert _generator_cap_lines(SimpleNamespace(steps=160), 160) == []
    line = _generator_cap_lines(SimpleNamespace(steps=97), 160)[0]
    assert "after 97 of its 160 steps" in line and "differ" in line
    assert main(["demo", "-o", str(tmp_path / "d"), "--generator-steps", "0"]) == 2
    assert "--generator-steps must be >= 1" in capsys.readouterr().err
