"""The training ``Dataset``: each prepared real face and a fake made from it (SBI or RBI), in pairs.

Every sample's randomness comes from ``numpy.random.default_rng((seed, epoch, index))``, so a run
reproduces whatever the number of DataLoader workers, and a resumed run sees the same samples.
Validation datasets fix the epoch, so their fakes are the same at every evaluation.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mfrn.data.frames import evenly_spaced
from mfrn.data.manifest import FaceSample, Manifest
from mfrn.synth.rbi import RBIConfig, ReconstructionCache, build_reconstructor_from_config

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    prepared: str = ""  # folder written by `mfrn prepare`
    val_fraction: float = 0.2  # share of videos held out for validation when the manifest has no split
    frames_per_video: int = 8  # training frames per real video (SBI uses 8 of the 32 extracted)
    # real faces per optimizer step over ALL processes (each comes with its fake, so 2x images); under
    # torchrun it is split evenly across the processes, so a multi-GPU run takes the 1-GPU run's steps
    batch_size: int = 16
    num_workers: int = 4
    seed: int = 0
    # faces of a frame that train: "largest" (SBI: the largest face only) or "all" that prepare kept
    faces_per_frame: str = "largest"
    # SBI makes its val pairs without training-time augmentation (no flip, no joint post-transforms,
    # test crop margins); True uses the training pipeline for them too
    val_augmentation: bool = False
    # also report the val AUC on the same val pairs re-encoded by H.264 at this CRF (e.g. 40, FF++'s c40):
    # a compression-robustness signal measured on validation data, for choosing sbi.codec settings without a
    # test set; None: off. It never chooses the checkpoint (the val AUC does)
    val_crf: int | None = None
    # with val_crf: code each val image as the last (predicted) frame of a stream of this many frames drifting
    # towards it (sbi.codec.motion_frames' coding, a drift of up to 1 px and 0.5 % per frame, fixed per pair),
    # the validation signal for inter-frame artefacts; 0: one intra frame. Independent of sbi.codec, so runs
    # that train with and without sbi.codec.motion_frames are compared on the same validation signal
    val_motion_frames: int = 0

    def __post_init__(self) -> None:
        if self.faces_per_frame not in ("largest", "all"):
            raise ValueError(f"data.faces_per_frame must be largest or all, got {self.faces_per_frame!r}")
        if self.val_crf is not None and not 0 <= int(self.val_crf) <= 51:
            raise ValueError(f"data.val_crf must be an H.264 CRF in 0..51 (or null), got {self.val_crf!r}")
        if not 0 <= int(self.val_motion_frames) <= 30:
            raise ValueError(f"data.val_motion_frames must be in 0..30, got {self.val_motion_frames!r}")
        if self.batch_size < 1:
            raise ValueError("data.batch_size must be >= 1")


def _hash_fraction(key: str) -> float:
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF


# The splits whose real faces the detector, the generator and the reconstruction cache may see
# (method.md section 3 item 7): never a test split, never a fake video.
TRAINING_SPLITS = ("train", "val")
LEFT_OUT_FAKE = "of fake videos (training fakes are synthetic)"
LEFT_OUT_UNSPLIT = "of videos in no split (the dataset's split files were not found)"


@dataclass
class FaceSelection:
    """The faces of a manifest one stage uses, and how many it left out, by reason."""

    faces: list[FaceSample]
    splits: tuple[str, ...]
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> number of faces

    @property
    def n_left_out(self) -> int:
        return sum(self.left_out.values())

    def format(self, stage: str) -> str:
        line = f"{stage}: {len(self.faces)} faces used (real faces of the {' and '.join(self.splits)} split"
        line += "s)" if len(self.splits) > 1 else ")"
        if not self.left_out:
            return line + "; none left out"
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.left_out.items(), key=lambda i: -i[1]))
        return f"{line}; {self.n_left_out} left out: {reasons}"


def _side(record, val_fraction: float) -> str:
    """The split of a real record: the dataset's own, else train/val by a hash of the video key."""
    if record.split is not None:
        return record.split
    return "val" if _hash_fraction(record.key) < val_fraction else "train"


def _box_area(sample: FaceSample) -> float:
    x1, y1, x2, y2 = sample.face.box
    return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)


def _largest_per_frame(samples: list[FaceSample]) -> list[FaceSample]:
    """One face per frame: the one with the largest detector box (ties: the first listed)."""
    best: dict[int, FaceSample] = {}
    for sample in samples:
        index = sample.frame.index
        if index not in best or _box_area(sample) > _box_area(best[index]):
            best[index] = sample
    return [s for s in samples if best[s.frame.index] is s]


