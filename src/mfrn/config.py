"""The one config schema of mfrn: YAML files under configs/, ``--set a.b=c`` overrides, validation
that names the bad key. Every section is the dataclass of the stage that uses it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mfrn.calibration import CalibrationConfig
from mfrn.config_schema import ConfigError, apply_overrides, from_dict, load_yaml, merge, to_dict
from mfrn.data.prepare import PrepareSection
from mfrn.inference.protocol import ProtocolConfig
from mfrn.models.config import ModelConfig
from mfrn.synth.clips import ClipConfig
from mfrn.synth.dataset import DataConfig
from mfrn.synth.rbi import RBIConfig
from mfrn.synth.sbi import SBIConfig
from mfrn.train.config import TrainConfig
from mfrn.train.losses import LossConfig

__all__ = ["Config", "ConfigError", "load_config", "config_to_dict"]


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    sbi: SBIConfig = field(default_factory=SBIConfig)
    rbi: RBIConfig = field(default_factory=RBIConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: ProtocolConfig = field(default_factory=ProtocolConfig)
    prepare: PrepareSection = field(default_factory=PrepareSection)  # read by `mfrn prepare -c CONFIG`
    clip: ClipConfig = field(default_factory=ClipConfig)  # clips for the temporal head (model.temporal)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)  # chosen at the end of training

    def __post_init__(self) -> None:
        if self.model.input_size != self.sbi.crop.size:
            raise ValueError(
                f"model.input_size ({self.model.input_size}) differs from sbi.crop.size ({self.sbi.crop.size}): "
                "the detector is trained on crops of sbi.crop.size; set both"
            )
        if self.model.temporal != "off" and self.clip.length > self.model.temporal_max_length:
            raise ValueError(f"clip.length {self.clip.length} exceeds model.temporal_max_length "
                             f"{self.model.temporal_max_length}")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """Read a YAML config; ``base: other.yaml`` (relative to the file) is merged underneath."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'base' chain loops")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections")
    base = data.pop("base", None)
    if base:
        data = merge(_read_yaml(path.parent / base, seen + (path.resolve(),)), data)
    return data


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> Config:
    data = _read_yaml(path) if path else {}
    apply_overrides(data, list(overrides or []))
    try:
        return from_dict(Config, data)
    except ConfigError as exc:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}{exc}") from None


def config_to_dict(config: Config) -> dict:
    return to_dict(config)


def config_from_dict(data: dict) -> Config:
    return from_dict(Config, data)
