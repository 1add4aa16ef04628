from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mfrn.evaluate.localisation import LocalisationAccumulator, binarize_mask


def _pairs(rng, n=3, size=16, n_bins=101):
    """Region maps on the accumulator's bin grid, correlated with a square mask."""
    pairs = []
    for _ in range(n):
        mask = np.zeros((size, size), dtype=bool)
        y, x = rng.integers(0, size // 2, 2)
        mask[y:y + size // 2, x:x + size // 2] = True
        pred = np.clip(0.6 * mask + rng.normal(0.2, 0.25, mask.shape), 0, 1)
        pairs.append((np.round(pred * (n_bins - 1)) / (n_bins - 1), mask))
    return pairs


def test_pixel_auc_equals_sklearn_on_the_bin_grid(rng):
    acc = LocalisationAccumulator(n_bins=101)
    pairs = _pairs(rng)
    for pred, mask in pairs:
        acc.update(pred, mask)
    m = acc.compute()
    preds = np.concatenate([p.ravel() for p, _ in pairs])
    masks = np.concatenate([g.ravel() for _, g in pairs])
    assert m.pixel_auc == pytest.approx(roc_auc_score(masks, preds), abs=1e-12)
    assert (m.n_frames, m.n_pixels, m.n_positive) == (3, masks.size, int(masks.sum()))
    flagged = preds >= 0.5
    assert m.iou_at_05 == pytest.approx((flagged & masks).sum() / (flagged | masks).sum())
    # the best threshold is an oracle: never worse than 0.5, and it reproduces its own IoU
    assert m.best_iou >= m.iou_at_05 - 1e-12
    best_flag = preds >= m.best_threshold - 1e-9
    assert m.best_iou == pytest.approx((best_flag & masks).sum() / (best_flag | masks).sum())


def test_pixel_auc_close_to_sklearn_off_grid(rng):
    mask = rng.random((20, 20)) < 0.3
    pred = np.clip(0.3 * mask + rng.random((20, 20)) * 0.8, 0, 1)
    acc = LocalisationAccumulator(n_bins=1001)
    acc.update(pred, mask)
    assert acc.compute().pixel_auc == pytest.approx(roc_auc_score(mask.ravel(), pred.ravel()), abs=2e-3)


def test_perfect_map_and_resizing():
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[8:24, 8:24] = 255
    low_res = np.zeros((8, 8), dtype=np.float32)
    low_res[2:6, 2:6] = 1.0  # the decoder's 1/4 resolution
    acc = LocalisationAccumulator()
    acc.update(low_res, mask)
    m = acc.compute()
    assert m.pixel_auc > 0.95 and m.iou_at_05 > 0.8 and m.mean_frame_iou_at_05 == pytest.approx(m.iou_at_05)
    exact = LocalisationAccumulator()
    exact.update(mask / 255.0, mask)
    assert exact.compute().pixel_auc == 1.0 and exact.compute().iou_at_05 == 1.0


def test_memory_stays_flat(rng):
    acc = LocalisationAccumulator(n_bins=64)
    for pred, mask in _pairs(rng, n=20):
        acc.update(pred, mask)
    assert acc.positive_hist.shape == acc.negative_hist.shape == (64,) and acc.n_frames == 20


def test_empty_mask_gives_nan_auc():
    acc = LocalisationAccumulator()
    acc.update(np.zeros((4, 4)), np.zeros((4, 4), dtype=bool))
    m = acc.compute()
    assert np.isnan(m.pixel_auc) and np.isnan(m.iou_at_05) and m.n_positive == 0


def test_binarize_mask_rgb():
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = 200
    np.testing.assert_array_equal(binarize_mask(rgb), [[True, False], [False, False]])
