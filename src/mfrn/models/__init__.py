"""Detectors: ``build_model(ModelConfig)`` -> an ``nn.Module`` returning ``DetectorOutput``.

Every detector takes float RGB (B, 3, H, W) in [0, 1], normalises inside (attributes ``mean``,
``std``), and has ``project_constraints()`` for the training loop to call after each step.
A new detector is one function decorated with ``@MODELS.register(name)``.
"""

from __future__ import annotations

from torch import nn

from mfrn.models.backbone import PretrainedWeightsError
from mfrn.models.config import ModelConfig
from mfrn.models.outputs import ClipOutput, DetectorOutput, fake_probability
from mfrn.registry import Registry

MODELS: Registry[nn.Module] = Registry("detector")


@MODELS.register("mfrn")
def _build_mfrn(cfg: ModelConfig) -> nn.Module:
    from mfrn.models.mfrn import MFRN

    return MFRN(cfg)


@MODELS.register("baseline")
def _build_baseline(cfg: ModelConfig) -> nn.Module:
    from mfrn.models.baseline import BaselineDetector

    return BaselineDetector(cfg)


def build_model(cfg: ModelConfig) -> nn.Module:
    """The detector named ``cfg.name`` ("mfrn" | "baseline"); with ``cfg.temporal`` not "off", that frame
    detector inside a ``TemporalDetector`` (clips in, ``ClipOutput`` out)."""
    frame = MODELS.build(cfg.name, cfg)
    if cfg.temporal == "off":
        return frame
    from mfrn.models.temporal import TemporalDetector

    return TemporalDetector(frame, cfg)


__all__ = ["MODELS", "ClipOutput", "DetectorOutput", "ModelConfig", "PretrainedWeightsError", "build_model",
           "fake_probability"]
