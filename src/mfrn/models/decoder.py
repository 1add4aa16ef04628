"""Top-down (FPN-style) reconstruction decoder: region and boundary maps at 1/4 resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mfrn.models.streams import SeparableConv


class ReconstructionDecoder(nn.Module):
    """Fused levels (shallow -> deep) -> region logits and boundary logits, each (B, 1, h, w).

    The boundary head also sees the edge stream (all scales, upsampled and summed) when present.
    """

    def __init__(self, in_channels: tuple[int, ...], channels: int = 64, edge_channels: int = 0) -> None:
        super().__init__()
        # a level already at the decoder's width needs no lateral conv (saves a 1x1 at stride 4)
        self.lateral = nn.ModuleList(
            nn.Identity() if c == channels else nn.Conv2d(c, channels, 1) for c in in_channels
        )
        self.smooth = nn.ModuleList(SeparableConv(channels, channels) for _ in in_channels[:-1])
        # 3x3 convs straight to one channel: cheap at 1/4 resolution
        self.region_head = nn.Conv2d(channels, 1, 3, padding=1)
        self.edge_channels = edge_channels
        self.boundary_head = nn.Conv2d(channels + edge_channels, 1, 3, padding=1)

    def forward(
        self,
        fused: list[torch.Tensor],
        output_size: tuple[int, int],
        edges: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.lateral[-1](fused[-1])
        for level in range(len(fused) - 2, -1, -1):
            lateral = self.lateral[level](fused[level])
            x = F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=False) + lateral
            x = self.smooth[level](x)
        x = _resize(x, output_size)
        region = self.region_head(x)
        if self.edge_channels:
            if not edges:
                raise ValueError("decoder built with an edge input but no edge features were given")
            x = torch.cat([x, _resize(_top_down_sum(edges), output_size)], dim=1)
        boundary = self.boundary_head(x)
        return region, boundary


def _top_down_sum(maps: list[torch.Tensor]) -> torch.Tensor:
    """Sum of maps of decreasing resolution, upsampled step by step (cheaper than each to the top)."""
    total = maps[-1]
    for level in range(len(maps) - 2, -1, -1):
        total = _resize(total, tuple(maps[level].shape[-2:])) + maps[level]
    return total


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
