"""An independent re-implementation of SimSwap's generator (Generator_Adain_Upsample), 224 and 512 px.

The module tree reproduces the official state-dict key names and shapes (``reference/simswap.md``),
so ``people/latest_net_G.pth`` and ``512/550000_net_G.pth`` load with ``strict=True``. The same
generator class, at other widths, is the built-in generator (``builtin.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from mfrn.synth.reconstructors.align import arcface_templates, ffhq_templates
from mfrn.synth.reconstructors.base import Reconstructor
from mfrn.synth.reconstructors.checkpoints import load_state_dict_file, load_strict


class InstanceNorm(nn.Module):
    """Parameter-free instance norm over (H, W) with SimSwap's eps 1e-8."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=(2, 3), keepdim=True)
        return x * torch.rsqrt((x * x).mean(dim=(2, 3), keepdim=True) + self.eps)


class ApplyStyle(nn.Module):
    """Identity injection: ``Linear(latent -> 2C)`` gives (gamma, beta); ``x * (gamma + 1) + beta``."""

    def __init__(self, latent_dim: int, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(latent_dim, channels * 2)

    def forward(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        style = self.linear(identity)
        gamma, beta = style.view(style.shape[0], 2, x.shape[1], 1, 1).unbind(1)
        return x * (gamma + 1.0) + beta


class ResnetBlockAdain(nn.Module):
    """Residual block with identity injection after each instance-normalised convolution."""

    def __init__(self, channels: int, latent_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), InstanceNorm())
        self.style1 = ApplyStyle(latent_dim, channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), InstanceNorm())
        self.style2 = ApplyStyle(latent_dim, channels)

    def forward(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.style1(self.conv1(x), identity))
        y = self.style2(self.conv2(y), identity)
        return x + y


