"""Temporally consistent training fakes: one real clip of T frames -> one fake clip.

A real face swap is one decision per video (one blending mask shape, one colour correction, one
blend strength) whose boundary then flickers a little from frame to frame, while the real video's
face does not. ``ClipBlender`` makes such clips from SBI's own steps (``SelfBlender``, one
implementation for frames and clips):

* drawn **once per clip**, exactly as SBI draws them for one image (they are the first frame's
  draws): the flip, 68 or 81 points, the mask type, the blend ratio, which of S / T gets the source
  transform and its parameters, the blur (step 5), the joint post-transforms and the final crop's
  margin factors (applied to each frame's own detector box, so the real clip and its fake share
  every frame's window);
* **drifting smoothly** along the clip: the mask's affine (translation and scales follow a random
  walk with correlated, bounded steps, ``drift_walk``) and its elastic field (turned from one noise
  draw towards a second one by a small angle per frame, ``ElasticParams.phase``), so the blending
  boundary moves a little;
* **per frame**: RBI's reconstruction, with its own latent noise (the caller passes one source per
  frame), and the region and boundary maps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mfrn.data.clips import TRACK_MIN_IOU
from mfrn.synth.masks import AffineParams, ElasticParams, SynthesisError, draw_elastic, elastic_grid
from mfrn.synth.sbi import PairParams, SBIConfig, SelfBlender, SynthPair


@dataclass
class ClipConfig:
    """Clips of consecutive frames for the temporal head, and how their fakes drift (config ``clip:``)."""

    length: int = 8  # T: frames per training clip (the temporal head's input)
    clips_per_video: int = 0  # training clips per video, evenly spaced over its clips (0 = all)
    # tracking (where prepare stored no tracks, and at test time): a face continues a track when its box
    # overlaps the previous frame's by this IoU
    min_track_iou: float = TRACK_MIN_IOU
    # interpretation: the paper has no clips; the drift sizes below move the boundary by about a pixel per
    # frame on a 200 px landmark crop (a real swap's boundary jitter), far inside SBI's own affine range.
    # The affine's per-frame change: a Gaussian step of this standard deviation (fraction of the crop
    # for translations, absolute for scales), correlated with the previous step by ``drift_smoothness``
    # (0 = a plain random walk, near 1 = slow, even motion) and clipped at ``drift_max_step`` standard
    # deviations, so no frame jumps.
    translate_step: float = 0.003
    scale_step: float = 0.003
    drift_smoothness: float = 0.7
    drift_max_step: float = 2.5
    # the drifting affine stays inside SBI's ranges (mask.translate_x/y, mask.scale_range), reflected there
    drift_within_range: bool = True
    # radians per frame by which the elastic field turns from its first noise draw towards a second one
    # (0 = one field for the whole clip); 0.2 changes a displacement by about a fifth of its size per frame
    elastic_step: float = 0.2

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"clip.length must be >= 1, got {self.length}")
        if self.clips_per_video < 0:
            raise ValueError(f"clip.clips_per_video must be >= 0, got {self.clips_per_video}")
        if not 0.0 <= self.drift_smoothness < 1.0:
            raise ValueError(f"clip.drift_smoothness must be in [0, 1), got {self.drift_smoothness}")
        for name in ("translate_step", "scale_step", "elastic_step", "drift_max_step"):
            if getattr(self, name) < 0:
                raise ValueError(f"clip.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.min_track_iou <= 1.0:
            raise ValueError(f"clip.min_track_iou must be in [0, 1], got {self.min_track_iou}")


def drift_walk(rng: np.random.Generator, length: int, step: float, smoothness: float = 0.7,
               max_step: float = 2.5) -> np.ndarray:
    """Offsets (length,) from 0 at the first frame: a random walk whose steps are N(0, step^2) in the
    long run, each correlated with the previous one by ``smoothness`` (an AR(1) velocity) and clipped
    at ``max_step`` x ``step``, so that successive frames never differ by more than that."""
    if length <= 1 or step == 0.0:
        return np.zeros(max(length, 0))
    shocks = rng.standard_normal(length - 1)
    velocity = np.empty(length - 1)
    previous = shocks[0]
    for index, shock in enumerate(shocks):
        previous = shock if index == 0 else smoothness * previous + np.sqrt(1.0 - smoothness**2) * shock
        velocity[index] = previous
    steps = np.clip(velocity * step, -max_step * step, max_step * step)
    return np.concatenate([[0.0], np.cumsum(steps)])


def _reflect(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` folded back into [low, high] at its ends (distances between values never grow)."""
    if high <= low:
        return np.full_like(values, low)
    span = high - low
    folded = np.mod(values - low, 2 * span)
    return low + np.where(folded > span, 2 * span - folded, folded)


