"""A checkpoint read for inference: the model, and the settings that travel with its weights.

Only the sections inference needs are read from the stored config (``model``, ``sbi.crop``, ``eval``):
a change to the training sections of the config schema never makes a trained detector unusable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mfrn.checkpoint import Calibration, CheckpointError, load_checkpoint, load_model_state, read_calibration
from mfrn.config_schema import ConfigError, from_dict
from mfrn.faces.crop import CropConfig
from mfrn.inference.protocol import ProtocolConfig
from mfrn.models.config import ModelConfig


@dataclass
class DetectorSpec:
    """What a checkpoint says about running its detector."""

    path: Path
    model: ModelConfig
    crop: CropConfig
    protocol: ProtocolConfig
    preprocessing: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None
    mfrn_version: str | None = None
    clip_length: int = 0  # a temporal checkpoint's clip.length (0: a frame detector)
    clip_min_iou: float = 0.3  # and the overlap that tracks a face through a clip (clip.min_track_iou)

    @property
    def input_size(self) -> int:
        return int(self.preprocessing.get("input_size", self.crop.size))

    @property
    def face_pipeline(self) -> dict[str, Any]:
        """The ``prepare`` settings the training faces were found with (detector, landmarker, kwargs)."""
        return dict(self.preprocessing.get("prepare") or {})


def _section(config: dict, dotted: str, cls, path: Path):
    data: Any = config
    for part in dotted.split("."):
        data = data.get(part, {}) if isinstance(data, dict) else None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: its config has no '{dotted}' mapping")
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its config does not fit this mfrn version ({dotted}: {exc})") from None
    except ValueError as exc:  # a section's own validation (__post_init__)
        raise CheckpointError(f"{path}: bad '{dotted}' settings in its config ({exc})") from None


def read_spec(state: dict[str, Any], path: Path) -> DetectorSpec:
    config = state["config"]
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its 'config' entry is not a mapping")
    model = _section(config, "model", ModelConfig, path)
    model.pretrained = False  # the checkpoint has the weights; never fetch anything
    model.pretrained_file = None
    preprocessing = state.get("preprocessing") or {}
    clip = config.get("clip") if isinstance(config.get("clip"), dict) else {}
    if model.temporal != "off" and not clip.get("length"):
        raise CheckpointError(f"{path}: a temporal model (model.temporal {model.temporal}) without clip.length")
    return DetectorSpec(
        path=path, model=model, crop=_section(config, "sbi.crop", CropConfig, path),
        protocol=_section(config, "eval", ProtocolConfig, path),
        preprocessing=dict(preprocessing) if isinstance(preprocessing, dict) else {},
        calibration=read_calibration(state, path), mfrn_version=state.get("mfrn_version"),
        clip_length=int(clip.get("length", 0)) if model.temporal != "off" else 0,
        clip_min_iou=float(clip.get("min_track_iou", 0.3)),
    )


def load_detector_checkpoint(path: str | Path) -> tuple[torch.nn.Module, DetectorSpec]:
    """The model (weights loaded strictly, on the CPU, in eval mode) and its spec."""
    from mfrn.models import build_model

    path = Path(path)
    state = load_checkpoint(path)
    spec = read_spec(state, path)
    model = build_model(spec.model)
    load_model_state(model, state["model"], path)
    return model.eval(), spec
