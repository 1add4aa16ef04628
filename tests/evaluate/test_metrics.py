from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from mfrn.evaluate.metrics import _sorted_groups, _weighted_curves, binary_metrics, eer_from_roc


@pytest.mark.parametrize("n,ties", [(50, False), (400, True)])
def test_matches_sklearn_on_random_data(rng, n, ties):
    labels = rng.integers(0, 2, n)
    scores = rng.random(n) + 0.4 * labels
    if ties:
        scores = np.round(scores, 1)
    m = binary_metrics(labels, scores, bootstrap=0)
    assert m.auc == pytest.approx(roc_auc_score(labels, scores))
    assert m.ap == pytest.approx(average_precision_score(labels, scores))
    assert m.n_real + m.n_fake == n and m.n_fake == labels.sum()
    assert m.acc_at_05 == pytest.approx(np.mean((scores >= 0.5) == labels))
    # at the EER, FPR and FNR agree on the interpolated ROC
    fpr, tpr, _ = roc_curve(labels, scores)
    grid = np.linspace(0, 1, 10001)
    fnr_on_grid = 1 - np.interp(grid, fpr, tpr)
    crossing = grid[np.argmin(np.abs(grid - fnr_on_grid))]
    assert m.eer == pytest.approx(crossing, abs=2e-3)


def test_weighted_fast_path_equals_sklearn(rng):
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + 0.3 * labels, 2)
    order, last, _ = _sorted_groups(labels, scores)
    # a bootstrap replicate is a count vector: expand it and compare with scikit-learn
    counts = rng.integers(0, 3, 200).astype(float)
    auc, ap, _ = _weighted_curves(labels[order].astype(float), counts[order][None, :], last)
    expanded_labels = np.repeat(labels, counts.astype(int))
    expanded_scores = np.repeat(scores, counts.astype(int))
    assert auc[0] == pytest.approx(roc_auc_score(expanded_labels, expanded_scores))
    assert ap[0] == pytest.approx(average_precision_score(expanded_labels, expanded_scores))


def test_perfect_and_inverted():
    perfect = binary_metrics([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.8, 0.9], bootstrap=0)
    assert perfect.auc == 1.0 and perfect.ap == 1.0 and perfect.eer == 0.0
    assert perfect.acc_at_05 == 1.0 and perfect.acc_at_eer == 1.0
    assert 0.3 < perfect.eer_threshold <= 0.8
    inverted = binary_metrics([0, 0, 0, 1, 1], [0.8, 0.9, 0.7, 0.1, 0.2], bootstrap=0)
    assert inverted.auc == 0.0 and inverted.eer == 1.0 and inverted.acc_at_05 == 0.0


def test_hand_computed_eer():
    # reals 0.1, 0.2, 0.7; fakes 0.6, 0.9. ROC: threshold 0.7 -> (FPR 1/3, TPR 1/2), 0.6 -> (1/3, 1).
    # FPR - FNR goes from -1/6 to +1/3: crossing at t = 1/3, EER = 1/3, threshold 0.7 - 0.1/3.
    m = binary_metrics([0, 0, 0, 1, 1], [0.1, 0.2, 0.7, 0.6, 0.9], bootstrap=0)
    assert m.eer == pytest.approx(1 / 3)
    assert m.eer_threshold == pytest.approx(0.7 - 0.1 / 3)
    assert m.auc == pytest.approx(5 / 6)
    # at threshold ~0.667, 0.7 and 0.9 are flagged: 4 of 5 correct
    assert m.acc_at_eer == pytest.approx(0.6)


def test_eer_exact_crossing():
    fpr = np.array([0.0, 0.0, 0.5, 0.5, 1.0])
    tpr = np.array([0.0, 0.5, 0.5, 1.0, 1.0])
    thresholds = np.array([np.inf, 0.9, 0.6, 0.4, 0.1])
    assert eer_from_roc(fpr, tpr, thresholds) == (0.5, 0.6)


def test_single_class_gives_nan_and_reason():
    m = binary_metrics([1, 1, 1], [0.9, 0.4, 0.7])
    assert np.isnan(m.auc) and np.isnan(m.eer) and not m.valid
    assert "one class" in m.reason and m.n_fake == 3 and m.n_real == 0
    assert m.acc_at_05 == pytest.approx(2 / 3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="differ in length"):
        binary_metrics([0, 1], [0.5])
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics([0, 1], [0.5, float("nan")])
    with pytest.raises(ValueError, match="labels"):
        binary_metrics([0, 2], [0.5, 0.1])


def test_bootstrap_interval_contains_estimate_and_is_seeded(rng):
    labels = rng.integers(0, 2, 120)
    scores = rng.random(120) + 0.5 * labels
    a = binary_metrics(labels, scores, bootstrap=300, seed=1)
    b = binary_metrics(labels, scores, bootstrap=300, seed=1)
    assert a.auc_ci == b.auc_ci and a.n_bootstrap == 300
    for value, (low, high) in ((a.auc, a.auc_ci), (a.ap, a.ap_ci), (a.eer, a.eer_ci)):
        assert low <= value <= high and high - low < 0.5
    perfect = binary_metrics([0] * 10 + [1] * 10, list(range(20)), bootstrap=100)
    assert perfect.auc_ci == (1.0, 1.0) and perfect.eer_ci == (0.0, 0.0)
