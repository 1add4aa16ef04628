"""timm backbones: multi-scale feature extractors (MFRN) and classifiers (baseline), with
pretrained weights from timm (online), a local file, or a registry package (offline) that must fit exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mfrn.models.config import ModelConfig
from mfrn.models.pretrained import (
    PretrainedWeightsError,
    WeightSource,
    is_package_spec,
    load_package_state,
    read_weights_file,
    weight_source,
)

FEATURE_STRIDES = (4, 8, 16, 32)


def verify_loaded_weights(
    model: nn.Module, file_state: dict[str, torch.Tensor], path: Path | str, ignore: tuple[str, ...] = ()
) -> None:
    """Every tensor of ``model`` (except ``ignore`` prefixes) must equal the file's tensor of that key.

    timm loads feature extractors with ``strict=False``: this check makes a file that misses
    keys, or holds another architecture, fail loudly instead of leaving random weights.
    """
    missing, different = [], []
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") or any(key.startswith(p) for p in ignore):
            continue
        source = file_state.get(key)
        if source is None:
            missing.append(key)
        elif source.shape != value.shape or not torch.equal(source.to(value.dtype), value.cpu()):
            different.append(key)
    if missing or different:
        raise PretrainedWeightsError(
            f"{path}: does not fit the backbone: {len(missing)} missing keys "
            f"(first: {missing[:3]}), {len(different)} keys not loaded as stored (first: {different[:3]})"
        )


def _new_head(model: nn.Module, kwargs: dict[str, Any]) -> tuple[str, ...]:
    """Key prefixes of a head that ``num_classes`` replaces (initialised, not loaded)."""
    classifier = model.pretrained_cfg.get("classifier")
    if kwargs.get("num_classes") is None or not classifier:
        return ()
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def create_timm_model(cfg: ModelConfig, **kwargs: Any) -> nn.Module:
    """``timm.create_model(cfg.backbone, ...)`` with the weights that ``cfg`` asks for."""
    import timm

    if not (cfg.pretrained and cfg.pretrained_file):
        return timm.create_model(cfg.backbone, pretrained=cfg.pretrained, **kwargs)
    if is_package_spec(cfg.pretrained_file):
        return _create_from_package(weight_source(cfg.pretrained_file), cfg.backbone, **kwargs)
    path = Path(cfg.pretrained_file).expanduser()
    file_state = read_weights_file(path)  # refuses unsafe or unreadable files before timm opens it
    try:
        model = timm.create_model(
            cfg.backbone, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs
        )
    except RuntimeError as error:  # size mismatch, or missing keys in a strict load
        raise PretrainedWeightsError(f"{path}: does not fit backbone {cfg.backbone!r}: {error}") from error
    verify_loaded_weights(model, file_state, path, ignore=_new_head(model, kwargs))
    return model


def _create_from_package(source: WeightSource, backbone: str, **kwargs: Any) -> nn.Module:
    """A timm model holding a registry package's weights, every tensor checked after loading."""
    import timm

    path, state = load_package_state(source, backbone)
    model = timm.create_model(backbone, pretrained=False, **kwargs)
    ignore = _new_head(model, kwargs)
    own = model.state_dict()
    wanted = {k: v for k, v in state.items() if k in own and not any(k.startswith(p) for p in ignore)}
    try:
        model.load_state_dict(wanted, strict=False)
    except RuntimeError as error:
        raise PretrainedWeightsError(f"{path}: does not fit backbone {backbone!r}: {error}") from error
    verify_loaded_weights(model, state, f"{path} ({source.spec})", ignore=ignore)
    mean, std = _normalisation(model)
    if mean != source.mean or std != source.std:  # inference rebuilds the model without the package
        raise PretrainedWeightsError(
            f"{source.spec}: timm's pretrained_cfg for {backbone} normalises with mean {mean}, std {std}, "
            f"but these weights were trained with mean {source.mean}, std {source.std}"
        )
    return model


def _normalisation(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pretrained_cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = tuple(float(v) for v in pretrained_cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(float(v) for v in pretrained_cfg.get("std", (0.229, 0.224, 0.225)))
    return mean, std


class InputNormalizer(nn.Module):
    """(x - mean) / std with the backbone's statistics; identity when disabled. Inputs in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return images
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)


class FeatureBackbone(nn.Module):
    """A timm ``features_only`` model returning the levels at strides 4/8/16/32 (shallow first).

    Attributes: ``channels`` and ``strides`` per returned level, ``mean``/``std`` (pretrained_cfg).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        kwargs: dict[str, Any] = dict(features_only=True, drop_path_rate=cfg.drop_path_rate)
        if cfg.out_indices:
            kwargs["out_indices"] = tuple(cfg.out_indices)
        self.body = create_timm_model(cfg, **kwargs)
        reductions = list(self.body.feature_info.reduction())
        channels = list(self.body.feature_info.channels())
        if cfg.out_indices:
            self.levels = list(range(len(reductions)))
        else:
            missing = [s for s in FEATURE_STRIDES if s not in reductions]
            if missing:
                raise ValueError(
                    f"backbone {cfg.backbone!r} has no feature levels at strides {missing} "
                    f"(it has {reductions}); set ModelConfig.out_indices explicitly"
                )
            # the last level of each stride: timm may report several levels at one stride
            self.levels = [max(i for i, r in enumerate(reductions) if r == s) for s in FEATURE_STRIDES]
        self.channels = tuple(channels[i] for i in self.levels)
        self.strides = tuple(reductions[i] for i in self.levels)
        if list(self.strides) != sorted(self.strides):
            raise ValueError(f"backbone {cfg.backbone!r}: feature strides {self.strides} are not increasing")
        self.mean, self.std = _normalisation(self.body)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = self.body(images)
        return [features[i] for i in self.levels]


def create_classifier(cfg: ModelConfig, num_classes: int = 2) -> nn.Module:
    """The full timm classification model with a new ``num_classes`` head (SBI's detector)."""
    model = create_timm_model(
        cfg, num_classes=num_classes, drop_rate=cfg.dropout, drop_path_rate=cfg.drop_path_rate
    )
    head = model.get_classifier()
    if cfg.head_init == "torch" and isinstance(head, nn.Linear):
        head.reset_parameters()
    return model


def model_normalisation(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """mean, std of a timm model's pretrained_cfg (ImageNet's when it has none)."""
    return _normalisation(model)
