"""The forehead-gap measurement (extrapolated vs an 81-point model) and its benchmark script, run on
real faces with landmarker stand-ins whose gap is known (no 81-point model file is at hand here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mfrn.faces.backends.dlib_backend import DlibLandmarker
from mfrn.faces.forehead import forehead_gap, summarize_gaps
from mfrn.faces.landmarks import DLIB81_FOREHEAD_ORDER, from_dlib81

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_forehead.py"


def _script():
    spec = importlib.util.spec_from_file_location("bench_forehead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RaisedForehead:
    """Stands in for the 81-point model: dlib's 68 points, and the extrapolated forehead moved up by
    ``lift`` inter-ocular distances, so the gap is ``lift`` at every point."""

    forehead_source = "dlib81"

    def __init__(self, lift: float) -> None:
        self.lift = lift
        self.dlib = DlibLandmarker()

    def predict(self, image, detection):
        points = self.dlib.predict(image, detection).copy()
        points[68:, 1] -= self.lift * np.linalg.norm(points[45] - points[36])
        return points


def test_gap_is_zero_for_the_extrapolation_and_exact_for_a_known_shift(astronaut_face):
    same = forehead_gap(astronaut_face.landmarks)  # the default landmarker's forehead is the extrapolation
    assert np.allclose(same.distances, 0, atol=1e-5) and same.hull_iou == pytest.approx(1.0)
    moved = astronaut_face.landmarks.copy()
    iod = float(np.linalg.norm(moved[45] - moved[36]))
    moved[68:, 0] += 0.25 * iod
    gap = forehead_gap(moved)
    np.testing.assert_allclose(gap.distances, 0.25, rtol=1e-4)
    assert gap.inter_ocular == pytest.approx(iod) and 0.5 < gap.hull_iou < 1.0
    with pytest.raises(ValueError, match="81"):
        forehead_gap(moved[:68])
    assert np.isnan(summarize_gaps([]).mean)


def test_dlib81_order_is_undone_before_comparing(astronaut_face):
    """A raw dlib-81 prediction (points 68..80 in dlib's own order) goes through ``from_dlib81`` first."""
    ordered = astronaut_face.landmarks
    raw = ordered.copy()
    raw[list(DLIB81_FOREHEAD_ORDER)] = ordered[68:]
    assert np.allclose(from_dlib81(raw), ordered)
    assert np.allclose(forehead_gap(from_dlib81(raw)).distances, 0, atol=1e-5)


def test_script_measures_real_faces_with_a_stand_in(sample_media, astronaut):
    script = _script()
    images = list(script.frames_of(sample_media.single_face_images[:2], frames=1)) + [("astronaut", astronaut)]
    report = script.measure(images, RaisedForehead(0.3))
    assert report.n_faces >= 3
    assert report.mean == pytest.approx(0.3, rel=1e-3) and report.max == pytest.approx(0.3, rel=1e-3)
    assert len(report.per_point_mean) == 13 and report.min_hull_iou < 1.0
    assert "mean 0.300, max 0.300" in report.format()
    zero = script.measure(images, DlibLandmarker())
    assert zero.n_faces == report.n_faces and zero.max < 1e-4 and zero.mean_hull_iou == pytest.approx(1.0)


def test_script_needs_the_predictor_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="81-point shape predictor file not found"):
        _script().main(["--predictor", str(tmp_path / "shape_predictor_81_face_landmarks.dat")])

