"""The built-in generator: SimSwap's structure at a CPU-friendly size, trained by the project itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mfrn.synth.reconstructors.align import arcface_templates
from mfrn.synth.reconstructors.base import Reconstructor
from mfrn.synth.reconstructors.checkpoints import CheckpointError, load_strict
from mfrn.synth.reconstructors.simswap import AdainUpsampleGenerator

CHECKPOINT_FORMAT = "mfrn.builtin_generator"
CHECKPOINT_VERSION = 1


@dataclass
class BuiltinGeneratorConfig:
    """Size of the built-in generator; defaults train on CPU in minutes."""

    crop_size: int = 128
    base_channels: int = 32  # first layer width; doubles per level up to max_channels
    max_channels: int = 128
    n_downsample: int = 3  # SimSwap: 3 (224 -> 28)
    n_blocks: int = 4  # ID-injection residual blocks (SimSwap: 9)
    identity_dim: int = 512
    identity_channels: int = 16  # width of the light identity encoder's first layer
    identity_input_size: int = 64
    frontal_template_only: bool = False  # else insightface's five pose templates, best fit wins

    def channels(self) -> list[int]:
        return [min(self.base_channels * 2**i, self.max_channels) for i in range(self.n_downsample + 1)]

    @classmethod
    def from_dict(cls, values: dict) -> "BuiltinGeneratorConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown BuiltinGeneratorConfig fields: {', '.join(sorted(unknown))}")
        return cls(**values)

    def __post_init__(self) -> None:
        if self.crop_size % (2**self.n_downsample):
            raise ValueError(f"crop_size {self.crop_size} must be divisible by 2**n_downsample = {2**self.n_downsample}")


class LightIdentityEncoder(nn.Module):
    """A small CNN giving an L2-normalised identity vector from an aligned face in [0, 1]."""

    def __init__(self, dim: int = 512, channels: int = 16, input_size: int = 64) -> None:
        super().__init__()
        self.dim = dim
        self.input_size = input_size
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(4):
            c_out = channels * 2**i
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        spatial = max(1, input_size // 16)
        self.head = nn.Linear(c_in * spatial * spatial, dim)
        self.register_buffer("mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1), persistent=False)

    def forward(self, aligned: torch.Tensor) -> torch.Tensor:
        x = (aligned - self.mean) / self.std
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True)
        return F.normalize(self.head(self.features(x).flatten(1)), dim=1)


class BuiltinReconstructor(Reconstructor):
    """Generator (``AdainUpsampleGenerator``) + identity encoder (its own light CNN, or an ArcFace)."""

    def __init__(self, cfg: BuiltinGeneratorConfig | None = None, identity_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg if cfg is not None else BuiltinGeneratorConfig()
        self.crop_size = self.cfg.crop_size
        self.templates = arcface_templates(self.crop_size, self.cfg.frontal_template_only)
        self.generator = AdainUpsampleGenerator(self.cfg.channels(), self.cfg.n_blocks, self.cfg.identity_dim)
        self.external_identity = identity_encoder is not None
        if identity_encoder is None:
            identity_encoder = LightIdentityEncoder(self.cfg.identity_dim, self.cfg.identity_channels, self.cfg.identity_input_size)
        self.identity_encoder = identity_encoder

    def encode(self, aligned: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        identity = F.normalize(self.identity_encoder(aligned), dim=1).to(aligned.device, aligned.dtype)
        return identity, self.generator.encode(aligned)

    def decode(self, identity: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(identity, background)

    def checkpoint_dict(self, extra: dict | None = None) -> dict:
        """State + config, loadable with ``torch.load(weights_only=True)``; an external ArcFace is not stored."""
        from mfrn import __version__

        state = self.generator.state_dict() if self.external_identity else self.state_dict()
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "mfrn_version": str(__version__),
            "config": asdict(self.cfg),
            "external_identity": self.external_identity,
            "state_dict": state,
            "extra": dict(extra or {}),
        }

    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.checkpoint_dict(extra), path)
        return path

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, identity_encoder: nn.Module | None = None, device: str | torch.device = "cpu"
    ) -> "BuiltinReconstructor":
        """Rebuild from ``save``'s file (safe ``weights_only`` load); pass the ArcFace if it was trained with one."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"built-in generator checkpoint not found: {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise CheckpointError(f"{path}: not a built-in generator checkpoint ({type(error).__name__}: {str(error).splitlines()[0]})") from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not a built-in generator checkpoint (format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r})")
        cfg = BuiltinGeneratorConfig.from_dict(payload["config"])
        if payload.get("external_identity") and identity_encoder is None:
            raise CheckpointError(f"{path}: was trained with an external identity encoder (ArcFace); pass it as identity_encoder")
        model = cls(cfg, identity_encoder if payload.get("external_identity") else None)
        target = model.generator if payload.get("external_identity") else model
        load_strict(target, payload["state_dict"], path)
        return model.to(device, memory_format=torch.channels_last).eval()
