"""How far fp32 training arithmetic lands from float64, in the plain and the channels_last memory layout (CPU).

The CPU recipes train in channels_last for speed. This measures what that costs in precision:

* **ops**: one forward and backward of single layers (depthwise and stem convolutions, batch norm in
  training mode, on unit-variance input and on input whose mean is 30 / 300 times its std), each in fp32
  plain, fp32 channels_last (torch's batch norm), fp32 channels_last with the project's precise batch norm
  (``mfrn.models.batchnorm``, what the recipes train with) and float64; the relative error (L2) of the output, the input gradient and
  the parameter gradients against float64.
* **model** (with ``--crops DIR``): one training step of the demo's MFRN (``configs/demo.yaml``, fresh
  ImageNet Lite0 weights, dropout and drop path off) on the first 16 face crops under DIR (for example a
  demo's ``prepared/crops``) with alternating labels and random maps; the relative gradient error of the
  parameters with the largest gradients, and the |g|^2-weighted mean over all of them.
* **time** (with ``--time``): seconds per demo training step (8+8 random images, AdamW) in each of the
  three, interleaved, the median of 8 rounds after 2.

    python benchmarks/bn_precision.py
    python benchmarks/bn_precision.py --crops runs/demo/prepared/crops --time
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mfrn.models.batchnorm import precise_channels_last_batch_norm

# "channels_last, precise bn": mfrn.models.batchnorm (what the recipes train with), the convolutions in channels_last
LAYOUTS = ("plain", "channels_last", "channels_last, precise bn", "float64")


def _relative(a: torch.Tensor, reference: torch.Tensor) -> float:
    return float((a.double() - reference.double()).norm() / (reference.double().norm() + 1e-30))


def _in_layout(module: nn.Module, x: torch.Tensor, layout: str) -> tuple[nn.Module, torch.Tensor]:
    module = copy.deepcopy(module).train()
    if layout == "float64":
        return module.double(), x.double()
    if layout.startswith("channels_last"):
        module = module.to(memory_format=torch.channels_last)
        if layout.endswith("precise bn"):
            precise_channels_last_batch_norm(module)
        return module, x.contiguous(memory_format=torch.channels_last)
    return module, x.clone()


class _Affine(nn.Module):
    """``inner(x * scale + shift)``, computed in the input's precision: activations with a large mean."""

    def __init__(self, inner: nn.Module, scale: float, shift: float) -> None:
        super().__init__()
        self.inner, self.scale, self.shift = inner, scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x * self.scale + self.shift)


def op_errors(name: str, module: nn.Module, shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
    layouts = [layout for layout in LAYOUTS if has_batch_norm or not layout.endswith("precise bn")]
    results = {}
    for layout in layouts:
        m, xin = _in_layout(module, x, layout)
        xin.requires_grad_(True)
        y = m(xin)
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.dtype))
        results[layout] = (y.detach(), xin.grad, {n: p.grad for n, p in m.named_parameters()})
    ref_y, ref_dx, ref_grads = results["float64"]
    for layout in layouts[:-1]:
        y, dx, grads = results[layout]
        params = " ".join(f"d{n.split('.')[-1]} {_relative(g, ref_grads[n]):.1e}" for n, g in grads.items())
        print(f"  {name:34s} {layout:25s} out {_relative(y, ref_y):.1e}  dx {_relative(dx, ref_dx):.1e}  {params}")


def _demo_model_and_loss(dropout: bool):
    from mfrn.config import load_config
    from mfrn.models import build_model
    from mfrn.train.losses import build_criterion

    overrides = [] if dropout else ["model.dropout=0.0", "model.drop_path_rate=0.0"]
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml", overrides)
    torch.manual_seed(0)
    return config, build_model(config.model), build_criterion(config.loss, False)


