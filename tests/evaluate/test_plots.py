from __future__ import annotations

import pytest

from mfrn.evaluate.plots import plot_roc
from mfrn.evaluate.scores import VideoResult
from mfrn.evaluate.tables import summarize


def _summary(rng, name):
    results = [VideoResult(f"{name}/{m}/{i}", name, m, int(m != "real"), float(rng.random() + 0.3 * (m != "real")),
                           1, 1, frame_scores=[0.5])
               for m in ("real", "A", "B") for i in range(10)]
    return summarize(results, name, bootstrap=0)


def test_roc_png_for_one_and_several_summaries(tmp_path, rng):
    one = plot_roc(_summary(rng, "ffpp"), tmp_path / "roc_ffpp.png")
    several = plot_roc({"cdf": _summary(rng, "cdf"), "dfdc": _summary(rng, "dfdc")}, tmp_path / "x" / "roc.png",
                       level="frame")
    for path in (one, several):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="level"):
        plot_roc(_summary(rng, "a"), tmp_path / "r.png", level="pixel")
