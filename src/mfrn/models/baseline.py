"""SBI's detector: the backbone classifier with a 2-way head (method.md §5, baseline)."""

from __future__ import annotations

import torch
from torch import nn

from mfrn.models.backbone import InputNormalizer, create_classifier, model_normalisation
from mfrn.models.config import ModelConfig
from mfrn.models.outputs import DetectorOutput


class BaselineDetector(nn.Module):
    """timm classifier (global pool + dropout + linear, 2 classes); maps are None.

    # interpretation: the full timm model including its conv head, as SBI's EfficientNet-B4.
    Input: float (B, 3, H, W) in [0, 1]; normalised inside with ``mean``/``std``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = create_classifier(cfg, num_classes=2)
        self.mean, self.std = model_normalisation(self.net)
        self.normalize = InputNormalizer(self.mean, self.std, cfg.normalize_input)

    def project_constraints(self) -> None:
        """Nothing is constrained here; present so the training loop treats every detector alike."""

    @property
    def embedding_dim(self) -> int:
        return int(getattr(self.net, "head_hidden_size", None) or self.net.num_features)

    def forward(self, images: torch.Tensor) -> DetectorOutput:
        # timm's forward, split before the classifier so the temporal head can read the pooled features
        pooled = self.net.forward_head(self.net.forward_features(self.normalize(images)), pre_logits=True)
        return DetectorOutput(logits=self.net.get_classifier()(pooled), embedding=pooled)
