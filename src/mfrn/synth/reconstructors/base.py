"""The reconstructor interface of RBI: align -> encode (identity, background) -> noise -> decode -> paste back."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mfrn.synth.reconstructors.align import AlignedFace, AlignmentError, align_face, paste_back
from mfrn.synth.reconstructors.noise import NoiseDraw, RBINoiseConfig, add_latent_noise


class ReconstructionError(RuntimeError):
    """A face could not be reconstructed (no keypoints, degenerate transform, non-finite output)."""

    def __init__(self, reason: str, index: int | None = None) -> None:
        self.reason = reason
        self.index = index
        super().__init__(reason if index is None else f"face {index}: {reason}")


@dataclass
class Reconstruction:
    """One reconstructed face pasted back into its full image."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, the reconstructed face blended into the original
    face: np.ndarray  # (S, S, 3) uint8 RGB, the generator's aligned output
    paste_mask: np.ndarray  # (H, W) float32 in [0, 1], the blend weight of the reconstruction
    aligned: AlignedFace  # the input crop and its transform
    noise: NoiseDraw = field(default_factory=NoiseDraw)


def crops_to_tensor(crops: Sequence[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """(S, S, 3) uint8 crops -> float tensor (B, 3, S, S) in [0, 1], in channels_last memory (the
    generators' layout: fp32, convolutions about 1.5x faster on CPU; the built-in generator trains its
    batch norm with mfrn.models.batchnorm, as torch's CPU kernel is imprecise in it in training mode)."""
    array = np.stack([np.asarray(c) for c in crops]).astype(np.float32) / 255.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last).to(device)


def tensor_to_crops(tensor: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, S, S) in [0, 1] -> list of (S, S, 3) uint8."""
    array = tensor.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().float().numpy()
    return [np.rint(a * 255.0).astype(np.uint8) for a in array]


class Reconstructor(nn.Module, metaclass=ABCMeta):
    """A face-swap generator used for self-reconstruction.

    Subclasses set ``crop_size`` and ``templates`` ((T, 5, 2) in crop pixels) and implement
    ``encode`` and ``decode``; everything else (alignment, noise, paste-back) is shared.
    """

    crop_size: int
    templates: np.ndarray
    # SimSwap's paste-back kernels, defined for a 224 px crop
    paste_erode_px: int = 40
    paste_blur_px: int = 41

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def align(self, image: np.ndarray, keypoints5: np.ndarray | None) -> AlignedFace:
        """Warp a face to this generator's template (raises ``ReconstructionError`` on bad keypoints)."""
        try:
            return align_face(image, keypoints5, self.templates, self.crop_size)
        except AlignmentError as error:
            raise ReconstructionError(str(error)) from None

    @abstractmethod
    def encode(self, aligned: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned faces (B, 3, S, S) in [0, 1] -> (identity (B, D) unit-length, background (B, C, h, w))."""

    @abstractmethod
    def decode(self, identity: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        """(identity, background) -> faces (B, 3, S, S) in [0, 1]."""

    def forward(self, aligned: torch.Tensor) -> torch.Tensor:
        identity, background = self.encode(aligned)
        return self.decode(identity, background)

    @torch.no_grad()
    def reconstruct_aligned(
        self,
        crops: Sequence[np.ndarray],
        noise: RBINoiseConfig | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[list[np.ndarray], list[NoiseDraw]]:
        """Self-reconstruct aligned uint8 crops (with latent noise); returns uint8 crops and draws."""
        rng = rng if rng is not None else np.random.default_rng()
        was_training = self.training
        self.eval()
        try:
            batch = crops_to_tensor(crops, self.device)
            identity, background = self.encode(batch)
            identity, background, draws = add_latent_noise(identity, background, noise, rng)
            output = self.decode(identity, background)
        finally:
            self.train(was_training)
        finite = torch.isfinite(output).flatten(1).all(dim=1)
        for i, ok in enumerate(finite.tolist()):
            if not ok:
                raise ReconstructionError("the generator produced non-finite values", index=i)
        return tensor_to_crops(output), draws

    def reconstruct_batch(
        self,
        images: Sequence[np.ndarray],
        keypoints5_list: Sequence[np.ndarray | None],
        noise: RBINoiseConfig | None = None,
        rng: np.random.Generator | None = None,
    ) -> list[Reconstruction]:
        """Reconstruct one face per image (given by its five keypoints) and paste it back."""
        if len(images) != len(keypoints5_list):
            raise ValueError(f"{len(images)} images but {len(keypoints5_list)} keypoint sets")
        if not images:
            return []
        aligned = []
        for index, (image, keypoints) in enumerate(zip(images, keypoints5_list)):
            try:
                aligned.append(self.align(image, keypoints))
            except ReconstructionError as error:
                raise ReconstructionError(error.reason, index=index) from None
        faces, draws = self.reconstruct_aligned([a.crop for a in aligned], noise, rng)
        results = []
        for image, face, align, draw in zip(images, faces, aligned, draws):
            pasted, mask = paste_back(image, face, align.matrix, self.paste_erode_px, self.paste_blur_px)
            results.append(Reconstruction(image=pasted, face=face, paste_mask=mask, aligned=align, noise=draw))
        return results
