"""SBI's colour / quality transforms on albumentations 2.0.x (method.md section 2, steps 3 and 7).

* ``SourceTransform``: applied to one of source S or target T before blending.
* ``JointPostTransform``: applied with the same parameters to a fake and its real.

Both are reproducible from a ``numpy.random.Generator``: each call draws a seed from it (``draw``) and
gives the albumentations pipeline one numpy and one Python generator made from that seed (``apply``)
(``set_random_state``, shared by all its transforms: a tenth of the cost of ``set_random_seed``,
which builds a pair per transform).

# interpretation: SBI passes hue/sat/val shifts of +-0.3 to albumentations 1.x on uint8 images, where
# shifts are absolute in OpenCV's uint8 HSV units (hue 0..179, sat/val 0..255); albumentations 2.0
# uses the same units for uint8, so the default +-0.3 reproduces SBI's training (a shift of at most
# one level). To read +-0.3 as a fraction of the range instead, set hue 54, sat 76.5, val 76.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class SourceTransformConfig:
    """Step 3's source transform (defaults: SBI)."""

    p_rgb_shift: float = 0.3
    rgb_shift_limit: float = 20.0
    p_hsv: float = 1.0
    hue_shift_limit: float = 0.3
    sat_shift_limit: float = 0.3
    val_shift_limit: float = 0.3
    p_brightness_contrast: float = 1.0
    brightness_limit: float = 0.1
    contrast_limit: float = 0.1
    # then one of [down-scale by a factor from downscale_factors (nearest down, bilinear up), sharpen]
    p_quality: float = 1.0
    downscale_factors: tuple[int, ...] = (2, 4)
    downscale_weight: float = 1.0  # relative odds of down-scaling vs sharpening
    sharpen_weight: float = 1.0
    sharpen_alpha: tuple[float, float] = (0.2, 0.5)
    sharpen_lightness: tuple[float, float] = (0.5, 1.0)


@dataclass
class PostTransformConfig:
    """Step 7's joint post-transforms (defaults: SBI)."""

    p_rgb_shift: float = 0.3
    rgb_shift_limit: float = 20.0
    p_hsv: float = 0.3
    hue_shift_limit: float = 0.3
    sat_shift_limit: float = 0.3
    val_shift_limit: float = 0.3
    p_brightness_contrast: float = 0.3
    brightness_limit: float = 0.3
    contrast_limit: float = 0.3
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (40, 100)


def _symmetric(limit: float) -> tuple[float, float]:
    return (-float(limit), float(limit))


def _colour_transforms(cfg: SourceTransformConfig | PostTransformConfig) -> list[Any]:
    import albumentations as A

    shift = _symmetric(cfg.rgb_shift_limit)
    return [
        A.RGBShift(r_shift_limit=shift, g_shift_limit=shift, b_shift_limit=shift, p=cfg.p_rgb_shift),
        A.HueSaturationValue(
            hue_shift_limit=_symmetric(cfg.hue_shift_limit),
            sat_shift_limit=_symmetric(cfg.sat_shift_limit),
            val_shift_limit=_symmetric(cfg.val_shift_limit),
            p=cfg.p_hsv,
        ),
        A.RandomBrightnessContrast(
            brightness_limit=_symmetric(cfg.brightness_limit),
            contrast_limit=_symmetric(cfg.contrast_limit),
            p=cfg.p_brightness_contrast,
        ),
    ]


def _draw_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def _seed(pipeline: Any, seed: int) -> None:
    """Seed every transform of ``pipeline`` (one generator pair, shared): one seed, one set of parameters."""
    import random

    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))


class SourceTransform:
    """Colour jitter then down-scale-or-sharpen, on one uint8 RGB image."""

    def __init__(self, cfg: SourceTransformConfig | None = None) -> None:
        import albumentations as A
        import cv2

        self.cfg = cfg or SourceTransformConfig()
        factors = tuple(int(f) for f in self.cfg.downscale_factors)
        quality: list[Any] = []
        if factors and self.cfg.downscale_weight > 0:
            for factor in factors:  # SBI picks the factor uniformly; one Downscale per factor
                quality.append(
                    A.Downscale(
                        scale_range=(1.0 / factor, 1.0 / factor),
                        interpolation_pair={"downscale": cv2.INTER_NEAREST, "upscale": cv2.INTER_LINEAR},
                        p=self.cfg.downscale_weight / len(factors),
                    )
                )
        if self.cfg.sharpen_weight > 0:
            quality.append(
                A.Sharpen(
                    alpha=tuple(self.cfg.sharpen_alpha),
                    lightness=tuple(self.cfg.sharpen_lightness),
                    p=self.cfg.sharpen_weight,
                )
            )
        steps = _colour_transforms(self.cfg)
        if quality:
            steps.append(A.OneOf(quality, p=self.cfg.p_quality))
        self.pipeline = A.Compose(steps)

    draw = staticmethod(_draw_seed)  # the parameters of one call, as the seed of its pipeline

    def apply(self, image: np.ndarray, seed: int) -> np.ndarray:
        """The transform a seed stands for (images of one shape get the same parameters from one seed)."""
        _seed(self.pipeline, seed)
        return self.pipeline(image=image)["image"]

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(image, self.draw(rng))


class JointPostTransform:
    """Colour jitter and JPEG with one set of parameters for a fake and its real."""

    def __init__(self, cfg: PostTransformConfig | None = None) -> None:
        import albumentations as A

        self.cfg = cfg or PostTransformConfig()
        low, high = (int(q) for q in self.cfg.jpeg_quality)
        steps = _colour_transforms(self.cfg)
        steps.append(A.ImageCompression(compression_type="jpeg", quality_range=(low, high), p=self.cfg.p_jpeg))
        self.pipeline = A.Compose(steps, additional_targets={"real": "image"})

    draw = staticmethod(_draw_seed)

    def apply(self, fake: np.ndarray, real: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if fake.shape != real.shape:
            raise ValueError(f"fake {fake.shape} and real {real.shape} differ in shape")
        _seed(self.pipeline, seed)
        out = self.pipeline(image=fake, real=real)
        return out["image"], out["real"]

    def __call__(self, fake: np.ndarray, real: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return self.apply(fake, real, self.draw(rng))
