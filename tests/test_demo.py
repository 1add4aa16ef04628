"""`mfrn demo --quick`: the README's main job, end to end on real sample media (shortened budgets)."""

import json

import pytest

from mfrn.cli import main

pytestmark = pytest.mark.slow


def test_quick_demo_writes_a_complete_report(sample_media, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    for step in range(1, 9):
        assert f"[{step}/8]" in printed
    assert "RBI fakes: AUC" in printed and "SBI fakes: AUC" in printed
    report = (out / "report.md").read_text(encoding="utf-8")
    for section in ("Real media and faces", "Built-in generator", "Training samples", "Training (tiny MFRN)",
                    "Test (held-out media)", "mfrn detect"):
        assert section in report
    assert "commit" in report and "CPU" in report  # how the numbers were measured
    assert len(list((out / "previews").glob("*.png"))) == 4
    results = json.loads((out / "detect" / "results.json").read_text(encoding="utf-8"))
    assert results["results"] and 0.0 <= results["results"][0]["score"] <= 1.0
    assert "<img" in (out / "report.html").read_text(encoding="utf-8")
    assert (out / "run" / "best.pt").is_file() and (out / "run" / "selected.pt").is_file()
