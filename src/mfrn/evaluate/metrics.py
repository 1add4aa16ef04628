"""Binary detection metrics: AUC, AP, EER, accuracy, with stratified bootstrap intervals.

Label convention everywhere in mfrn: 1 = fake, 0 = real; a higher score means "more fake".
Point estimates come from scikit-learn; the bootstrap replicates use an equivalent weighted
computation on the sorted scores (tested against scikit-learn) so 1000 replicates stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Interval = tuple[float, float]


@dataclass
class RocCurve:
    """ROC points as scikit-learn's ``roc_curve`` returns them (kept for plotting)."""

    fpr: list[float]
    tpr: list[float]


@dataclass
class BinaryMetrics:
    """Metrics of one score set. NaN fields (with ``reason``) when a class is missing."""

    auc: float
    ap: float
    eer: float
    eer_threshold: float
    acc_at_05: float
    acc_at_eer: float
    n_real: int
    n_fake: int
    auc_ci: Interval | None = None
    ap_ci: Interval | None = None
    eer_ci: Interval | None = None
    n_bootstrap: int = 0
    reason: str = ""
    curve: RocCurve | None = field(default=None, repr=False)
    threshold: float = 0.5  # the verdict threshold acc_at_threshold uses (a checkpoint's stored one, or 0.5)
    acc_at_threshold: float = float("nan")

    @property
    def valid(self) -> bool:
        return not self.reason


def _as_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{int(np.sum(~np.isfinite(s)))} scores are NaN or infinite")
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError(f"labels must be 0 (real) or 1 (fake), got values {sorted(set(y.tolist()))[:5]}")
    return y.astype(np.int64), s


def eer_from_roc(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    """EER where FPR = 1 - TPR, linearly interpolated between the two ROC points around it."""
    fnr = 1.0 - tpr
    diff = fpr - fnr  # non-decreasing from -1 (nothing flagged) to +1 (everything flagged)
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0 or i == 0:
        return float(fpr[i]), float(thresholds[i])
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    eer = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    lo, hi = thresholds[i - 1], thresholds[i]
    # scikit-learn's first threshold is +inf ("flag nothing"): the crossing then sits at thresholds[i]
    threshold = hi if not np.isfinite(lo) else lo + t * (hi - lo)
    return float(eer), float(threshold)


def _sorted_groups(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order by descending score; return the order, and each tie group's last position."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    last = np.r_[np.nonzero(np.diff(sorted_scores))[0], sorted_scores.size - 1]
    return order, last, sorted_scores[last]


def _weighted_curves(
    labels_sorted: np.ndarray, weights: np.ndarray, last: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUC, AP, EER for each row of ``weights`` (B, n), samples already sorted by score."""
    tps = np.cumsum(weights * labels_sorted, axis=1)[:, last]
    fps = np.cumsum(weights * (1 - labels_sorted), axis=1)[:, last]
    zeros = np.zeros((weights.shape[0], 1))
    tps = np.hstack([zeros, tps])
    fps = np.hstack([zeros, fps])
    tpr = tps / tps[:, -1:]
    fpr = fps / fps[:, -1:]
    auc = np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2.0, axis=1)
    flagged = tps[:, 1:] + fps[:, 1:]
    precision = np.divide(tps[:, 1:], flagged, out=np.zeros_like(flagged), where=flagged > 0)
    ap = np.sum(np.diff(tpr, axis=1) * precision, axis=1)
    diff = fpr - (1.0 - tpr)
    i = np.argmax(diff >= 0, axis=1)
    rows = np.arange(weights.shape[0])
    d1, d0 = diff[rows, i], diff[rows, np.maximum(i - 1, 0)]
    f1, f0 = fpr[rows, i], fpr[rows, np.maximum(i - 1, 0)]
    denom = np.where(d1 - d0 == 0, 1.0, d1 - d0)
    t = np.where((i == 0) | (d1 == 0), 1.0, -d0 / denom)
    eer = f0 + t * (f1 - f0)
    return auc, ap, eer


def _bootstrap(
    labels: np.ndarray, scores: np.ndarray, n_bootstrap: int, seed: int, chunk: int = 64
) -> tuple[Interval, Interval, Interval]:
    """Stratified bootstrap: reals and fakes are resampled separately, so both are always present."""
    rng = np.random.default_rng(seed)
    order, last, _ = _sorted_groups(labels, scores)
    labels_sorted = labels[order].astype(np.float64)
    real_pos = np.nonzero(labels_sorted == 0)[0]
    fake_pos = np.nonzero(labels_sorted == 1)[0]
    results: list[np.ndarray] = []
    done = 0
    while done < n_bootstrap:
        b = min(chunk, n_bootstrap - done)
        # a resample is a count per original sample, so the sort above serves every replicate
        weights = np.zeros((b, labels.size))
        weights[:, real_pos] = rng.multinomial(real_pos.size, np.full(real_pos.size, 1.0 / real_pos.size), size=b)
        weights[:, fake_pos] = rng.multinomial(fake_pos.size, np.full(fake_pos.size, 1.0 / fake_pos.size), size=b)
        results.append(np.stack(_weighted_curves(labels_sorted, weights, last), axis=1))
        done += b
    replicates = np.concatenate(results)
    low, high = np.percentile(replicates, [2.5, 97.5], axis=0)
    return tuple((float(low[k]), float(high[k])) for k in range(3))  # type: ignore[return-value]


def binary_metrics(labels, scores, bootstrap: int = 1000, seed: int = 0, threshold: float = 0.5) -> BinaryMetrics:
    """AUC, AP, EER (+ threshold), accuracy at 0.5, at ``threshold`` (the verdict threshold, e.g. a
    checkpoint's stored one) and at the EER threshold, 95 % bootstrap CIs.

    ``labels``: 1 = fake, 0 = real. With a single class present the rank metrics are NaN and
    ``reason`` says why (the accuracies at 0.5 and at ``threshold`` are still given). ``bootstrap=0``
    skips the intervals.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    y, s = _as_arrays(labels, scores)
    n_fake = int(y.sum())
    n_real = int(y.size - n_fake)
    # interpretation: a score of exactly 0.5 counts as fake (predict fake when score >= threshold)
    acc_05 = float(np.mean((s >= 0.5) == (y == 1))) if y.size else float("nan")
    threshold = float(threshold)
    acc_threshold = float(np.mean((s >= threshold) == (y == 1))) if y.size else float("nan")
    if n_real == 0 or n_fake == 0:
        reason = f"only one class present ({n_real} real, {n_fake} fake): AUC/AP/EER undefined"
        nan = float("nan")
        return BinaryMetrics(nan, nan, nan, nan, acc_05, nan, n_real, n_fake, reason=reason, threshold=threshold,
                             acc_at_threshold=acc_threshold)
    auc = float(roc_auc_score(y, s))
    ap = float(average_precision_score(y, s))
    fpr, tpr, thresholds = roc_curve(y, s)
    eer, eer_threshold = eer_from_roc(fpr, tpr, thresholds)
    acc_eer = float(np.mean((s >= eer_threshold) == (y == 1)))
    metrics = BinaryMetrics(
        auc, ap, eer, eer_threshold, acc_05, acc_eer, n_real, n_fake,
        curve=RocCurve(fpr.tolist(), tpr.tolist()), threshold=threshold, acc_at_threshold=acc_threshold,
    )
    if bootstrap > 0:
        metrics.auc_ci, metrics.ap_ci, metrics.eer_ci = _bootstrap(y, s, bootstrap, seed)
        metrics.n_bootstrap = bootstrap
    return metrics