class AdainBottleneck(nn.Sequential):
    """A sequence of ``ResnetBlockAdain`` that all receive the identity (keys ``BottleNeck.i.*``)."""

    def forward(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for block in self:
            x = block(x, identity)
        return x


class AdainUpsampleGenerator(nn.Module):
    """Encoder (7x7 conv, stride-2 convs) -> ID-injection bottleneck -> bilinear-upsampling decoder.

    ``channels`` lists the widths from the first layer to the bottleneck, e.g. SimSwap-224
    ``(64, 128, 256, 512)``; each step is one stride-2 level. Level names end at ``down3``/``up3``
    (``down0``/``up0`` exist only with four levels), as in SimSwap's state dicts.
    """

    def __init__(self, channels: Sequence[int], n_blocks: int, latent_dim: int, in_channels: int = 3, out_channels: int = 3) -> None:
        super().__init__()
        channels = list(channels)
        n_levels = len(channels) - 1
        if not 1 <= n_levels <= 4:
            raise ValueError(f"AdainUpsampleGenerator supports 1..4 down-sampling levels, got {n_levels}")
        self.channels = channels
        self.latent_dim = latent_dim
        self.level_names = [f"{k}" for k in range(4 - n_levels, 4)]
        self.first_layer = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, channels[0], 7), nn.BatchNorm2d(channels[0]), nn.ReLU(True)
        )
        for name, c_in, c_out in zip(self.level_names, channels[:-1], channels[1:]):
            self.add_module(
                f"down{name}",
                nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(True)),
            )
        self.BottleNeck = AdainBottleneck(*[ResnetBlockAdain(channels[-1], latent_dim) for _ in range(n_blocks)])
        for name, c_in, c_out in reversed(list(zip(self.level_names, channels[1:], channels[:-1]))):
            self.add_module(
                f"up{name}",
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    nn.Conv2d(c_in, c_out, 3, stride=1, padding=1),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(True),
                ),
            )
        self.last_layer = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(channels[0], out_channels, 7), nn.Tanh())

    @property
    def stride(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Faces (B, 3, S, S) in [0, 1] -> background features at the bottleneck input."""
        x = self.first_layer(x)
        for name in self.level_names:
            x = getattr(self, f"down{name}")(x)
        return x

    def decode(self, identity: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        """(identity (B, latent), background) -> faces (B, 3, S, S) in [0, 1]."""
        x = self.BottleNeck(background, identity)
        for name in reversed(self.level_names):
            x = getattr(self, f"up{name}")(x)
        return (self.last_layer(x) + 1.0) / 2.0

    def forward(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        return self.decode(identity, self.encode(x))


SIMSWAP_VARIANTS: dict[str, dict] = {
    "224": {"channels": (64, 128, 256, 512), "crop_size": 224, "checkpoint": "people/latest_net_G.pth"},
    "512": {"channels": (32, 64, 128, 256, 512), "crop_size": 512, "checkpoint": "512/550000_net_G.pth"},
}


def simswap_generator(variant: str = "224") -> AdainUpsampleGenerator:
    """SimSwap's Generator_Adain_Upsample (input 3, output 3, latent 512, 9 blocks, deep=False)."""
    if variant not in SIMSWAP_VARIANTS:
        raise ValueError(f"unknown SimSwap variant {variant!r}; known: {', '.join(SIMSWAP_VARIANTS)}")
    return AdainUpsampleGenerator(SIMSWAP_VARIANTS[variant]["channels"], n_blocks=9, latent_dim=512)


def load_simswap_generator(path: str | Path, variant: str = "224") -> AdainUpsampleGenerator:
    """Build the generator and load an official (or converted) state-dict file, strictly."""
    state = load_state_dict_file(path)
    with torch.device("meta"):  # no random init of ~50M parameters that the file replaces anyway
        generator = simswap_generator(variant)
    load_strict(generator, state, path, assign=True)
    return generator


class SimSwapReconstructor(Reconstructor):
    """SimSwap self-swap: ArcFace identity of the face itself + the generator's bottleneck features."""

    def __init__(
        self,
        generator: AdainUpsampleGenerator,
        identity_encoder: nn.Module,
        variant: str = "224",
        frontal_only: bool = False,
    ) -> None:
        super().__init__()
        if variant not in SIMSWAP_VARIANTS:
            raise ValueError(f"unknown SimSwap variant {variant!r}; known: {', '.join(SIMSWAP_VARIANTS)}")
        self.variant = variant
        self.crop_size = SIMSWAP_VARIANTS[variant]["crop_size"]
        # 224: insightface's five pose templates (x2), best fit wins; 512: the FFHQ template
        self.templates = ffhq_templates(self.crop_size) if variant == "512" else arcface_templates(self.crop_size, frontal_only)
        self.generator = generator
        self.identity_encoder = identity_encoder

    @classmethod
    def from_files(
        cls,
        generator_path: str | Path,
        identity_path: str | Path,
        variant: str = "224",
        device: str | torch.device = "cpu",
        frontal_only: bool = False,
        onnx_rgb: bool = True,
    ) -> "SimSwapReconstructor":
        """Official generator weights + an ArcFace given as IR-SE-50 state dict or ``.onnx`` model."""
        from mfrn.synth.reconstructors.arcface import load_identity_encoder

        generator = load_simswap_generator(generator_path, variant)
        encoder = load_identity_encoder(identity_path, rgb=onnx_rgb)
        return cls(generator, encoder, variant, frontal_only).to(device).eval()

    def encode(self, aligned: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        identity = self.identity_encoder(aligned)
        identity = identity / identity.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return identity.to(aligned.device, aligned.dtype), self.generator.encode(aligned)

    def decode(self, identity: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(identity, background)


def random_simswap(variant: str = "224", identity_encoder: nn.Module | None = None, seed: int = 0) -> SimSwapReconstructor:
    """SimSwap's architecture with random weights (benchmarks, tests); identity from a light encoder."""
    from mfrn.synth.reconstructors.builtin import LightIdentityEncoder

    torch.manual_seed(seed)
    encoder = identity_encoder if identity_encoder is not None else LightIdentityEncoder(dim=512)
    return SimSwapReconstructor(simswap_generator(variant), encoder, variant).eval()


