"""Self-Blended Images (method.md section 2), and the blending step RBI shares with it.

``SelfBlender(cfg)(image, landmarks, box, rng)`` turns one real face (a loose crop, its 81
landmarks and its detector box, all in that crop's coordinates) into a real/fake pair with the
fake's region and boundary maps, in SBI's order: flip, landmark crop, self-blend (steps 1..6),
joint post-transforms (step 7), final crop with random margins, resize.

Passing ``source=`` (an image of the same size and coordinates) blends that image into the real
one instead of a copy of it: that is RBI (method.md section 3, step 4); all else is identical.

Every random choice of a pair is drawn first (``draw_pair`` -> ``PairParams``) and then applied
(``make_pair``, no randomness), in the order SBI makes them; a clip of frames (``mfrn.synth.clips``)
draws them once and applies them, moved a little, to every frame through the same two methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mfrn.faces.crop import (
    CropConfig,
    CropWindow,
    draw_margin_scales,
    final_crop_window,
    flip_box,
    hflip,
    landmark_crop_window,
)
from mfrn.faces.landmarks import N68, flip_landmarks
from mfrn.synth.masks import (
    MASK_TYPES,
    AffineParams,
    BlurParams,
    ElasticParams,
    MaskConfig,
    SynthesisError,
    apply_affine,
    apply_deform,
    apply_soft_mask,
    boundary_map,
    draw_affine,
    draw_blur,
    draw_elastic,
    elastic_grid,
    hull_mask,
    validate_landmarks,
)
from mfrn.synth.transforms import (
    CodecConfig,
    CodecParams,
    CodecTransform,
    JointPostTransform,
    PostTransformConfig,
    SourceTransform,
    SourceTransformConfig,
)


@dataclass
class SBIConfig:
    """Every step and probability of SBI (defaults: method.md sections 1, 2, 4)."""

    p_flip: float = 0.5
    p_68_only: float = 0.25  # step 1
    mask_types: tuple[str, ...] = MASK_TYPES  # step 2, drawn with mask_weights
    mask_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    p_transform_source: float = 0.5  # step 3: else the target is transformed
    source_transform_enabled: bool = True
    blend_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # step 6, drawn uniformly
    blend_to_uint8: str = "truncate"  # step 6: "truncate" the float blend as SBI's code does, or "round"
    post_transform_enabled: bool = True  # step 7
    source_transform: SourceTransformConfig = field(default_factory=SourceTransformConfig)
    post_transform: PostTransformConfig = field(default_factory=PostTransformConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)  # after step 7: H.264 of the pair (off: p = 0)
    mask: MaskConfig = field(default_factory=MaskConfig)
    crop: CropConfig = field(default_factory=CropConfig)  # landmark crop, final crop margins, size 380

    def __post_init__(self) -> None:
        if self.blend_to_uint8 not in ("truncate", "round"):
            raise ValueError(f"sbi.blend_to_uint8 must be truncate or round, got {self.blend_to_uint8!r}")


@dataclass
class BlendParams:
    """Every random choice of steps 1..6 for one face (``SelfBlender.draw_blend``)."""

    used_68_only: bool  # step 1
    mask_type: str  # step 2
    source_transformed: str  # step 3: "source" or "target"
    source_seed: int | None  # step 3: the source transform's parameters (None: switched off)
    affine: AffineParams  # step 4
    elastic: ElasticParams  # step 4
    blur: BlurParams  # step 5
    ratio: float  # step 6


@dataclass
class PairParams:
    """Every random choice of one pair (``SelfBlender.draw_pair``): flip, blend, post-transforms, crop."""

    flipped: bool
    blend: BlendParams
    post_seed: int | None  # step 7's parameters (None: no joint post-transforms)
    margin_scales: np.ndarray | None  # the final crop's four margin factors (None: the test margins)
    codec: CodecParams | None = None  # the pair's H.264 re-encoding (None: not compressed)


@dataclass
class FaceCrop:
    """One face on SBI's landmark crop, (flipped when the pair is): what steps 1..6 work on."""

    image: np.ndarray  # uint8 (H, W, 3)
    source: np.ndarray | None  # RBI's reconstruction through the same flip and crop, or None
    landmarks: np.ndarray  # (68 or 81, 2) in the crop
    box: np.ndarray  # (4,) detector box in the crop
    window: CropWindow  # the landmark crop in the (flipped) input image's coordinates
    flipped: bool


