"""RBI sources: reconstructions of a prepared face, from a precomputed cache or made on the fly.

RBI = SBI with the source image S replaced by the face reconstructed by a generator with noise in
its latent (method.md section 3). The blending itself is ``SelfBlender(source=...)``; this module only
provides the reconstructed source image, in the same coordinates as the prepared loose crop.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mfrn.io_utils import atomic_write_image, atomic_write_json, read_image_rgb
from mfrn.synth.reconstructors.noise import RBINoiseConfig


@dataclass
class RBIConfig:
    """How training fakes are made: RBI with probability ``probability``, else SBI."""

    probability: float = 0.5  # q: share of fakes that are RBIs (0 = SBI only, 1 = RBI only)
    source: str = "cache"  # "cache" (built by `mfrn synth cache`) | "on_the_fly" | "off"
    cache_dir: str | None = None  # default: <prepared>/rbi_cache
    reconstructor: str = "builtin"  # "builtin" | "simswap"
    reconstructor_kwargs: dict = field(default_factory=dict)  # e.g. checkpoint=..., arcface=...
    variants_per_face: int = 4  # K noisy reconstructions per face in the cache
    noise: RBINoiseConfig = field(default_factory=RBINoiseConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"rbi.probability must be in [0, 1], got {self.probability}")
        if self.source not in ("cache", "on_the_fly", "off"):
            raise ValueError(f"rbi.source must be cache, on_the_fly or off, got {self.source!r}")


def _cache_index_path(cache_dir: Path) -> Path:
    return cache_dir / "index.json"


class ReconstructionCache:
    """K noisy reconstructions per prepared face crop, stored as lossless PNGs beside an index."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        index_path = _cache_index_path(self.cache_dir)
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path}: no reconstruction cache here (run `mfrn synth cache` first)")
        self.index = json.loads(index_path.read_text(encoding="utf-8"))
        self.entries: dict[str, list[str]] = self.index["entries"]

    def __contains__(self, crop_path: str) -> bool:
        return crop_path in self.entries

    def sample(self, crop_path: str, rng: np.random.Generator) -> np.ndarray | None:
        variants = self.entries.get(crop_path)
        if not variants:
            return None
        return read_image_rgb(self.cache_dir / variants[int(rng.integers(len(variants)))])


def missing_generator(config: RBIConfig) -> str | None:
    """Why ``config`` names no usable generator (the built-in one without a checkpoint), or None."""
    if config.reconstructor == "builtin" and not config.reconstructor_kwargs.get("checkpoint"):
        return ("rbi.reconstructor is 'builtin' but rbi.reconstructor_kwargs has no checkpoint: train one with "
                "`mfrn generator train PREPARED -o gen.pt` and set rbi.reconstructor_kwargs={checkpoint: gen.pt}")
    return None


def build_reconstructor_from_config(config: RBIConfig, device: str | None = None):
    from mfrn.synth.reconstructors import build_reconstructor

    kwargs = dict(config.reconstructor_kwargs)
    missing = missing_generator(config)
    if missing:
        raise ValueError(missing)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs.setdefault("device", device)
    return build_reconstructor(config.reconstructor, **kwargs)


def build_cache(
    faces: Sequence,
    reconstructor,
    cache_dir: Path,
    variants: int = 4,
    noise: RBINoiseConfig | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Reconstruct every face ``variants`` times (batched) and write the cache; resumable.

    ``faces`` are ``FaceSample``s of a manifest. Faces whose reconstruction fails are recorded with
    the reason in the index's ``failures`` and skipped.
    """
    from tqdm import tqdm

    from mfrn.synth.reconstructors.base import ReconstructionError

    cache_dir = Path(cache_dir)
    index_path = _cache_index_path(cache_dir)
    index = json.loads(index_path.read_text(encoding="utf-8")) if index_path.is_file() else {"entries": {}, "failures": {}}
    index.setdefault("failures", {})
    index["variants"] = variants
    index["noise"] = noise.__dict__ if noise is not None else None
    rng = np.random.default_rng(seed)
    todo = [f for f in faces if f.face.crop_path not in index["entries"]]
    bar = tqdm(total=len(todo) * variants, desc="rbi cache", unit="recon", disable=not progress, dynamic_ncols=True)
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            loaded = [f.load() for f in chunk]
            images = [item[0] for item in loaded]
            keypoints = [item[2] for item in loaded]
            outputs: dict[str, list[str]] = {f.face.crop_path: [] for f in chunk}
            for k in range(variants):
                try:
                    results = reconstructor.reconstruct_batch(images, keypoints, noise, rng)
                except ReconstructionError as error:
                    # one bad face must not sink the batch: redo it face by face, recording failures
                    results = []
                    for image, kp, sample in zip(images, keypoints, chunk):
                        try:
                            results.append(reconstructor.reconstruct_batch([image], [kp], noise, rng)[0])
                        except ReconstructionError as single:
                            index["failures"][sample.face.crop_path] = single.reason
                            results.append(None)
                    del error
                for sample, result in zip(chunk, results):
                    if result is None:
                        continue
                    rel = Path(sample.face.crop_path).with_suffix("").as_posix().replace("/", "__") + f"_k{k}.png"
                    atomic_write_image(cache_dir / rel, result.image)
                    outputs[sample.face.crop_path].append(rel)
                bar.update(len(chunk))
            for crop_path, files in outputs.items():
                if files:
                    index["entries"][crop_path] = files
            atomic_write_json(index_path, index)  # a kill loses at most the batch in progress
    finally:
        bar.close()
    atomic_write_json(index_path, index)
    return index
