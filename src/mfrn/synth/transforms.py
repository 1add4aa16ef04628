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


@dataclass
class CodecConfig:
    """Training-time video-codec compression of a fake and its real (issue 8, item 5; off by default).

    With probability ``p`` both go through libx264 with one CRF drawn from ``crf`` and one down-scale:
    when the face box is wider than a width drawn from ``face_width`` (pixels; (0, 0) = never scaled),
    the crop is shrunk so the face has that width, encoded, decoded and scaled back up (bilinear), as a
    face at that size in a compressed frame and then cropped and resized for the detector looks.
    # interpretation: each image is one intra-coded frame; x264 codes a lone frame at CRF c about as
    # well as the frames of a video at CRF c - 3 (PSNR measured on the demo clips, where CRF 40 video
    # frames match lone frames at CRF 40-43), so the default range reaches beyond FF++'s c40

    ``motion_frames`` > 0 models inter-frame coding instead: the image is the last of a short stream of
    ``motion_frames`` + 1 frames that drift towards it (a translation of up to ``motion_px`` pixels and a
    zoom of up to ``motion_zoom`` per frame, drawn once for the pair), so it is coded as a P frame predicted
    from the frames before it, as in a moving video. It costs about 3x the lone frame: +47 against +15 ms
    of CPU per SBI sample at motion_frames 4 (224 px output, a 171 px face, face_width 80-256;
    ``benchmarks/bench_sbi.py --no-rbi --scales 2 --size 224``). Off (0) by default and in the demo: on the
    demo's validation pairs coded the same way (``data.val_motion_frames``) it lowered both the clean and
    the inter-frame val AUC (README, "Heavy compression").
    """

    p: float = 0.0
    crf: tuple[int, int] = (20, 45)  # inclusive, drawn uniformly
    face_width: tuple[int, int] = (0, 0)
    preset: str = "medium"
    motion_frames: int = 0  # 0: one intra-coded frame (the default); N: the image is frame N + 1 of a stream
    motion_px: float = 1.0  # the most a frame moves from the next, in pixels of the coded (scaled) image
    motion_zoom: float = 0.005  # the most a frame's scale differs from the next's (relative)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"sbi.codec.p must be in [0, 1], got {self.p}")
        low, high = (int(v) for v in self.crf)
        if not 0 <= low <= high <= 51:
            raise ValueError(f"sbi.codec.crf must be a range within 0..51, got {tuple(self.crf)}")
        w_low, w_high = (int(v) for v in self.face_width)
        if (w_low, w_high) != (0, 0) and not 16 <= w_low <= w_high:
            raise ValueError(f"sbi.codec.face_width must be (0, 0) or a range of widths >= 16 px, got {tuple(self.face_width)}")
        if not 0 <= int(self.motion_frames) <= 30:
            raise ValueError(f"sbi.codec.motion_frames must be in 0..30, got {self.motion_frames}")
        if self.motion_px < 0 or not 0 <= self.motion_zoom < 0.5:
            raise ValueError(f"sbi.codec.motion_px must be >= 0 and motion_zoom in [0, 0.5), got "
                             f"{self.motion_px} and {self.motion_zoom}")


@dataclass(frozen=True)
class CodecParams:
    """One draw of ``CodecTransform``: the CRF, the down-scale factor (1.0: full size) and, with
    ``motion_frames``, the drift per frame (dx, dy in pixels, relative zoom)."""

    crf: int
    scale: float
    motion: tuple[float, float, float] | None = None


class CodecTransform:
    """H.264 re-encoding with one set of parameters for a fake and its real (see ``CodecConfig``).

    ``draw`` makes the random choices and ``apply`` uses them, so that the frames of a clip can share one.
    """

    def __init__(self, cfg: CodecConfig | None = None) -> None:
        self.cfg = cfg or CodecConfig()

    @property
    def enabled(self) -> bool:
        return self.cfg.p > 0

    def draw(self, rng: np.random.Generator, face_width: float) -> CodecParams | None:
        """``face_width``: the face box's width in the images' pixels. Draws from ``rng`` only when enabled;
        None: this pair is not compressed."""
        if not self.enabled or rng.random() >= self.cfg.p:
            return None
        crf = int(rng.integers(int(self.cfg.crf[0]), int(self.cfg.crf[1]) + 1))
        scale = 1.0
        if tuple(self.cfg.face_width) != (0, 0):
            target = float(rng.uniform(float(self.cfg.face_width[0]), float(self.cfg.face_width[1])))
            scale = min(1.0, target / max(float(face_width), 1.0))
        motion = None
        if self.cfg.motion_frames:
            px, zoom = float(self.cfg.motion_px), float(self.cfg.motion_zoom)
            motion = (float(rng.uniform(-px, px)), float(rng.uniform(-px, px)), float(rng.uniform(-zoom, zoom)))
        return CodecParams(crf, scale, motion)

    def apply(self, fake: np.ndarray, real: np.ndarray, params: CodecParams | None) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        from mfrn.data.video_io import h264_roundtrip, h264_roundtrip_frames

        if params is None:
            return fake, real
        if fake.shape != real.shape:
            raise ValueError(f"fake {fake.shape} and real {real.shape} differ in shape")
        height, width = fake.shape[:2]
        size = (max(16, round(width * params.scale)), max(16, round(height * params.scale)))
        scaled = params.scale < 1.0
        out = []
        for image in (fake, real):
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scaled else image
            if params.motion is None:
                coded = h264_roundtrip(small, params.crf, self.cfg.preset)
            else:
                stream = _drifting_frames(small, params.motion, int(self.cfg.motion_frames))
                coded = h264_roundtrip_frames(stream, params.crf, self.cfg.preset)[-1]
            out.append(cv2.resize(coded, (width, height), interpolation=cv2.INTER_LINEAR) if scaled else coded)
        return out[0], out[1]


def _drifting_frames(image: np.ndarray, motion: tuple[float, float, float], n_before: int) -> list[np.ndarray]:
    """``n_before`` frames that drift towards ``image`` by ``motion`` (dx, dy, zoom) per frame, then ``image``:
    frame k is ``image`` moved by (n_before - k) x the drift about its centre (reflected borders)."""
    import cv2

    height, width = image.shape[:2]
    dx, dy, zoom = motion
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    frames = []
    for k in range(n_before):
        steps = n_before - k
        matrix = cv2.getRotationMatrix2D(centre, 0.0, (1.0 + zoom) ** steps)
        matrix[:, 2] += (dx * steps, dy * steps)
        frames.append(cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT_101))
    return frames + [image]


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
