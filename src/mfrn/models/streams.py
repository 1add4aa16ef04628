"""MFRN's noise stream (fixed SRM + constrained Bayar convolution + a light CNN) and edge
stream (Sobel magnitude of features, MVSS-Net style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The 3-kernel SRM set of forgery detection (Zhou et al., RGB-N, CVPR 2018), with its
# customary normalisation (1/4, 1/12, 1/2).
SRM_KERNELS = (
    [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],
    [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]],
    [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
)
SRM_NORMALISERS = (4.0, 12.0, 2.0)


def conv_bn_act(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 (optionally strided) + pointwise 1x1, BN, ReLU: cheap at high resolution."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, in_ch, 3, stride, 1, groups=in_ch, bias=False),
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class SRMFilter(nn.Module):
    """Fixed SRM high-pass filters, 3 -> 3 channels, output clipped to [-clip, clip] then / clip.

    The kernels are a buffer, not a parameter: no optimizer can change them.
    """

    def __init__(self, input_scale: float = 255.0, clip: float = 3.0) -> None:
        super().__init__()
        kernels = torch.tensor(SRM_KERNELS, dtype=torch.float32)
        kernels = kernels / torch.tensor(SRM_NORMALISERS).view(3, 1, 1)
        # interpretation: as in MVSS-Net, each kernel is applied to R, G and B and summed
        self.register_buffer("weight", kernels[:, None].repeat(1, 3, 1, 1), persistent=False)
        self.input_scale = input_scale
        self.clip = clip

    def scaled_weight(self) -> torch.Tensor:
        """Kernels with the input scale folded in (one conv instead of a multiply + conv)."""
        return self.weight * self.input_scale

    def clip_residual(self, residual: torch.Tensor) -> torch.Tensor:
        return residual.clamp(-self.clip, self.clip) / self.clip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        residual = F.conv2d(images, self.scaled_weight().to(images.dtype), padding=2)
        return self.clip_residual(residual)


class BayarConv2d(nn.Module):
    """Constrained convolution (Bayar & Stamm 2018): per kernel, centre tap -1, other taps sum to 1.

    Call ``project_constraints()`` after every optimizer step (MFRN.project_constraints does).
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, kernel: int = 5) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"BayarConv2d needs an odd kernel size, got {kernel}")
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, kernel, kernel))
        nn.init.uniform_(self.weight, 0.0, 1.0)  # positive taps: a well-defined first projection
        self.project_constraints()

    @torch.no_grad()
    def project_constraints(self) -> None:
        centre = self.weight.shape[-1] // 2
        weight = self.weight.data
        weight[:, :, centre, centre] = 0.0
        total = weight.sum(dim=(2, 3), keepdim=True)
        # keep the sign, avoid dividing by ~0
        total = torch.where(total.abs() < 1e-6, torch.full_like(total, 1e-6), total)
        weight.div_(total)
        weight[:, :, centre, centre] = -1.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.conv2d(images, self.weight, padding=self.weight.shape[-1] // 2)


class NoiseStream(nn.Module):
    """SRM + Bayar residuals of the [0,1] image, then a light CNN with features at ``strides``.

    Cost is kept low for the 1.6x training-time budget: SRM and Bayar run as one 6-channel
    convolution, a stride-4 patchify stem, then one separable stride-2 block per level.
    """

    def __init__(
        self,
        strides: tuple[int, ...],
        channels: tuple[int, ...],
        srm_input_scale: float = 255.0,
        srm_clip: float = 3.0,
    ) -> None:
        super().__init__()
        if len(strides) != len(channels):
            raise ValueError(f"noise stream: {len(strides)} feature levels but {len(channels)} noise_channels")
        if any(s < 4 or s & (s - 1) for s in strides) or list(strides) != sorted(set(strides)):
            raise ValueError(f"noise stream: strides must be increasing powers of two >= 4, got {strides}")
        self.srm = SRMFilter(srm_input_scale, srm_clip)
        self.bayar = BayarConv2d(3, 3, 5)
        target_channels = dict(zip(strides, channels))
        width = target_channels.get(4, channels[0])
        # interpretation: a non-overlapping 4x4 patchify stem keeps every residual pixel at stride 4
        self.stem = nn.Sequential(
            nn.Conv2d(6, width, 4, stride=4, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages, taps = [], []
        stride = 4
        while stride < max(strides):
            stride *= 2
            out = target_channels.get(stride, width)
            stages.append(SeparableConv(width, out, stride=2))
            taps.append(stride in target_channels)
            width = out
        self.stages = nn.ModuleList(stages)
        self._taps = taps
        self._stem_is_tap = 4 in target_channels

    def residuals(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 6, H, W) in float32 at least: 3 clipped SRM residuals, then 3 Bayar residuals.

        Never below float32 (residuals of 0..255 intensities lose their low bits in bf16/fp16); a
        float64 model (a precision reference, benchmarks/bn_precision.py) keeps float64.
        """
        dtype = torch.promote_types(images.dtype, torch.float32)
        weight = torch.cat([self.srm.scaled_weight(), self.bayar.weight], dim=0).to(dtype)
        with torch.autocast(device_type=images.device.type, enabled=False):
            residual = F.conv2d(images.to(dtype), weight, padding=2)
        return torch.cat([self.srm.clip_residual(residual[:, :3]), residual[:, 3:]], dim=1)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(self.residuals(images))
        outputs = [x] if self._stem_is_tap else []
        for stage, tap in zip(self.stages, self._taps):
            x = stage(x)
            if tap:
                outputs.append(x)
        return outputs


class SobelMagnitude(nn.Module):
    """Per-channel Sobel gradient magnitude, sqrt(gx^2 + gy^2), zero padding.

    Written as separable shifts and adds: a depthwise/batched 3x3 conv is an order of
    magnitude slower on CPU for the same result.
    """

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        padded = F.pad(features, (1, 1, 1, 1))
        vertical_smooth = padded[:, :, :-2] + 2.0 * padded[:, :, 1:-1] + padded[:, :, 2:]  # (H, W+2)
        horizontal_smooth = padded[..., :-2] + 2.0 * padded[..., 1:-1] + padded[..., 2:]  # (H+2, W)
        grad_x = vertical_smooth[..., 2:] - vertical_smooth[..., :-2]
        grad_y = horizontal_smooth[:, :, 2:] - horizontal_smooth[:, :, :-2]
        return torch.sqrt(grad_x.square() + grad_y.square() + 1e-6)


class EdgeBlock(nn.Module):
    """Edge features of one scale: 1x1 reduce -> Sobel magnitude -> 1x1, residual (after MVSS-Net's ESB)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.reduce = conv_bn_act(in_ch, out_ch, 1)
        self.sobel = SobelMagnitude()
        self.refine = conv_bn_act(out_ch, out_ch, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(features)
        return self.refine(self.sobel(reduced)) + reduced


class EdgeStream(nn.Module):
    """One EdgeBlock per scale; its outputs feed the fusion and the boundary decoder."""

    def __init__(self, in_channels: tuple[int, ...], out_ch: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(EdgeBlock(c, out_ch) for c in in_channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [block(f) for block, f in zip(self.blocks, features)]
