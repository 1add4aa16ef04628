"""The rules that turn validation scores into a checkpoint's calibration (mfrn.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from mfrn.calibration import (
    CalibrationConfig,
    PixelHistogram,
    choose_calibration,
    fit_temperature,
    softmax_fake,
    threshold_at_eer,
    threshold_at_fpr,
)


def _logits_for(p_fake: np.ndarray) -> np.ndarray:
    """(N, 2) logits whose softmax gives ``p_fake`` in column 1."""
    p = np.clip(np.asarray(p_fake, dtype=np.float64), 1e-9, 1 - 1e-9)
    return np.stack([np.zeros_like(p), np.log(p / (1 - p))], axis=1)


@pytest.mark.parametrize("target, n_above", [(0.05, 1), (0.10, 2), (0.0, 0), (0.049, 0)])
def test_the_fpr_threshold_calls_at_most_the_target_share_of_reals_fake(target, n_above):
    reals = np.linspace(0.01, 0.2, 20)  # 20 reals: 5 % is one of them
    threshold = threshold_at_fpr(reals, target)
    assert int((reals >= threshold).sum()) == n_above
    assert (reals >= threshold).mean() <= target + 1e-12
    if n_above:  # halfway between the last real allowed above and the first kept below
        assert threshold == pytest.approx((reals[-n_above] + reals[-n_above - 1]) / 2)
    else:
        assert threshold > reals.max() and threshold == pytest.approx(reals.max())


def test_the_fpr_threshold_ignores_the_fakes_and_the_eer_point_does_not():
    reals = np.array([0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.22, 0.25, 0.3, 0.35])
    easy_fakes = np.array([0.9, 0.95, 0.97, 0.99, 0.99, 0.99, 0.995, 0.999, 0.999, 1.0])
    threshold, eer = threshold_at_eer(reals, easy_fakes)
    assert eer == 0.0 and 0.35 < threshold < 0.9  # separable: anywhere in the gap; a real fake at 0.5 may be missed
    assert threshold_at_fpr(reals, 0.1) == pytest.approx((0.35 + 0.3) / 2)


def test_the_eer_threshold_balances_the_two_error_rates():
    rng = np.random.default_rng(0)
    reals, fakes = rng.normal(0.3, 0.1, 400), rng.normal(0.6, 0.1, 400)
    threshold, eer = threshold_at_eer(reals, fakes)
    fpr, fnr = (reals >= threshold).mean(), (fakes < threshold).mean()
    assert abs(fpr - fnr) <= 1 / 400 + 1e-12 and eer == pytest.approx((fpr + fnr) / 2)
    assert threshold == pytest.approx(0.45, abs=0.02) and 0.05 < eer < 0.1


def test_the_temperature_minimises_the_nll():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    # margins +-1.5 + N(0, 1.5^2): the true log-odds are 2 * 1.5 / 1.5^2 = 4/3 x the margin
    margin = np.where(labels == 1, 1.0, -1.0) * 1.5 + rng.normal(0, 1.5, 2000)
    logits = np.stack([np.zeros(2000), 4.0 * margin], axis=1)  # over-confident: 4 x the margin, i.e. 3 x the log-odds
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)

    def nll(t):
        p = softmax_fake(logits, t)
        return -np.mean(np.log(np.where(labels == 1, p, 1 - p)))

    assert nll(temperature) <= min(nll(1.0), nll(temperature * 1.2), nll(temperature / 1.2))


def test_the_pixel_histogram_finds_the_threshold_of_the_best_iou():
    rng = np.random.default_rng(2)
    histogram = PixelHistogram(n_bins=101)
    masks, values = [], []
    for _ in range(4):
        mask = np.zeros((32, 32), bool)
        mask[8:24, 6:26] = True
        value = np.clip(0.25 * mask + rng.normal(0.1, 0.05, mask.shape), 0, 1)  # an under-confident map
        value = np.round(value * 100) / 100
        histogram.update(value, mask)
        masks.append(mask), values.append(value)
    masks, values = np.concatenate(masks), np.concatenate(values)

    def iou(t):
        flagged = values >= t - 1e-9
        return (flagged & masks).sum() / (flagged | masks).sum()

    threshold, best = histogram.best("iou")
    assert best == pytest.approx(iou(threshold)) and best > 0.9 and iou(0.5) < 0.01  # 0.5 flags almost nothing
    assert histogram.iou_at(0.5) == pytest.approx(iou(0.5))
    assert all(best >= iou(t) - 1e-12 for t in np.linspace(0, 1, 101))
    f1_threshold, f1 = histogram.best("f1")
    assert 0.9 < f1 <= 1.0 and 0.1 < f1_threshold < 0.35


def test_choose_calibration_states_its_rules_and_stores_what_it_chose():
    rng = np.random.default_rng(3)
    reals, fakes = rng.uniform(0.0, 0.3, 60), rng.uniform(0.7, 1.0, 60)
    logits = _logits_for(np.concatenate([reals, fakes]))
    labels = np.r_[np.zeros(60), np.ones(60)]
    pixels = PixelHistogram()
    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True
    pixels.update(0.3 * mask, mask)
    report = choose_calibration(CalibrationConfig(), logits, labels, pixels)
    cal = report.calibration
    assert cal.rule.startswith("val_fpr") and "60 validation real faces" in cal.rule and "synthetic" in cal.rule
    assert report.val_fpr <= 0.05 and report.val_tpr == 1.0 and 0.25 < cal.threshold < 0.31
    assert cal.temperature is None and report.nll_after == report.nll_before
    assert cal.pixel_threshold == pytest.approx(0.001) and cal.pixel_rule.startswith("iou")  # anything above 0 is the region
    assert report.pixel_iou_at_05 == 0.0 and report.pixel_score == 1.0
    assert "verdict threshold" in report.format() and "IoU 1.000" in report.format()

    eer = choose_calibration(CalibrationConfig(rule="eer", temperature="fit"), logits, labels)
    assert eer.calibration.rule.startswith("eer") and eer.calibration.temperature is not None
    assert eer.calibration.pixel_threshold is None and eer.eer == 0.0
    assert eer.nll_after <= eer.nll_before + 1e-12


@pytest.mark.parametrize("field, value, match", [
    ("rule", "median", "calibration.rule"), ("target_fpr", 1.0, "target_fpr"), ("temperature", "yes", "off or fit"),
    ("pixel_rule", "dice", "pixel_rule"), ("pixel_mask_level", 0.0, "pixel_mask_level"),
])
def test_bad_settings_are_refused_with_the_key_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        CalibrationConfig(**{field: value})


def test_calibration_needs_validation_reals():
    with pytest.raises(ValueError, match="validation reals"):
        choose_calibration(CalibrationConfig(), _logits_for(np.array([0.9, 0.8])), np.array([1, 1]))
