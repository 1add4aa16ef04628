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
    fpr_upper_bound,
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


@pytest.mark.parametrize("false_positives, n, bound", [(0, 4, 1 - 0.05 ** 0.25), (0, 59, 1 - 0.05 ** (1 / 59)),
                                                         (1, 20, 0.2161), (4, 4, 1.0), (0, 0, 1.0)])
def test_the_false_positive_bound_is_clopper_pearson_one_sided(false_positives, n, bound):
    """k of n reals called fake: the rate on new reals is below the bound with 95 % confidence; 0 of n has the
    closed form 1 - 0.05^(1/n), and a 5 % rate needs 59 reals to be shown (58 do not)."""
    assert fpr_upper_bound(false_positives, n) == pytest.approx(bound, abs=1e-4)
    assert fpr_upper_bound(0, 59) < 0.05 < fpr_upper_bound(0, 58)


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
    report = choose_calibration(CalibrationConfig(unit="face"), logits, labels, pixels)
    cal = report.calibration
    assert cal.rule.startswith("val_fpr") and "60 validation real faces" in cal.rule and "synthetic" in cal.rule
    assert report.val_fpr <= 0.05 and report.val_tpr == 1.0 and 0.25 < cal.threshold < 0.31
    assert cal.temperature is None and report.nll_after == report.nll_before
    assert cal.pixel_threshold == pytest.approx(0.001) and cal.pixel_rule.startswith("iou")  # anything above 0 is the region
    assert report.pixel_iou_at_05 == 0.0 and report.pixel_score == 1.0
    assert "verdict threshold" in report.format() and "IoU 1.000" in report.format()

    eer = choose_calibration(CalibrationConfig(rule="eer", temperature="fit", unit="face"), logits, labels)
    assert eer.calibration.rule.startswith("eer") and eer.calibration.temperature is not None
    assert eer.calibration.pixel_threshold is None and eer.eer == 0.0
    assert eer.nll_after <= eer.nll_before + 1e-12


@pytest.mark.parametrize("field, value, match", [
    ("rule", "median", "calibration.rule"), ("target_fpr", 1.0, "target_fpr"), ("temperature", "yes", "off or fit"),
    ("pixel_rule", "dice", "pixel_rule"), ("pixel_mask_level", 0.0, "pixel_mask_level"), ("unit", "clip", "unit"),
])
def test_bad_settings_are_refused_with_the_key_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        CalibrationConfig(**{field: value})


def test_calibration_needs_validation_reals():
    with pytest.raises(ValueError, match="validation reals"):
        choose_calibration(CalibrationConfig(), _logits_for(np.array([0.9, 0.8])), np.array([1, 1]))
    with pytest.raises(ValueError, match="unit video needs each validation image's video"):
        choose_calibration(CalibrationConfig(), _logits_for(np.array([0.1, 0.8])), np.array([0, 1]))


def _validation_videos(rng, n_videos: int, n_frames: int, centres, spread: float, label: int):
    """Scores, labels and (video, frame) keys of ``n_videos`` videos with noisy frames around their centres."""
    scores, keys = [], []
    for v, centre in zip(range(n_videos), centres):
        for f in range(n_frames):
            scores.append(np.clip(centre + rng.uniform(-spread, spread), 0.001, 0.999))
            keys.append((f"{'fake' if label else 'real'}/{v:02d}", f"{'fake' if label else 'real'}/{v:02d}#{f}"))
    return np.array(scores), np.full(len(scores), label), keys


def test_the_video_unit_counts_videos_as_detect_scores_them_and_keeps_the_face_threshold_for_images():
    rng = np.random.default_rng(4)
    # 20 real videos of 8 frames: centres 0.1-0.3, single frames spread +-0.3 around them (a face's
    # score is noisier than its video's mean); fakes well above
    reals, real_labels, real_keys = _validation_videos(rng, 20, 8, np.linspace(0.1, 0.3, 20), 0.3, 0)
    fakes, fake_labels, fake_keys = _validation_videos(rng, 20, 8, np.full(20, 0.8), 0.15, 1)
    # a second, lower face in one real frame: the frame's score is its highest face, so nothing changes
    reals, real_labels = np.r_[reals, 0.001], np.r_[real_labels, 0]
    real_keys = real_keys + [real_keys[0]]
    scores = np.r_[reals, fakes]
    report = choose_calibration(CalibrationConfig(), _logits_for(scores), np.r_[real_labels, fake_labels],
                                videos=real_keys + fake_keys)
    cal = report.calibration
    means = np.array([reals[:-1][8 * v: 8 * v + 8].mean() for v in range(20)])
    assert cal.threshold == pytest.approx(threshold_at_fpr(means, 0.05))  # one of 20 real videos above it
    assert cal.image_threshold == pytest.approx(threshold_at_fpr(reals, 0.05))  # 8 of the 161 real faces
    assert cal.threshold < cal.image_threshold - 0.1  # the mean of 8 frames sits far below a face's tail
    assert report.unit == "video" and report.n_real_units == 20 and report.n_fake_units == 20
    assert report.val_fpr == pytest.approx(1 / 20) and report.val_tpr == 1.0
    assert "of 20 validation real videos" in cal.rule and "of 161 validation real faces" in cal.image_rule
    assert cal.threshold_for("video") == cal.threshold and cal.threshold_for("image") == cal.image_threshold
    assert cal.rule_for("image") == cal.image_rule and "single images at" in cal.describe()
    assert "of 20 real videos called fake" in report.format()
    # what 20 real videos vouch for: 1 of them above the threshold bounds new reals' false-positive rate by 22 %
    assert "1 of 20 at or above it: on new reals like them the false-positive rate is below 22%" in cal.rule
    assert report.val_fpr_upper == pytest.approx(fpr_upper_bound(1, 20)) and "below 22%, one-sided 95 %" in report.format()
    # the protocol's own aggregation is used when given (here: the median over frames)
    median = choose_calibration(CalibrationConfig(), _logits_for(scores), np.r_[real_labels, fake_labels],
                                videos=real_keys + fake_keys,
                                aggregate=lambda frames: float(np.median([max(f) for f in frames])))
    medians = np.array([np.median(reals[:-1][8 * v: 8 * v + 8]) for v in range(20)])
    assert median.calibration.threshold == pytest.approx(threshold_at_fpr(medians, 0.05))


def test_video_scores_group_faces_by_frame_and_frames_by_video():
    from mfrn.calibration import video_scores

    keys = [("a", "a#0"), ("a", "a#0"), ("a", "a#1"), ("b", "b#0")]
    assert video_scores(np.array([0.2, 0.6, 0.4, 0.9]), keys).tolist() == pytest.approx([0.5, 0.9])
    with pytest.raises(ValueError, match="3 scores but 4 video keys"):
        video_scores(np.array([0.2, 0.6, 0.4]), keys)