def select_faces(
    manifest: Manifest,
    splits: Sequence[str] = TRAINING_SPLITS,
    val_fraction: float = 0.2,
    frames_per_video: int = 0,
    faces_per_frame: str = "all",
) -> FaceSelection:
    """Real faces of ``splits`` ("train", "val", or "test" where the manifest names one).

    The one place that decides which prepared faces a stage may use (training, validation, the
    built-in generator, the RBI cache). The manifest's own split is used where the dataset defines
    one; otherwise whole videos are assigned by a hash of their key (``val_fraction`` of them to
    "val"), so frames of one video never sit on both sides. Fake videos of a benchmark are never used
    (training fakes are synthetic). ``faces_per_frame="largest"`` keeps the face with the largest
    detector box of each frame, as SBI trains (interpretation: "largest" by box area); "all" keeps
    every face that prepare kept. ``frames_per_video`` > 0 keeps that many evenly spaced frames per
    video. Everything left out is counted by reason.
    """
    splits = tuple(splits)
    if faces_per_frame not in ("largest", "all"):
        raise ValueError(f"faces_per_frame must be largest or all, got {faces_per_frame!r}")
    for split in splits:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
    left_out: Counter = Counter()
    by_video: dict[str, list[FaceSample]] = {}
    for sample in manifest.faces():
        record = sample.record
        if record.label == 1:
            left_out[LEFT_OUT_FAKE] += 1
            continue
        side = _side(record, val_fraction)
        if side not in splits:
            left_out[LEFT_OUT_UNSPLIT if side == "unsplit" else f"of the {side} split"] += 1
            continue
        by_video.setdefault(record.key, []).append(sample)
    out: list[FaceSample] = []
    for key in sorted(by_video):
        samples = by_video[key]
        if faces_per_frame == "largest":
            largest = _largest_per_frame(samples)
            if len(largest) < len(samples):
                left_out["of smaller faces in a frame (data.faces_per_frame: largest)"] += len(samples) - len(largest)
            samples = largest
        if frames_per_video:
            frames = sorted({s.frame.index for s in samples})
            keep = set(evenly_spaced(frames, frames_per_video))
            kept = [s for s in samples if s.frame.index in keep]
            if len(kept) < len(samples):
                left_out[f"of frames beyond {frames_per_video} per video (data.frames_per_video)"] += len(samples) - len(kept)
            samples = kept
        out.extend(samples)
    return FaceSelection(out, splits, dict(left_out))


def split_faces(
    manifest: Manifest, split: str, val_fraction: float = 0.2, frames_per_video: int = 0,
    faces_per_frame: str = "all",
) -> list[FaceSample]:
    """Real faces of one split ("train", "val", or "test" where the manifest names one); see ``select_faces``."""
    return select_faces(manifest, (split,), val_fraction, frames_per_video, faces_per_frame).faces


def check_training_faces(manifest: Manifest, train_faces: Sequence[FaceSample], val_faces: Sequence[FaceSample],
                         val_fraction: float) -> None:
    """A ``ValueError`` that says what is missing and what to run when either split has no face."""
    if train_faces and val_faces:
        return
    faces = manifest.faces()
    if not faces:
        raise ValueError(manifest.why_no_faces())
    real = [face for face in faces if face.record.label != 1]
    if not real:
        raise ValueError(f"{manifest.root}: all {len(faces)} prepared faces come from fake videos (label 1), and "
                         "training uses real faces only (its fakes are synthetic): prepare real videos too")
    empty = "train" if not train_faces else "val"
    videos = {face.record.key for face in real}
    if any(face.record.split is not None for face in real):
        splits = sorted({str(face.record.split) for face in real})
        raise ValueError(f"{manifest.root}: no real faces in the {empty!r} split: the manifest's items are in "
                         f"split(s) {', '.join(splits)} ({len(real)} faces of {len(videos)} media); prepare the "
                         f"dataset's {empty} split too (`mfrn prepare --dataset ... --split {empty}`)")
    fix = ("raise data.val_fraction or prepare more videos" if empty == "val"
           else "lower data.val_fraction or prepare more videos")
    raise ValueError(f"{manifest.root}: no real faces for {empty}: all {len(real)} real faces come from "
                     f"{len(videos)} media item(s), and each item goes to train or val whole "
                     f"(data.val_fraction={val_fraction}); {fix}")