@dataclass
class ClipPair:
    """A real clip and the fake clip made from it: frame t of both through frame t's window."""

    frames: list[SynthPair]  # one real/fake pair per frame, in order
    params: list[PairParams]  # the random choices behind each frame (shared except the drift)

    def __len__(self) -> int:
        return len(self.frames)

    def stack(self, name: str) -> np.ndarray:
        """``real`` / ``fake`` (T, S, S, 3) uint8 or ``region_map`` / ``boundary_map`` (T, S, S) float32."""
        return np.stack([getattr(pair, name) for pair in self.frames])

    @property
    def real(self) -> np.ndarray:
        return self.stack("real")

    @property
    def fake(self) -> np.ndarray:
        return self.stack("fake")

    @property
    def region_map(self) -> np.ndarray:
        return self.stack("region_map")

    @property
    def boundary_map(self) -> np.ndarray:
        return self.stack("boundary_map")


class ClipBlender:
    """SBI (or RBI, with one reconstruction per frame) for a clip of frames of one tracked face."""

    def __init__(self, sbi_config: SBIConfig | None = None, clip_config: ClipConfig | None = None) -> None:
        self.frame = SelfBlender(sbi_config)
        self.cfg = clip_config or ClipConfig()

    def _drifted(self, base: PairParams, rng: np.random.Generator, length: int, grid_shape) -> list[PairParams]:
        """Per-frame parameters: ``base`` for frame 0, the affine and the elastic field moved after it."""
        cfg, mask = self.cfg, self.frame.cfg.mask
        walk = lambda step: drift_walk(rng, length, step, cfg.drift_smoothness, cfg.drift_max_step)  # noqa: E731
        affine = base.blend.affine
        tx = affine.translate_x + walk(cfg.translate_step)
        ty = affine.translate_y + walk(cfg.translate_step)
        sx = affine.scale_x + walk(cfg.scale_step)
        sy = sx if mask.isotropic_scale else affine.scale_y + walk(cfg.scale_step)
        if cfg.drift_within_range:
            tx = _reflect(tx, -mask.translate_x, mask.translate_x)
            ty = _reflect(ty, -mask.translate_y, mask.translate_y)
            sx, sy = (_reflect(s, *sorted(mask.scale_range)) for s in (sx, sy))
        drift_noise = draw_elastic(grid_shape, rng).noise if cfg.elastic_step > 0 else None
        out = [base]
        for t in range(1, length):
            elastic = ElasticParams(base.blend.elastic.noise, drift_noise, cfg.elastic_step * t)
            blend = dataclasses.replace(base.blend, affine=AffineParams(float(tx[t]), float(ty[t]), float(sx[t]),
                                                                         float(sy[t])), elastic=elastic)
            out.append(dataclasses.replace(base, blend=blend))
        return out

    def __call__(
        self,
        images: Sequence[np.ndarray],
        landmarks: Sequence[np.ndarray],
        boxes: Sequence[np.ndarray],
        rng: np.random.Generator,
        sources: Sequence[np.ndarray | None] | None = None,
        augment: bool = True,
    ) -> ClipPair:
        """One real/fake clip from T loose face crops of one person (each with its landmarks and box).

        ``sources`` (one per frame, or None) are RBI's reconstructions, each with its own latent noise.
        The first frame gets exactly the pair ``SelfBlender`` makes from the same generator state.
        """
        length = len(images)
        if length == 0 or len(landmarks) != length or len(boxes) != length:
            raise SynthesisError(f"a clip needs as many landmarks and boxes as frames: {length} frames, "
                                 f"{len(landmarks)} landmark sets, {len(boxes)} boxes")
        sources = list(sources) if sources is not None else [None] * length
        if len(sources) != length or (any(s is None for s in sources) and any(s is not None for s in sources)):
            raise SynthesisError("an RBI clip needs one reconstruction for every frame (or none at all)")
        checked = [self.frame.check_inputs(*args) for args in zip(images, landmarks, boxes, sources)]
        flipped = self.frame.draw_flip(rng, augment)
        faces = [self.frame.landmark_crop(image, pts, box, flipped, source)
                 for image, (pts, box), source in zip(images, checked, sources)]
        if len({len(face.landmarks) for face in faces}) > 1:
            raise SynthesisError("the frames of a clip must all have 68 or all 81 landmarks")
        base = self.frame.draw_pair(faces[0], rng, augment)
        params = self._drifted(base, rng, length, elastic_grid(faces[0].image.shape, self.frame.cfg.mask))
        return ClipPair([self.frame.make_pair(face, p) for face, p in zip(faces, params)], params)
