"""How scores become verdicts: the rules that choose a checkpoint's calibration from validation data.

A low layer (numpy and scipy only, plus the checkpoint format's ``Calibration``): training calls it
at the end of a run on the validation split (``mfrn.train.calibrate``), ``mfrn calibrate`` on an
older checkpoint, and ``mfrn eval --localisation`` reads region maps through its ``PixelHistogram``.

* **Verdict threshold** (``calibration.rule``):
  - ``val_fpr`` (the default): the threshold that calls at most ``target_fpr`` of the validation
    *reals* fake. # interpretation: anchored on the reals, because validation fakes are synthetic
    (SBI/RBI) and real manipulations the detector never saw score lower than those; a rule that
    looks at the synthetic fakes (the EER point) puts the threshold between the reals and fakes
    that are easier than the ones it must catch.
  - ``eer``: the equal-error point between validation reals and their synthetic fakes.

  Either rule's text ends with what the validation reals can vouch for: k of n at or above the
  threshold, and the one-sided 95 % Clopper-Pearson bound on the false-positive rate of new reals
  like them (``fpr_upper_bound``). # interpretation: a target false-positive rate below 1/n cannot be
  seen on n reals; the bound says how little a few validation videos pin it down (0 of 4: below 53 %).
* **Unit** (``calibration.unit``): what the rule counts. ``video`` (the default): the validation
  faces are scored per validation video as ``detect`` and ``eval`` score a video (the highest face
  of a frame, the mean over frames), and the rule counts videos: ``target_fpr`` is the share of
  real *videos* called fake, the verdict a video gets. # interpretation: a video's score is a mean
  of frames, so its spread is smaller than one face's; a threshold counted on faces sits in the
  tail of single faces, far above the real videos it has to pass, and misses manipulated videos
  that a video-level threshold catches. The same rule counted on faces gives a single image's
  threshold, stored beside it (``Calibration.image_threshold``). ``face``: one threshold, counted on
  faces, for both.
* **Temperature** (``calibration.temperature``): ``fit`` minimises the validation NLL of
  softmax(logits / T) over T; ``off`` (the default) keeps T = 1. The threshold is chosen on the
  scaled scores either way, so T changes the reported probabilities, never a verdict.
* **Pixel threshold** (``calibration.pixel_rule``): the region-map value that maximises the pooled
  IoU (``iou``) or F1 (``f1``) against the manipulated region of the validation fakes, where the
  region is the blend mask at ``pixel_mask_level`` of its peak or more (M~ >= 0.5: the hull the
  face was blended in, whatever the blend ratio r).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mfrn.checkpoint import Calibration

THRESHOLD_RULES = ("val_fpr", "eer")
UNITS = ("video", "face")
TEMPERATURE_MODES = ("off", "fit")
PIXEL_RULES = ("iou", "f1")


@dataclass
class CalibrationConfig:
    """The ``calibration:`` section of a training config (see the module docstring)."""

    enabled: bool = True  # calibrate selected.pt, best.pt and last.pt at the end of training
    rule: str = "val_fpr"  # "val_fpr" | "eer"
    target_fpr: float = 0.05  # val_fpr: the share of validation reals the threshold may call fake
    unit: str = "video"  # "video" | "face": what the rule counts (videos also store a threshold for images)
    temperature: str = "off"  # "off" | "fit"
    pixel_rule: str = "iou"  # "iou" | "f1"
    pixel_mask_level: float = 0.5  # a val fake's region: its blend mask >= this x the mask's peak

    def __post_init__(self) -> None:
        if self.rule not in THRESHOLD_RULES:
            raise ValueError(f"calibration.rule must be one of {', '.join(THRESHOLD_RULES)}, got {self.rule!r}")
        if self.unit not in UNITS:
            raise ValueError(f"calibration.unit must be video or face, got {self.unit!r}")
        if not 0.0 <= self.target_fpr < 1.0:
            raise ValueError(f"calibration.target_fpr must be in [0, 1), got {self.target_fpr}")
        if self.temperature not in TEMPERATURE_MODES:
            raise ValueError(f"calibration.temperature must be off or fit, got {self.temperature!r}")
        if self.pixel_rule not in PIXEL_RULES:
            raise ValueError(f"calibration.pixel_rule must be iou or f1, got {self.pixel_rule!r}")
        if not 0.0 < self.pixel_mask_level <= 1.0:
            raise ValueError(f"calibration.pixel_mask_level must be in (0, 1], got {self.pixel_mask_level}")


def softmax_fake(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """P(fake) = softmax(logits / T)[:, 1] for (N, 2) logits (real, fake), as the detector computes it."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    return 1.0 / (1.0 + np.exp(z[:, 0] - z[:, 1]))