@dataclass
class BlendResult:
    """Steps 1..6 on a landmark crop, before the post-transforms and the final crop."""

    fake: np.ndarray  # uint8 (H, W, 3)
    target: np.ndarray  # uint8 (H, W, 3): T, the real image the fake was blended into
    mask_tilde: np.ndarray  # float32 (H, W): M~ before the ratio
    blend_ratio: float
    mask_type: str
    source_transformed: str  # "source" or "target"
    used_68_only: bool

    @property
    def region_map(self) -> np.ndarray:
        return (self.blend_ratio * self.mask_tilde).astype(np.float32)

    @property
    def boundary_map(self) -> np.ndarray:
        return boundary_map(self.mask_tilde)


@dataclass
class SynthPair:
    """A real face and the fake made from it, both through the same final crop window."""

    real: np.ndarray  # uint8 (S, S, 3)
    fake: np.ndarray  # uint8 (S, S, 3)
    region_map: np.ndarray  # float32 (S, S): M = r * M~ of the fake
    boundary_map: np.ndarray  # float32 (S, S): 4 M~ (1 - M~) of the fake
    landmarks: np.ndarray  # (81, 2) float32 in the final crop
    box: np.ndarray  # (4,) float32 detector box in the final crop
    mask_type: str
    blend_ratio: float
    flipped: bool
    source_transformed: str  # "source" or "target"
    window: CropWindow  # final crop, in the (flipped, when ``flipped``) input image's coordinates
    used_68_only: bool = False
    params: PairParams | None = None  # the random choices behind this pair

    def view(self, image: np.ndarray) -> np.ndarray:
        """Another image in the input's coordinates (a reconstruction, say) through this pair's flip and crop."""
        return self.window.image(hflip(image) if self.flipped else image)

    def real_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """The real image's region and boundary maps: all zeros."""
        zeros = np.zeros_like(self.region_map)
        return zeros, zeros.copy()


