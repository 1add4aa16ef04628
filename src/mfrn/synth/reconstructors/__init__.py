"""Face reconstructors for RBI: one interface, SimSwap-compatible and built-in generators.

``build_reconstructor(name, **kwargs)`` imports the generator's module on first use:
- ``"builtin"``: ``BuiltinReconstructor``; kwargs ``checkpoint=path`` (trained) or ``cfg=BuiltinGeneratorConfig``.
- ``"simswap"``: ``SimSwapReconstructor.from_files(generator_path, identity_path, variant="224"|"512", ...)``.
"""

from __future__ import annotations

import importlib

from mfrn.registry import Registry
from mfrn.synth.reconstructors.base import Reconstruction, ReconstructionError, Reconstructor
from mfrn.synth.reconstructors.noise import NoiseDraw, RBINoiseConfig

RECONSTRUCTORS: Registry[Reconstructor] = Registry("reconstructor")

_MODULES = {"builtin": "mfrn.synth.reconstructors.builtin", "simswap": "mfrn.synth.reconstructors.simswap"}


@RECONSTRUCTORS.register("builtin")
def _build_builtin(checkpoint: str | None = None, cfg=None, identity_encoder=None, device: str | None = "cpu") -> Reconstructor:
    from mfrn.synth.reconstructors.builtin import BuiltinGeneratorConfig, BuiltinReconstructor

    device = device or "cpu"
    if isinstance(cfg, dict):
        cfg = BuiltinGeneratorConfig.from_dict(cfg)
    if checkpoint is not None:
        return BuiltinReconstructor.from_checkpoint(checkpoint, identity_encoder=identity_encoder, device=device)
    return BuiltinReconstructor(cfg, identity_encoder).to(device)


@RECONSTRUCTORS.register("simswap")
def _build_simswap(generator_path: str, identity_path: str, variant: str = "224", device: str | None = "cpu", **kwargs) -> Reconstructor:
    from mfrn.synth.reconstructors.simswap import SimSwapReconstructor

    return SimSwapReconstructor.from_files(generator_path, identity_path, variant=variant, device=device or "cpu", **kwargs)


def build_reconstructor(name: str, **kwargs) -> Reconstructor:
    """Build a registered reconstructor by name (``RECONSTRUCTORS.names()`` lists them)."""
    module = _MODULES.get(name)
    if module is not None:
        importlib.import_module(module)
    return RECONSTRUCTORS.build(name, **kwargs)


__all__ = [
    "RECONSTRUCTORS",
    "NoiseDraw",
    "RBINoiseConfig",
    "Reconstruction",
    "ReconstructionError",
    "Reconstructor",
    "build_reconstructor",
]