def threshold_at_fpr(real_scores: np.ndarray, target_fpr: float) -> float:
    """The threshold (score >= it is fake) that calls at most ``target_fpr`` of ``real_scores`` fake.

    With the reals sorted high to low and k = floor(target_fpr x n) of them allowed above it, the
    threshold lies halfway between the k-th and the (k+1)-th highest real (just above the highest
    real when k = 0), so the empirical false-positive rate is at most the target.
    """
    reals = np.sort(np.asarray(real_scores, dtype=np.float64).reshape(-1))[::-1]
    if reals.size == 0:
        raise ValueError("no real scores to choose a threshold from")
    k = int(math.floor(target_fpr * reals.size + 1e-9))
    if k >= reals.size:
        return 0.0
    below = reals[k]  # the highest real that must stay real
    if k == 0:
        return float(min(1.0, np.nextafter(below, np.inf)))
    return float(min(1.0, (reals[k - 1] + below) / 2.0))


def fpr_upper_bound(false_positives: int, n: int, confidence: float = 0.95) -> float:
    """The one-sided Clopper-Pearson upper bound on a false-positive rate observed as ``false_positives`` of ``n``
    reals: with ``confidence``, the rate on new reals drawn like them is below it. 0 of n gives 1 - (1 - c)^(1/n):
    0 of 4 validation videos leaves 53 %; a 5 % rate is shown only from 59 reals (0 of 59: 4.95 %)."""
    from scipy.stats import beta

    if n <= 0 or false_positives >= n:
        return 1.0
    return float(beta.ppf(confidence, false_positives + 1, n - false_positives))