def _targets(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (torch.arange(n) % 2, (torch.rand(n, 1, size, size, generator=generator) > 0.5).float(),
            (torch.rand(n, 1, size, size, generator=generator) > 0.9).float())


def step_times(rounds: int = 10, warmup: int = 2) -> None:
    """Seconds per training step of each layout, interleaved (one step of each per round) so that a slower
    stretch of a shared machine weighs on all three alike; the median of the rounds after ``warmup``."""
    import time

    config, model, criterion = _demo_model_and_loss(dropout=True)
    size = config.model.input_size
    x = torch.rand(16, 3, size, size, generator=torch.Generator().manual_seed(2))
    label, region, boundary = _targets(16, size)
    print(f"time: one demo MFRN training step, 8+8 random images at {size} px, AdamW; median of {rounds - warmup} "
          f"interleaved rounds after {warmup}")
    runs = {}
    for layout in LAYOUTS[:3]:
        m, xin = _in_layout(model, x, layout)
        runs[layout] = (m, xin, torch.optim.AdamW(m.parameters(), 1e-4), [])
    for _ in range(rounds):
        for m, xin, optimizer, seconds in runs.values():
            start = time.perf_counter()
            optimizer.zero_grad()
            criterion(m(xin), label, region, boundary).total.backward()
            optimizer.step()
            seconds.append(time.perf_counter() - start)
    for layout, (_, _, _, seconds) in runs.items():
        print(f"  {layout:25s} {float(np.median(seconds[warmup:])):.2f} s per step")


def model_errors(crops_dir: Path, top: int) -> None:
    from PIL import Image

    config, model, criterion = _demo_model_and_loss(dropout=False)
    size = config.model.input_size
    paths = sorted(p for p in crops_dir.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})[:16]
    if len(paths) < 2:
        raise SystemExit(f"{crops_dir}: fewer than 2 face crops (.png/.jpg) found")
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size))) for p in paths])
    x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
    n = len(paths)
    label, region, boundary = _targets(n, size)
    results = {}
    for layout in LAYOUTS:
        m, xin = _in_layout(model, x, layout)
        loss = criterion(m(xin), label, region.to(xin.dtype), boundary.to(xin.dtype))
        loss.total.backward()
        results[layout] = {name: p.grad.detach() for name, p in m.named_parameters() if p.grad is not None}
    reference = results["float64"]
    largest = sorted(reference, key=lambda name: -float(reference[name].norm()))[:top]
    print(f"model: one demo MFRN training step on {n} crops of {crops_dir} at {size} px, gradient error against float64")
    for layout in LAYOUTS[:3]:
        errors = {name: _relative(g, reference[name]) for name, g in results[layout].items()}
        weights = {name: float(reference[name].norm()) ** 2 for name in errors}
        mean = sum(errors[k] * weights[k] for k in errors) / sum(weights.values())
        print(f"  {layout:24s} |g|^2-weighted mean {mean:.1e}; largest gradients: "
              + ", ".join(f"{name} {errors[name]:.1e}" for name in largest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crops", type=Path, help="a folder of face crops: also measure one demo training step")
    parser.add_argument("--top", type=int, default=6, help="parameters shown in the model part")
    parser.add_argument("--time", action="store_true", help="also time a demo training step in each layout")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; relative L2 error against float64")
    print("ops (batch 16):")
    op_errors("depthwise conv 3x3, 32 ch, 112 px", nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), (16, 32, 112, 112))
    op_errors("stem conv 3x3 s2, 224 px", nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False), (16, 3, 224, 224))
    op_errors("batch norm (train), mean 0 std 1", nn.BatchNorm2d(32), (16, 32, 112, 112))
    op_errors("batch norm (train), mean/std 30", _Affine(nn.BatchNorm2d(32), 0.1, 3.0), (16, 32, 112, 112))
    op_errors("batch norm (train), mean/std 300", _Affine(nn.BatchNorm2d(32), 0.1, 30.0), (16, 32, 112, 112))
    if args.crops is not None:
        model_errors(args.crops, args.top)
    if args.time:
        step_times()


if __name__ == "__main__":
    main()
