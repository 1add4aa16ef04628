"""The temporal head: a frame detector shared over the T frames of a clip, then a light model over time.

Per frame the head reads the frame detector's pooled deepest features (``DetectorOutput.embedding``)
and, with ``model.temporal_map_stats``, eight numbers about what the frame detector predicted (the
frame's fake-logit margin; mean, standard deviation, maximum and share above 0.5 of the region map;
mean, standard deviation and maximum of the boundary map); with ``model.temporal_deltas`` also each
of those inputs' change from the previous frame (a real swap's boundary and noise flicker; a real
face does not). Over time: a small transformer encoder (a class token and a learned position table)
or a temporal convolution network (residual dilated 1-D convolutions, mean + max pooled), then a
2-way clip classifier. Input (B, T, 3, H, W) in [0, 1]; output ``ClipOutput``.
"""

from __future__ import annotations

import torch
from torch import nn

from mfrn.models.config import ModelConfig
from mfrn.models.outputs import ClipOutput, DetectorOutput

N_MAP_STATS = 8


def frame_statistics(output: DetectorOutput) -> torch.Tensor:
    """(N, 8) per frame: fake-logit margin, region map mean/std/max/share > 0.5, boundary map mean/std/max
    (the map entries are 0 for a detector without maps)."""
    logits = output.logits.float()
    stats = [logits[:, 1] - logits[:, 0]]
    for maps, count in ((output.region_logits, 4), (output.boundary_logits, 3)):
        if maps is None:
            stats.extend(logits.new_zeros(len(logits)) for _ in range(count))
            continue
        prob = torch.sigmoid(maps.float()).flatten(1)
        stats.extend([prob.mean(1), prob.std(1), prob.amax(1)])
        if count == 4:
            stats.append((prob > 0.5).float().mean(1))
    return torch.stack(stats, dim=1)


class TemporalConvNet(nn.Module):
    """Residual blocks of dilated temporal convolutions (dilation 1, 2, 4, ...), same length out."""

    def __init__(self, dim: int, layers: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(dim, dim, kernel, padding=(kernel - 1) // 2 * 2**i, dilation=2**i),
                nn.GroupNorm(1, dim),
                nn.GELU(),
                nn.Dropout(dropout),
            )
            for i in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, 2D)
        x = x.transpose(1, 2)
        for block in self.blocks:
            x = x + block(x)
        return torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)


class TemporalTransformer(nn.Module):
    """Pre-norm transformer encoder over a class token and the T frame tokens with learned positions."""

    def __init__(self, dim: int, layers: int, heads: int, max_length: int, dropout: float) -> None:
        super().__init__()
        self.max_length = max_length
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(1, max_length + 1, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, D)
        batch, length, _ = x.shape
        if length > self.max_length:
            raise ValueError(f"a clip of {length} frames is longer than model.temporal_max_length {self.max_length}")
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1), x], dim=1) + self.position[:, : length + 1]
        return self.norm(self.encoder(tokens)[:, 0])


class TemporalHead(nn.Module):
    """Per-frame inputs (B, T, in_dim) -> clip logits (B, 2)."""

    def __init__(self, in_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.deltas = cfg.temporal_deltas
        width = in_dim * (2 if cfg.temporal_deltas else 1)
        dim = cfg.temporal_dim
        self.project = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim), nn.GELU())
        if cfg.temporal == "transformer":
            self.temporal = TemporalTransformer(dim, cfg.temporal_layers, cfg.temporal_heads, cfg.temporal_max_length,
                                                cfg.temporal_dropout)
            pooled = dim
        elif cfg.temporal == "tcn":
            self.temporal = TemporalConvNet(dim, cfg.temporal_layers, cfg.temporal_kernel, cfg.temporal_dropout)
            pooled = 2 * dim
        else:
            raise ValueError(f"unknown temporal model {cfg.temporal!r}")
        self.classifier = nn.Sequential(nn.Dropout(cfg.temporal_dropout), nn.Linear(pooled, 2))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.deltas:
            change = torch.cat([torch.zeros_like(frames[:, :1]), frames[:, 1:] - frames[:, :-1]], dim=1)
            frames = torch.cat([frames, change], dim=2)
        return self.classifier(self.temporal(self.project(frames)))


class TemporalDetector(nn.Module):
    """A frame detector (``model.name``, shared weights over frames) + a temporal head (``model.temporal``).

    With ``model.temporal_freeze_frame`` the frame detector is frozen: no gradient, always in eval
    mode (BatchNorm statistics and dropout as trained), run under ``torch.no_grad``; its weights come
    from ``model.temporal_frame_checkpoint`` (loaded by the training loop, ``load_frame_checkpoint``).
    """

    def __init__(self, frame: nn.Module, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frame = frame
        self.mean, self.std = frame.mean, frame.std
        self.map_stats = cfg.temporal_map_stats
        self.freeze_frame = cfg.temporal_freeze_frame
        in_dim = frame.embedding_dim + (N_MAP_STATS if cfg.temporal_map_stats else 0)
        self.head = TemporalHead(in_dim, cfg)
        if self.freeze_frame:
            self.frame.requires_grad_(False)
            self.frame.eval()

    def train(self, mode: bool = True) -> "TemporalDetector":
        super().train(mode)
        if self.freeze_frame:
            self.frame.eval()
        return self

    def project_constraints(self) -> None:
        if not self.freeze_frame:
            self.frame.project_constraints()

    def frame_features(self, frames: DetectorOutput, batch: int, length: int) -> torch.Tensor:
        """(B, T, in_dim): what the head reads of each frame."""
        if frames.embedding is None:
            raise ValueError(f"the frame detector {type(self.frame).__name__} gives no embedding for the temporal head")
        parts = [frames.embedding.float()]
        if self.map_stats:
            parts.append(frame_statistics(frames))
        return torch.cat(parts, dim=1).reshape(batch, length, -1)

    def forward(self, clips: torch.Tensor) -> ClipOutput:
        if clips.dim() != 5:
            raise ValueError(f"the temporal detector takes clips (B, T, 3, H, W), got {tuple(clips.shape)}")
        batch, length = clips.shape[:2]
        images = clips.flatten(0, 1)
        if self.freeze_frame:
            with torch.no_grad():
                frames = self.frame(images)
        else:
            frames = self.frame(images)
        logits = self.head(self.frame_features(frames, batch, length))
        return ClipOutput(logits=logits, frames=frames, length=length, frame_loss=not self.freeze_frame)