class PairDataset(Dataset):
    """(real, fake) pairs with labels, region maps and boundary maps; see ``collate_pairs``."""

    def __init__(
        self,
        faces: Sequence[FaceSample],
        sbi_config,
        rbi_config: RBIConfig | None = None,
        seed: int = 0,
        fixed_epoch: int | None = None,
        cache: ReconstructionCache | None = None,
        reconstructor=None,
        augment: bool = True,
    ) -> None:
        from mfrn.synth.sbi import SelfBlender

        self.blender = SelfBlender(sbi_config)
        self.faces, self.skipped = self._usable(faces, sbi_config)
        if not self.faces:
            raise ValueError("no faces to train on: is the prepared folder empty, or every face filtered out?")
        self.rbi = rbi_config or RBIConfig(probability=0.0, source="off")
        self.seed = int(seed)
        self.fixed_epoch = fixed_epoch
        self.epoch = 0 if fixed_epoch is None else fixed_epoch
        self.cache = cache
        self.reconstructor = reconstructor
        self.augment = augment  # False: SBI's val pairs (see SelfBlender.__call__)
        self.stats: Counter = Counter()
        if self.rbi.probability > 0 and self.rbi.source == "cache" and self.cache is None:
            raise ValueError("rbi.source is 'cache' but no reconstruction cache was given (run `mfrn synth cache`)")

    @staticmethod
    def _usable(faces: Sequence[FaceSample], sbi_config) -> tuple[list[FaceSample], list[tuple[str, str]]]:
        """Faces SBI can blend; the others (too small, degenerate, landmarks off the crop) are skipped
        up front and logged with the reason, never replaced at random during training."""
        from mfrn.synth.masks import SynthesisError, validate_landmarks

        usable, skipped = [], []
        for sample in faces:
            x1, y1, x2, y2 = sample.face.crop_box
            _, _, landmarks = sample.face.local()
            try:
                validate_landmarks(landmarks, (y2 - y1, x2 - x1), sbi_config.mask)
            except SynthesisError as error:
                skipped.append((sample.key, str(error)))
                log.warning("skipping %s: %s", sample.key, error)
                continue
            usable.append(sample)
        return usable, skipped

    @staticmethod
    def rbi_backends(rbi_config: RBIConfig, prepared: Path, device: str | None = None):
        """(cache, reconstructor) that ``rbi_config`` asks for (either may be None)."""
        cache = reconstructor = None
        if rbi_config.probability > 0 and rbi_config.source == "cache":
            cache = ReconstructionCache(Path(rbi_config.cache_dir) if rbi_config.cache_dir else Path(prepared) / "rbi_cache")
        elif rbi_config.probability > 0 and rbi_config.source == "on_the_fly":
            reconstructor = build_reconstructor_from_config(rbi_config, device=device or "cpu")
        return cache, reconstructor

    @classmethod
    def from_config(cls, faces, sbi_config, rbi_config: RBIConfig, prepared: Path, seed: int = 0,
                    fixed_epoch: int | None = None, device: str | None = None,
                    augment: bool = True) -> "PairDataset":
        cache, reconstructor = cls.rbi_backends(rbi_config, prepared, device)
        return cls(faces, sbi_config, rbi_config, seed, fixed_epoch, cache, reconstructor, augment)

    def set_epoch(self, epoch: int) -> None:
        if self.fixed_epoch is None:
            self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.faces)

    def _rbi_sources(self, samples: Sequence[FaceSample], images: Sequence[np.ndarray],
                     keypoints: Sequence[np.ndarray], rng) -> list[np.ndarray] | None:
        """RBI's reconstructions of ``samples`` (one face, or every frame of a clip: each with its own
        latent noise), or None for an SBI: with probability 1 - q, or when one is missing or fails."""
        if self.rbi.source == "off" or self.rbi.probability <= 0 or rng.random() >= self.rbi.probability:
            return None
        if self.cache is not None:
            sources = []
            for sample, image in zip(samples, images):
                source = self.cache.sample(sample.face.crop_path, rng)
                if source is None:
                    self.stats["rbi_missing_in_cache"] += 1
                    log.warning("no cached reconstruction for %s: this sample is an SBI", sample.face.crop_path)
                    return None
                if source.shape != image.shape:
                    raise ValueError(f"{sample.face.crop_path}: cached reconstruction has shape {source.shape}, "
                                     f"crop {image.shape}")
                sources.append(source)
            return sources
        if self.reconstructor is not None:
            from mfrn.synth.reconstructors.base import ReconstructionError

            try:
                return [r.image for r in self.reconstructor.reconstruct_batch(list(images), list(keypoints),
                                                                              self.rbi.noise, rng)]
            except ReconstructionError as error:
                self.stats["rbi_failed"] += 1
                log.warning("reconstruction failed for %s (%s): this sample is an SBI", samples[0].key, error.reason)
        return None

    def _unit(self, index: int) -> tuple[list[FaceSample], str, str]:
        """The faces item ``index`` is made of, its key, and where it comes from (for error messages)."""
        sample = self.faces[index]
        return [sample], sample.key, f"{sample.root / sample.face.crop_path} ({sample.key})"

    def _synthesize(self, images, landmarks, boxes, rng, sources):
        """The real/fake pair of one face (``SynthPair``)."""
        source = sources[0] if sources is not None else None
        return self.blender(images[0], landmarks[0], boxes[0], rng, source=source, augment=self.augment)

    def __getitem__(self, index: int) -> dict:
        samples, key, where = self._unit(index)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        images, boxes, keypoints, landmarks = zip(*(sample.load() for sample in samples))
        sources = self._rbi_sources(samples, images, keypoints, rng)
        try:
            pair = self._synthesize(images, landmarks, boxes, rng, sources)
        except Exception as error:
            raise RuntimeError(f"{where}: {error}") from error
        kind = "rbi" if sources is not None else "sbi"
        self.stats[kind] += 1
        return pair_item(pair.real, pair.fake, pair.region_map, pair.boundary_map, kind, key)