def _check_image(image: np.ndarray, what: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise SynthesisError(f"{what} must be an RGB uint8 (H, W, 3) array, got {desc}")


def _blend(source: np.ndarray, target: np.ndarray, region: np.ndarray, truncate: bool = True) -> np.ndarray:
    """fake = M * S + (1 - M) * T, computed only inside the bounding box of M > 0, then truncated
    (SBI) or rounded to uint8; either way M = 0 gives T exactly."""
    fake = target.copy()
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    if len(rows) == 0:
        return fake
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    weight = region[box][:, :, None]
    blended = weight * source[box].astype(np.float32) + (1.0 - weight) * target[box].astype(np.float32)
    fake[box] = np.clip(blended if truncate else np.rint(blended), 0, 255).astype(np.uint8)
    return fake


class SelfBlender:
    """SBI's sample generator; with ``source=`` it blends a reconstruction instead (RBI)."""

    def __init__(self, cfg: SBIConfig | None = None) -> None:
        self.cfg = cfg or SBIConfig()
        weights = np.asarray(self.cfg.mask_weights, dtype=np.float64)
        if len(weights) != len(self.cfg.mask_types) or weights.sum() <= 0 or (weights < 0).any():
            raise ValueError(
                f"mask_weights {tuple(self.cfg.mask_weights)} must be non-negative, not all zero, one per mask type "
                f"{tuple(self.cfg.mask_types)}"
            )
        unknown = set(self.cfg.mask_types) - set(MASK_TYPES)
        if unknown:
            raise ValueError(f"unknown mask type(s) {sorted(unknown)}; known: {', '.join(MASK_TYPES)}")
        if not self.cfg.blend_ratios:
            raise ValueError("blend_ratios is empty")
        self._mask_p = weights / weights.sum()
        self.source_transform = SourceTransform(self.cfg.source_transform)
        self.post_transform = JointPostTransform(self.cfg.post_transform)
        self.codec = CodecTransform(self.cfg.codec)

    def draw_blend(self, shape: tuple[int, ...], n_points: int, rng: np.random.Generator) -> BlendParams:
        """The random choices of steps 1..6 for a landmark crop of ``shape`` with ``n_points`` landmarks."""
        cfg = self.cfg
        used_68_only = bool(rng.random() < cfg.p_68_only) or n_points == N68  # step 1
        mask_type = str(cfg.mask_types[int(rng.choice(len(cfg.mask_types), p=self._mask_p))])  # step 2
        on_source = bool(rng.random() < cfg.p_transform_source)  # step 3
        source_seed = self.source_transform.draw(rng) if cfg.source_transform_enabled else None
        affine = draw_affine(rng, cfg.mask)  # step 4
        elastic = draw_elastic(elastic_grid(shape, cfg.mask), rng)
        blur = draw_blur(rng, cfg.mask)  # step 5
        ratio = float(cfg.blend_ratios[int(rng.integers(len(cfg.blend_ratios)))])  # step 6
        return BlendParams(used_68_only, mask_type, "source" if on_source else "target", source_seed, affine,
                           elastic, blur, ratio)

    def apply_blend(
        self, image: np.ndarray, landmarks: np.ndarray, params: BlendParams, source: np.ndarray | None = None
    ) -> BlendResult:
        """Steps 1..6 with drawn parameters: mask, source transform, affine + elastic, blur, blend."""
        cfg = self.cfg
        pts = np.asarray(landmarks, dtype=np.float32)
        if params.used_68_only:
            pts = pts[:N68]
        mask = hull_mask(pts, image.shape, params.mask_type, cfg.mask)
        src = image.copy() if source is None else source.copy()
        target = image
        if params.source_seed is not None:
            if params.source_transformed == "source":
                src = self.source_transform.apply(src, params.source_seed)
            else:
                target = self.source_transform.apply(target, params.source_seed)
        src, mask = apply_affine(src, mask, params.affine)
        mask = apply_deform(mask, params.elastic, cfg.mask)
        mask_tilde = apply_soft_mask(mask, params.blur, out_shape=image.shape)
        fake = _blend(src, target, params.ratio * mask_tilde, truncate=cfg.blend_to_uint8 == "truncate")
        return BlendResult(
            fake=fake,
            target=np.ascontiguousarray(target),
            mask_tilde=mask_tilde,
            blend_ratio=params.ratio,
            mask_type=params.mask_type,
            source_transformed=params.source_transformed,
            used_68_only=params.used_68_only,
        )

    def blend(
        self,
        image: np.ndarray,
        landmarks: np.ndarray,
        rng: np.random.Generator,
        source: np.ndarray | None = None,
    ) -> BlendResult:
        """Steps 1..6 on a landmark crop: mask, source transform, affine + elastic, blur, blend."""
        return self.apply_blend(image, landmarks, self.draw_blend(image.shape, len(landmarks), rng), source)

    def check_inputs(
        self, image: np.ndarray, landmarks: np.ndarray, box: np.ndarray, source: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Validated float32 landmarks and box of one face, or a ``SynthesisError`` saying what is wrong."""
        _check_image(image, "image")
        if source is not None:
            _check_image(source, "source")
            if source.shape != image.shape:
                raise SynthesisError(f"source {source.shape} must have the image's shape {image.shape}")
        pts = validate_landmarks(landmarks, image.shape, self.cfg.mask)
        face_box = np.asarray(box, dtype=np.float32).reshape(4)
        if not np.all(np.isfinite(face_box)) or face_box[2] <= face_box[0] or face_box[3] <= face_box[1]:
            raise SynthesisError(f"invalid face box {face_box.tolist()}")
        return pts, face_box

    def draw_flip(self, rng: np.random.Generator, augment: bool = True) -> bool:
        return augment and bool(rng.random() < self.cfg.p_flip)

    def landmark_crop(
        self, image: np.ndarray, landmarks: np.ndarray, box: np.ndarray, flipped: bool, source: np.ndarray | None = None
    ) -> FaceCrop:
        """The face on SBI's landmark crop, mirrored first when ``flipped`` (inputs from ``check_inputs``)."""
        pts, face_box, width = landmarks, box, image.shape[1]
        if flipped:
            pts, face_box = flip_landmarks(pts, width), flip_box(face_box, width)
        crop1 = landmark_crop_window(image.shape, pts, self.cfg.crop)  # in the (flipped) image's coordinates
        if flipped:  # flip only the landmark crop: the same pixels as cropping the flipped image, cheaper
            mirrored = CropWindow(width - crop1.x1, crop1.y0, width - crop1.x0, crop1.y1)
            image1 = hflip(mirrored.image(image))
            source1 = hflip(mirrored.image(source)) if source is not None else None
        else:
            image1 = crop1.image(image)
            source1 = crop1.image(source) if source is not None else None
        return FaceCrop(image1, source1, crop1.points(pts), crop1.box(face_box), crop1, flipped)

    def draw_pair(self, face: FaceCrop, rng: np.random.Generator, augment: bool = True) -> PairParams:
        """The random choices after the flip: steps 1..6, then step 7 and the crop margins when ``augment``."""
        blend = self.draw_blend(face.image.shape, len(face.landmarks), rng)
        post_seed = self.post_transform.draw(rng) if self.cfg.post_transform_enabled and augment else None
        margins = draw_margin_scales(rng, self.cfg.crop) if augment else None
        # the same CRF and scale for the real and its fake: only the blend tells them apart
        codec = self.codec.draw(rng, float(face.box[2] - face.box[0])) if augment else None
        return PairParams(face.flipped, blend, post_seed, margins, codec)

    def make_pair(self, face: FaceCrop, params: PairParams) -> SynthPair:
        """The pair that ``params`` stand for (no randomness): blend, post-transforms, final crop, resize."""
        blend = self.apply_blend(face.image, face.landmarks, params.blend, face.source)
        fake, real = blend.fake, blend.target
        if params.post_seed is not None:
            fake, real = self.post_transform.apply(fake, real, params.post_seed)
        fake, real = self.codec.apply(fake, real, params.codec)
        try:
            crop2 = final_crop_window(face.image.shape, face.box, self.cfg.crop, scales=params.margin_scales)
        except ValueError as err:
            raise SynthesisError(f"final crop failed: {err}") from err
        return SynthPair(
            real=crop2.image(real),
            fake=crop2.image(fake),
            region_map=crop2.image(blend.region_map),
            boundary_map=crop2.image(blend.boundary_map),
            landmarks=crop2.points(face.landmarks),
            box=crop2.box(face.box),
            mask_type=blend.mask_type,
            blend_ratio=blend.blend_ratio,
            flipped=face.flipped,
            source_transformed=blend.source_transformed,
            window=crop2.offset(face.window.x0, face.window.y0),
            used_68_only=blend.used_68_only,
            params=params,
        )

    def __call__(
        self,
        image: np.ndarray,
        landmarks: np.ndarray,
        box: np.ndarray,
        rng: np.random.Generator,
        source: np.ndarray | None = None,
        augment: bool = True,
    ) -> SynthPair:
        """One real/fake pair from a loose face crop, its landmarks and its detector box.

        ``augment=False`` makes a validation pair as SBI's val split does: no flip, no joint
        post-transforms (step 7), the final crop's margins fixed at the test scale (0.5); the
        self-blend itself (steps 1..6, the source transform included) stays random: it defines the fake.
        """
        pts, face_box = self.check_inputs(image, landmarks, box, source)
        face = self.landmark_crop(image, pts, face_box, self.draw_flip(rng, augment), source)
        return self.make_pair(face, self.draw_pair(face, rng, augment))
