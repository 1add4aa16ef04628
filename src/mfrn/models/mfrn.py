"""MFRN: multi-scale feature reconstruction network (method.md §5)."""

from __future__ import annotations

import math

import torch
from torch import nn

from mfrn.models.backbone import FeatureBackbone, InputNormalizer
from mfrn.models.config import ModelConfig
from mfrn.models.decoder import ReconstructionDecoder
from mfrn.models.fusion import ScaleFusion, TokenSelfAttention
from mfrn.models.outputs import DetectorOutput
from mfrn.models.streams import BayarConv2d, EdgeStream, NoiseStream


class MFRN(nn.Module):
    """RGB (backbone) + noise + edge streams, fused per scale, self-attention on the deepest
    scale, a top-down decoder for region/boundary maps and a 2-way classifier.

    Input: float (B, 3, H, W) in [0, 1]. Output: ``DetectorOutput`` (logits; maps at 1/4 res).
    After every optimizer step call ``model.project_constraints()`` (Bayar convolution).
    ``mean``/``std`` are the backbone's normalisation, applied inside when ``normalize_input``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = FeatureBackbone(cfg)
        self.mean, self.std = self.backbone.mean, self.backbone.std
        self.normalize = InputNormalizer(self.mean, self.std, cfg.normalize_input)
        levels = len(self.backbone.strides)
        for field_name in ("noise_channels", "fused_channels"):
            if len(getattr(cfg, field_name)) != levels:
                raise ValueError(
                    f"ModelConfig.{field_name} has {len(getattr(cfg, field_name))} entries but backbone "
                    f"{cfg.backbone!r} gives {levels} feature levels (strides {self.backbone.strides})"
                )
        # single scale = the deepest level only
        self.used_levels = list(range(levels)) if cfg.multi_scale else [levels - 1]
        strides = tuple(self.backbone.strides[i] for i in self.used_levels)
        rgb_channels = tuple(self.backbone.channels[i] for i in self.used_levels)
        noise_channels = tuple(cfg.noise_channels[i] for i in self.used_levels)
        fused_channels = tuple(cfg.fused_channels[i] for i in self.used_levels)

        self.noise = (
            NoiseStream(strides, noise_channels, cfg.srm_input_scale, cfg.srm_clip) if cfg.use_noise_stream else None
        )
        self.edge = EdgeStream(rgb_channels, cfg.edge_channels) if cfg.use_edge_stream else None
        self.fusion = nn.ModuleList()
        for rgb, noise, fused in zip(rgb_channels, noise_channels, fused_channels):
            in_channels = rgb + (noise if cfg.use_noise_stream else 0) + (cfg.edge_channels if cfg.use_edge_stream else 0)
            self.fusion.append(ScaleFusion(in_channels, fused, cfg.channel_attention))
        self.attention = (
            TokenSelfAttention(fused_channels[-1], cfg.attention_heads, cfg.attention_layers)
            if cfg.use_attention
            else None
        )
        self.decoder = (
            ReconstructionDecoder(
                fused_channels, cfg.decoder_channels, cfg.edge_channels if cfg.use_edge_stream else 0
            )
            if cfg.use_decoder
            else None
        )
        self.classifier = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(fused_channels[-1], 2))

    def project_constraints(self) -> None:
        """Re-project constrained weights (Bayar): call after every optimizer step."""
        for module in self.modules():
            if isinstance(module, BayarConv2d):
                module.project_constraints()

    def forward(self, images: torch.Tensor) -> DetectorOutput:
        height, width = images.shape[-2:]
        features = self.backbone(self.normalize(images))
        rgb = [features[i] for i in self.used_levels]
        noise = self.noise(images) if self.noise is not None else None
        edges = self.edge(rgb) if self.edge is not None else None
        fused = []
        for level, fusion in enumerate(self.fusion):
            streams = [rgb[level]]
            if noise is not None:
                streams.append(_match(noise[level], rgb[level]))
            if edges is not None:
                streams.append(edges[level])
            fused.append(fusion(streams))
        if self.attention is not None:
            fused[-1] = self.attention(fused[-1])
        pooled = fused[-1].mean(dim=(2, 3))
        logits = self.classifier(pooled)
        if self.decoder is None:
            return DetectorOutput(logits=logits, embedding=pooled)
        map_size = (math.ceil(height / 4), math.ceil(width / 4))
        region, boundary = self.decoder(fused, map_size, edges)
        return DetectorOutput(logits=logits, region_logits=region, boundary_logits=boundary, embedding=pooled)

    @property
    def embedding_dim(self) -> int:
        return self.classifier[-1].in_features


def _match(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Resize the noise features to the backbone's map size (they differ by rounding at odd sizes)."""
    if x.shape[-2:] == reference.shape[-2:]:
        return x
    return nn.functional.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)
