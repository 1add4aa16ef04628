"""The YAML recipes in configs/: every one loads; the CPU recipes build on the package's ImageNet weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mfrn.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_loads(path):
    config = load_config(path)
    assert config.model.input_size == config.sbi.crop.size


@pytest.mark.parametrize("name", ["sbi_lite0_cpu", "mfrn_lite0_cpu"])
def test_cpu_recipes_build_on_imagenet_lite0(name):
    from mfrn.models import build_model
    from mfrn.models.pretrained import weight_source

    config = load_config(CONFIGS / f"{name}.yaml")
    source = weight_source(config.model.pretrained_file)
    assert config.model.backbone == source.architecture and config.train.device == "cpu"
    model = build_model(config.model).eval()
    assert (model.mean, model.std) == (source.mean, source.std) and model.normalize.enabled
    size = config.model.input_size
    with torch.no_grad():
        output = model(torch.rand(1, 3, size, size))
    assert output.logits.shape == (1, 2)
    if config.model.name == "mfrn":
        assert config.rbi.source == "cache" and config.rbi.probability > 0
        assert output.region_logits is not None and output.boundary_logits is not None


def test_package_weights_without_their_normalisation_are_refused():
    from mfrn.config import ConfigError

    with pytest.raises(ConfigError, match="normalize_input: true"):
        load_config(CONFIGS / "mfrn_effb4.yaml", ["model.backbone=tf_efficientnet_lite0",
                                                  "model.pretrained_file=package:efficientnet_lite0"])