def pair_item(real: np.ndarray, fake: np.ndarray, region_map: np.ndarray, boundary_map: np.ndarray, kind: str,
              key: str) -> dict:
    """A real and its fake as one dataset item: images (2, ..., 3, S, S) in [0, 1], labels [0, 1], maps
    (2, ..., S, S) with zeros for the real; ``...`` is nothing for a frame, T for a clip."""
    images = np.stack([real, fake]).astype(np.float32) / 255.0
    zeros = np.zeros_like(region_map, dtype=np.float32)
    return {
        "image": torch.from_numpy(images).movedim(-1, -3).contiguous(),
        "label": torch.tensor([0, 1], dtype=torch.long),
        "region_map": torch.from_numpy(np.stack([zeros, region_map.astype(np.float32)])),
        "boundary_map": torch.from_numpy(np.stack([zeros, boundary_map.astype(np.float32)])),
        "kind": kind,
        "key": key,
    }


class CompressedPairs(Dataset):
    """The items of ``pairs`` with every image (real and fake, or each frame of a clip) re-encoded by
    H.264 at one ``crf`` (``data.val_crf``) by ``sbi.codec``'s ``CodecTransform`` at full size: one intra
    frame, or with ``motion_frames`` (``data.val_motion_frames``) the last of a drifting stream, one drift
    per item drawn from the item's index (the real and its fake share it)."""

    def __init__(self, pairs, crf: int, preset: str = "medium", motion_frames: int = 0) -> None:
        from mfrn.synth.transforms import CodecConfig, CodecTransform

        self.pairs, self.crf = pairs, int(crf)
        self.codec = CodecTransform(CodecConfig(p=1.0, crf=(self.crf, self.crf), preset=preset,
                                                motion_frames=motion_frames))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.pairs[index])
        images = item["image"]  # float in [0, 1]: (2, 3, S, S), or (2, T, 3, S, S) for clips
        flat = images.reshape(2, -1, *images.shape[-3:])  # (real, fake) x frames
        pixels = (flat.permute(0, 1, 3, 4, 2).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        params = self.codec.draw(np.random.default_rng((self.crf, index)), face_width=1.0)  # 1 px: never scaled
        coded = np.empty_like(pixels)
        for t in range(pixels.shape[1]):
            coded[1, t], coded[0, t] = self.codec.apply(pixels[1, t], pixels[0, t], params)
        item["image"] = torch.from_numpy(coded).permute(0, 1, 4, 2, 3).to(images.dtype).div(255.0).reshape(images.shape)
        return item


def collate_pairs(batch: list[dict]) -> dict:
    """Stack pairs into one batch: reals and fakes side by side (2 x batch size images, or clips)."""
    out = {name: torch.cat([item[name] for item in batch]) for name in ("image", "label", "region_map", "boundary_map")}
    out["kind"] = [item["kind"] for item in batch]
    out["key"] = [item["key"] for item in batch]
    return out
