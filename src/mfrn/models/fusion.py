"""Per-scale fusion of RGB, noise and edge features (concatenate, 1x1 conv, channel attention)
and multi-head self-attention over the deepest fused tokens."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mfrn.models.streams import conv_bn_act


class SqueezeExcite(nn.Module):
    """SE channel attention (Hu et al. 2018)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(weights)


class EfficientChannelAttention(nn.Module):
    """ECA channel attention (Wang et al. 2020): a 1-D conv over pooled channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        kernel = int(abs((math.log2(channels) + 1) / 2))
        kernel = kernel if kernel % 2 else kernel + 1
        self.conv = nn.Conv1d(1, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))[:, None, :]  # (B, 1, C)
        weights = torch.sigmoid(self.conv(pooled))[:, 0, :, None, None]
        return x * weights


def channel_attention(kind: str, channels: int) -> nn.Module:
    if kind == "se":
        return SqueezeExcite(channels)
    if kind == "eca":
        return EfficientChannelAttention(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown channel_attention {kind!r}; known: se, eca, none")


class ScaleFusion(nn.Module):
    """Concatenate the streams of one scale, 1x1 conv + BN + ReLU, channel attention."""

    def __init__(self, in_channels: int, out_channels: int, attention: str = "se") -> None:
        super().__init__()
        self.project = conv_bn_act(in_channels, out_channels, 1)
        self.attention = channel_attention(attention, out_channels)

    def forward(self, streams: list[torch.Tensor]) -> torch.Tensor:
        x = streams[0] if len(streams) == 1 else torch.cat(streams, dim=1)
        return self.attention(self.project(x))


class TokenSelfAttention(nn.Module):
    """Pre-norm transformer layers over the tokens of a (B, C, h, w) map, shape preserved.

    # interpretation: positions come from a depthwise 3x3 conv (conditional positional encoding),
    # so any input size works without an interpolated position table.
    """

    def __init__(self, channels: int, heads: int = 8, layers: int = 1, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"self-attention: {channels} channels are not divisible by {heads} heads")
        self.position = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                channels,
                heads,
                dim_feedforward=int(channels * mlp_ratio),
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        x = x + self.position(x)
        tokens = x.flatten(2).transpose(1, 2)  # (B, h*w, C)
        for layer in self.layers:
            tokens = layer(tokens)
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)
