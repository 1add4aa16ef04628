"""Backbones: stride selection, normalisation, pretrained weights from a local file."""

from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm")

from mfrn.models import ModelConfig, build_model  # noqa: E402
from mfrn.models.backbone import FeatureBackbone, InputNormalizer, PretrainedWeightsError  # noqa: E402


def _cfg(backbone: str, **overrides) -> ModelConfig:
    return ModelConfig(backbone=backbone, pretrained=False, **overrides)


@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet"])
def test_feature_backbone_levels_at_strides_4_to_32(name):
    backbone = FeatureBackbone(_cfg(name))
    assert backbone.strides == (4, 8, 16, 32)
    features = backbone(torch.rand(2, 3, 64, 64))
    assert [f.shape[1] for f in features] == list(backbone.channels)
    assert [f.shape[-1] for f in features] == [64 // s for s in backbone.strides]


@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet"])
def test_mean_std_come_from_pretrained_cfg_and_are_applied_inside(name):
    expected = timm.create_model(name, pretrained=False).pretrained_cfg
    model = build_model(_cfg(name, name="baseline"))
    assert model.mean == pytest.approx(expected["mean"]) and model.std == pytest.approx(expected["std"])
    normalizer = InputNormalizer(model.mean, model.std)
    image = torch.rand(1, 3, 8, 8)
    channel0 = (image[:, 0] - expected["mean"][0]) / expected["std"][0]
    assert torch.allclose(normalizer(image)[:, 0], channel0, atol=1e-6)
    assert torch.equal(InputNormalizer(model.mean, model.std, enabled=False)(image), image)


@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet"])
def test_pretrained_file_is_loaded_exactly(tmp_path, name):
    torch.manual_seed(1)
    source = timm.create_model(name, pretrained=False)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    backbone = FeatureBackbone(ModelConfig(backbone=name, pretrained=True, pretrained_file=str(path)))
    stored = source.state_dict()
    loaded = backbone.body.state_dict()
    assert loaded, "backbone has no weights"
    for key, value in loaded.items():
        assert torch.equal(value, stored[key]), key
    # the baseline loads the same file with a fresh 2-way head
    baseline = build_model(ModelConfig(name="baseline", backbone=name, pretrained=True, pretrained_file=str(path)))
    head = source.pretrained_cfg["classifier"]
    for key, value in baseline.net.state_dict().items():
        if not key.startswith(head):
            assert torch.equal(value, stored[key]), key
    assert baseline(torch.rand(2, 3, 64, 64)).logits.shape == (2, 2)


def test_weights_of_another_architecture_fail_loudly(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("test_resnet", pretrained=False).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="resnet.pth"):
        FeatureBackbone(ModelConfig(backbone="test_efficientnet", pretrained=True, pretrained_file=str(path)))


def test_weights_file_missing_keys_fails_loudly(tmp_path):
    state = timm.create_model("test_efficientnet", pretrained=False).state_dict()
    dropped = [k for k in state if k.startswith("blocks.1.")]
    assert dropped
    for key in dropped:
        del state[key]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(PretrainedWeightsError, match="missing"):
        FeatureBackbone(ModelConfig(backbone="test_efficientnet", pretrained=True, pretrained_file=str(path)))


def test_weights_file_with_wrong_shapes_fails_loudly(tmp_path):
    state = timm.create_model("test_efficientnet", pretrained=False).state_dict()
    state["conv_stem.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "shapes.pth"
    torch.save(state, path)
    with pytest.raises(PretrainedWeightsError, match="shapes.pth"):
        FeatureBackbone(ModelConfig(backbone="test_efficientnet", pretrained=True, pretrained_file=str(path)))


def test_missing_and_pickled_weights_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        FeatureBackbone(ModelConfig(backbone="test_efficientnet", pretrained=True,
                                    pretrained_file=str(tmp_path / "nowhere.pth")))
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a pickled module, not a state dict
    with pytest.raises(PretrainedWeightsError, match="module.pth"):
        FeatureBackbone(ModelConfig(backbone="test_efficientnet", pretrained=True, pretrained_file=str(path)))


def test_backbone_without_stride_4_levels_names_the_problem():
    with pytest.raises(ValueError, match="out_indices"):
        FeatureBackbone(_cfg("test_vit"))


def test_paper_configs_use_sbis_advprop_b4_fed_unnormalised_inputs():
    """SBI: tf_efficientnet_b4.ap_in1k (TF "same" padding, BN eps 1e-3), [0, 1] inputs, no mean/std."""
    from mfrn.config import load_config
    from mfrn.models.backbone import create_classifier

    for name in ("configs/mfrn_effb4.yaml", "configs/sbi_effb4.yaml"):
        config = load_config(name)
        assert config.model.backbone == "tf_efficientnet_b4.ap_in1k" and config.model.normalize_input is False
        assert config.train.amp == "off"  # SBI trains in fp32
    # MFRN's feature extractor on it (small input, no weights: the structure is what counts here)
    cfg = ModelConfig(backbone="tf_efficientnet_b4.ap_in1k", pretrained=False, input_size=96, normalize_input=False)
    model = build_model(cfg).eval()
    assert model.backbone.strides == (4, 8, 16, 32) and model.backbone.channels == (32, 56, 160, 448)
    batchnorms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batchnorms and {m.eps for m in batchnorms} == {1e-3}
    assert type(model.backbone.body.conv_stem).__name__ == "Conv2dSame"  # TF "same" padding
    image = torch.rand(1, 3, 96, 96)
    assert torch.equal(model.normalize(image), image)  # fed as is
    with torch.no_grad():
        output = model(image)
    assert output.logits.shape == (1, 2) and output.region_logits.shape[-1] == 96 // 4
    classifier = create_classifier(ModelConfig(backbone="tf_efficientnet_b4.ap_in1k", pretrained=False))
    assert {m.eps for m in classifier.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-3}