def threshold_at_eer(real_scores: np.ndarray, fake_scores: np.ndarray) -> tuple[float, float]:
    """(threshold, EER): where the false-positive rate on reals meets the miss rate on fakes.

    Candidates are the midpoints between consecutive distinct scores (and the two ends); the one
    with the smallest |FPR - FNR| wins, ties keep the lower threshold."""
    reals = np.asarray(real_scores, dtype=np.float64).reshape(-1)
    fakes = np.asarray(fake_scores, dtype=np.float64).reshape(-1)
    if reals.size == 0 or fakes.size == 0:
        raise ValueError("the EER needs real and fake scores")
    values = np.unique(np.concatenate([reals, fakes]))
    candidates = np.concatenate([[values[0]], (values[1:] + values[:-1]) / 2.0, [np.nextafter(values[-1], np.inf)]])
    fpr = (reals[None, :] >= candidates[:, None]).mean(axis=1)
    fnr = (fakes[None, :] < candidates[:, None]).mean(axis=1)
    best = int(np.argmin(np.abs(fpr - fnr)))
    return float(np.clip(candidates[best], 0.0, 1.0)), float((fpr[best] + fnr[best]) / 2.0)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The T in ``bounds`` that minimises the NLL of softmax(logits / T) (Guo et al., 2017)."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    margin = z[:, 1] - z[:, 0]
    sign = np.where(y == 1, 1.0, -1.0)

    def nll(log_t: float) -> float:
        return float(np.mean(np.logaddexp(0.0, -sign * margin / math.exp(log_t))))

    found = minimize_scalar(nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded")
    return float(math.exp(found.x))


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """ECE of P(fake) against the labels, equal-width bins (a measure shown beside the threshold)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    bins = np.minimum((s * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        chosen = bins == b
        if chosen.any():
            total += chosen.sum() * abs(s[chosen].mean() - y[chosen].mean())
    return float(total / max(s.size, 1))


class PixelHistogram:
    """Predicted region-map values of manipulated and untouched pixels, in fixed bins.

    Memory does not grow with the number of frames. ``n_bins`` levels ``k / (n_bins - 1)``: a pixel
    is flagged at threshold t when its value's bin is >= t's bin, so curves are exact on that grid.
    """

    def __init__(self, n_bins: int = 1001) -> None:
        if n_bins < 2:
            raise ValueError("n_bins must be >= 2")
        self.n_bins = n_bins
        self.positive = np.zeros(n_bins, dtype=np.int64)
        self.negative = np.zeros(n_bins, dtype=np.int64)

    def update(self, values: np.ndarray, manipulated: np.ndarray) -> None:
        """``values`` in [0, 1] and a boolean ``manipulated`` map of the same shape."""
        values = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
        manipulated = np.asarray(manipulated, dtype=bool)
        if values.shape != manipulated.shape:
            raise ValueError(f"region map {values.shape} and mask {manipulated.shape} differ in shape")
        bins = np.rint(values * (self.n_bins - 1)).astype(np.int64)
        self.positive += np.bincount(bins[manipulated], minlength=self.n_bins)
        self.negative += np.bincount(bins[~manipulated], minlength=self.n_bins)

    @property
    def n_positive(self) -> int:
        return int(self.positive.sum())

    @property
    def n_pixels(self) -> int:
        return int(self.positive.sum() + self.negative.sum())

    def _flagged(self) -> tuple[np.ndarray, np.ndarray]:
        """True and false positives at each threshold bin t (pixels with bin >= t)."""
        return np.cumsum(self.positive[::-1])[::-1], np.cumsum(self.negative[::-1])[::-1]

    def bin_of(self, threshold: float) -> int:
        return int(np.clip(math.ceil(float(threshold) * (self.n_bins - 1) - 1e-9), 0, self.n_bins - 1))

    def threshold_of(self, index: int) -> float:
        return index / (self.n_bins - 1)

    def iou_curve(self) -> np.ndarray:
        tp, fp = self._flagged()
        union = fp + self.n_positive
        return np.divide(tp, union, out=np.zeros(self.n_bins), where=union > 0)

    def f1_curve(self) -> np.ndarray:
        tp, fp = self._flagged()
        denom = 2 * tp + fp + (self.n_positive - tp)
        return np.divide(2 * tp, denom, out=np.zeros(self.n_bins), where=denom > 0)

    def iou_at(self, threshold: float) -> float:
        return float(self.iou_curve()[self.bin_of(threshold)]) if self.n_positive else float("nan")

    def best(self, rule: str = "iou") -> tuple[float, float]:
        """(threshold, score) maximising IoU or F1; ties keep the lowest threshold."""
        if rule not in PIXEL_RULES:
            raise ValueError(f"pixel rule must be one of {', '.join(PIXEL_RULES)}, got {rule!r}")
        if not self.n_positive:
            return float("nan"), float("nan")
        curve = self.iou_curve() if rule == "iou" else self.f1_curve()
        index = int(np.argmax(curve))
        return self.threshold_of(index), float(curve[index])

    def auc(self) -> float:
        """Pixel-level ROC AUC (values in one bin are ties)."""
        n_pos, n_neg = self.n_positive, int(self.negative.sum())
        if not (n_pos and n_neg):
            return float("nan")
        tpr = np.r_[0, np.cumsum(self.positive[::-1])] / n_pos
        fpr = np.r_[0, np.cumsum(self.negative[::-1])] / n_neg
        return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


@dataclass
class CalibrationReport:
    """The chosen calibration and what it was chosen from (printed at the end of training)."""

    calibration: Calibration
    n_real: int  # validation faces
    n_fake: int
    val_fpr: float  # share of validation real units (videos or faces) at or above the threshold
    val_tpr: float  # share of validation (synthetic) fake units at or above it
    eer: float
    eer_threshold: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    pixel_score: float | None = None  # IoU or F1 at the pixel threshold on the validation fakes
    pixel_iou_at_05: float | None = None
    pixel_auc: float | None = None
    unit: str = "face"  # what val_fpr and val_tpr count: "video" or "face"
    val_fpr_upper: float = 1.0  # the one-sided 95 % bound on the false-positive rate of new reals (fpr_upper_bound)
    n_real_units: int = 0  # validation real videos (unit video) or faces
    n_fake_units: int = 0

    def format(self) -> str:
        units = "videos" if self.unit == "video" else "faces"
        lines = [f"calibration: {self.calibration.describe()}",
                 f"  validation: {self.val_fpr:.1%} of {self.n_real_units} real {units} called fake (on new reals like them below "
                 f"{self.val_fpr_upper:.0%}, one-sided 95 %), {self.val_tpr:.1%} of "
                 f"{self.n_fake_units} synthetic fake {units} caught; face-level EER {self.eer:.3f} at {self.eer_threshold:.4g}"]
        if self.calibration.temperature is not None:
            lines.append(f"  temperature {self.calibration.temperature:.4g}: validation NLL {self.nll_before:.4f} -> "
                         f"{self.nll_after:.4f}, ECE {self.ece_before:.4f} -> {self.ece_after:.4f}")
        if self.pixel_score is not None:
            name = "IoU" if self.calibration.pixel_rule.startswith("iou") else "F1"
            lines.append(f"  region map on the validation fakes: {name} {self.pixel_score:.3f} at "
                         f"{self.calibration.pixel_threshold:.3g} (IoU {self.pixel_iou_at_05:.3f} at 0.5), "
                         f"pixel AUC {self.pixel_auc:.3f}")
        return "\n".join(lines)


def _nll(scores: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(np.where(labels == 1, scores, 1.0 - scores), 1e-12, 1.0)
    return float(-np.mean(np.log(p)))


def video_scores(scores: np.ndarray, videos: Sequence[tuple[str, str]],
                 aggregate: Callable[[list[list[float]]], float] | None = None) -> np.ndarray:
    """One score per video, in order of first appearance: ``videos[i]`` is image i's (video, frame)
    key; ``aggregate`` maps a video's per-frame face scores to its score (default: the highest face of
    a frame, the mean over frames, the inference protocol's defaults)."""
    if len(videos) != len(scores):
        raise ValueError(f"{len(scores)} scores but {len(videos)} video keys")
    frames: dict[str, dict[str, list[float]]] = {}
    for score, (video, frame) in zip(np.asarray(scores, dtype=np.float64), videos):
        frames.setdefault(video, {}).setdefault(frame, []).append(float(score))
    aggregate = aggregate or (lambda faces: float(np.mean([max(f) for f in faces])))
    return np.array([aggregate(list(by_frame.values())) for by_frame in frames.values()], dtype=np.float64)


def _threshold(config: CalibrationConfig, reals: np.ndarray, fakes: np.ndarray, what: str, scaled: str) -> tuple[float, str]:
    """The verdict threshold of ``config.rule`` on these reals (and fakes), with its rule in words, and what the
    validation reals can vouch for: the bound on the false-positive rate of new reals (``fpr_upper_bound``)."""
    if config.rule == "val_fpr":
        threshold = threshold_at_fpr(reals, config.target_fpr)
        rule = (f"val_fpr: at most {config.target_fpr:.0%} of {reals.size} validation real {what} called fake ({scaled}); "
                "anchored on the reals, as validation fakes are synthetic and unseen real manipulations score lower")
    else:
        threshold = threshold_at_eer(reals, fakes)[0]
        rule = f"eer: the EER point of {reals.size} real and {fakes.size} synthetic fake validation {what} ({scaled})"
    above = int((reals >= threshold).sum())
    return threshold, (f"{rule}; {above} of {reals.size} at or above it: on new reals like them the false-positive rate "
                       f"is below {fpr_upper_bound(above, reals.size):.0%} (one-sided 95 % Clopper-Pearson bound)")


def choose_calibration(config: CalibrationConfig, logits: np.ndarray, labels: np.ndarray,
                       pixels: PixelHistogram | None = None, what: str = "faces",
                       videos: Sequence[tuple[str, str]] | None = None,
                       aggregate: Callable[[list[list[float]]], float] | None = None) -> CalibrationReport:
    """The calibration ``config`` asks for, from validation logits (N, 2), labels (1 = fake) and,
    for a model with a region map, the pixel histogram of the validation fakes.

    ``config.unit == "video"`` needs ``videos``: image i's (video key, frame key), its video being
    the real one its fake was made from; ``aggregate`` scores a video from its frames' face scores
    (``video_scores``). The reals' and the fakes' videos are scored apart."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if logits.ndim != 2 or logits.shape[1] != 2 or len(logits) != len(labels):
        raise ValueError(f"logits must be (N, 2) with one label each, got {logits.shape} and {labels.shape}")
    n_real, n_fake = int((labels == 0).sum()), int((labels == 1).sum())
    if not n_real:
        raise ValueError("calibration needs validation reals")
    if config.rule == "eer" and not n_fake:
        raise ValueError("calibration.rule eer needs validation fakes")
    if config.unit == "video" and videos is None:
        raise ValueError("calibration.unit video needs each validation image's video (or calibration.unit face)")
    raw = softmax_fake(logits)
    temperature = fit_temperature(logits, labels) if config.temperature == "fit" and n_fake else None
    scores = softmax_fake(logits, temperature or 1.0)
    reals, fakes = scores[labels == 0], scores[labels == 1]
    eer_t, eer = threshold_at_eer(reals, fakes) if n_fake else (float("nan"), float("nan"))
    scaled = f"temperature-scaled P(fake), T {temperature:.3g}" if temperature else "P(fake)"
    threshold, rule = _threshold(config, reals, fakes, what, scaled)
    image_threshold = image_rule = None
    unit_reals, unit_fakes = reals, fakes
    if config.unit == "video":
        keys = list(videos)
        unit_reals = video_scores(reals, [k for k, y in zip(keys, labels) if y == 0], aggregate)
        unit_fakes = video_scores(fakes, [k for k, y in zip(keys, labels) if y == 1], aggregate)
        image_threshold, image_rule = threshold, rule
        threshold, rule = _threshold(config, unit_reals, unit_fakes, "videos", scaled)
        rule += "; each validation video scored over its frames as detect and eval score a video"
    pixel_threshold = pixel_rule = None
    pixel_score = pixel_iou = pixel_auc = None
    if pixels is not None and pixels.n_positive:
        pixel_threshold, pixel_score = pixels.best(config.pixel_rule)
        pixel_iou, pixel_auc = pixels.iou_at(0.5), pixels.auc()
        pixel_rule = (f"{config.pixel_rule}: the highest pooled {'IoU' if config.pixel_rule == 'iou' else 'F1'} against "
                      f"the blended region (blend mask >= {config.pixel_mask_level:g} x its peak) of {n_fake} "
                      "validation fakes")
    calibration = Calibration(threshold=float(threshold), rule=rule, temperature=temperature,
                              pixel_threshold=pixel_threshold, pixel_rule=pixel_rule,
                              image_threshold=None if image_threshold is None else float(image_threshold),
                              image_rule=image_rule)
    ece_after = expected_calibration_error(scores, labels)
    return CalibrationReport(
        calibration=calibration, n_real=n_real, n_fake=n_fake, unit=config.unit,
        n_real_units=int(unit_reals.size), n_fake_units=int(unit_fakes.size),
        val_fpr=float((unit_reals >= threshold).mean()),
        val_fpr_upper=fpr_upper_bound(int((unit_reals >= threshold).sum()), int(unit_reals.size)),
        val_tpr=float((unit_fakes >= threshold).mean()) if n_fake else float("nan"),
        eer=eer, eer_threshold=eer_t, nll_before=_nll(raw, labels), nll_after=_nll(scores, labels),
        ece_before=expected_calibration_error(raw, labels), ece_after=ece_after,
        pixel_score=pixel_score, pixel_iou_at_05=pixel_iou, pixel_auc=pixel_auc,
    )
