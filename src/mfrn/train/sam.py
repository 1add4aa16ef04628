"""Sharpness-Aware Minimisation (Foret et al., ICLR 2021), wrapping any torch optimizer.

How the training loop calls it (one batch)::

    sam = SAM(torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9), rho=0.05)
    scheduler = build_scheduler(sam, "sbi", total_steps)      # steps sam.base_optimizer
    scaler = torch.amp.GradScaler("cuda", enabled=use_fp16)   # None or disabled for fp32/bf16

    def compute_loss() -> torch.Tensor:                       # forward only, no backward
        with torch.autocast(device_type, dtype=amp_dtype, enabled=use_amp):
            output = model(images)
            return criterion(output, labels, region_maps, boundary_maps).total

    result = sam_step(sam, compute_loss, scaler=scaler)       # model=model: BN frozen in pass 2
    model.project_constraints()                               # after every optimizer step
    scheduler.step()                                          # per step, after the update

``sam_step`` does: pass 1 (loss at w, backward), SAM ascent to w + e(w), pass 2 (loss at
w + e, backward), restore w, base optimizer step with the pass-2 gradients. BatchNorm running
statistics are updated in both passes, as SBI's training does, unless ``model`` is given: then
they are frozen in pass 2 (``train.sam_bn_second_pass: freeze``). fp16 with a GradScaler: pass-1 gradients are unscaled before the ascent and
the whole step is skipped (scale backed off) when they hold inf/NaN; pass 2 goes through
``scaler.step``/``scaler.update`` as usual. bf16 autocast needs no scaler.

Without AMP the manual form is equally valid::

    compute_loss().backward(); sam.first_step(zero_grad=True)
    compute_loss().backward(); sam.second_step(zero_grad=True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class SAMConfig:
    """SAM's settings; method.md §6: rho 0.05 over SGD."""

    rho: float = 0.05
    adaptive: bool = False  # ASAM (Kwon et al. 2021): perturbation scaled by |w|


class SAM:
    """SAM around ``base_optimizer``; shares its ``param_groups`` (so schedulers see one lr)."""

    def __init__(self, base_optimizer: torch.optim.Optimizer, rho: float = 0.05, adaptive: bool = False,
                 eps: float = 1e-12) -> None:
        if rho < 0:
            raise ValueError(f"SAM: rho must be >= 0, got {rho}")
        if isinstance(base_optimizer, SAM):
            raise TypeError("SAM: the base optimizer is already a SAM")
        self.base_optimizer = base_optimizer
        self.rho = rho
        self.adaptive = adaptive
        self.eps = eps
        self._backup: dict[torch.Tensor, torch.Tensor] = {}  # weights before the ascent

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.base_optimizer.param_groups

    @property
    def state(self) -> Any:
        return self.base_optimizer.state

    @property
    def is_perturbed(self) -> bool:
        return bool(self._backup)

    def _params_with_grad(self) -> Iterator[torch.Tensor]:
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    yield param

    def _grad_norm(self) -> torch.Tensor:
        params = list(self._params_with_grad())
        if not params:
            return torch.tensor(0.0)
        device = params[0].device
        norms = [
            ((param.abs() if self.adaptive else 1.0) * param.grad).norm(p=2).to(device) for param in params
        ]
        return torch.stack(norms).norm(p=2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """Move to w + e(w), e = rho * g / ||g|| (ASAM: rho * w^2 g / ||w g||). Params without grad stay."""
        if self._backup:
            raise RuntimeError("SAM.first_step called twice without second_step")
        scale = self.rho / (self._grad_norm() + self.eps)
        for param in self._params_with_grad():
            self._backup[param] = param.detach().clone()
            step = param.grad * scale.to(param.device)
            if self.adaptive:
                step = step * param.square()
            param.add_(step)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def restore(self) -> None:
        """Back to w (the weights before first_step)."""
        for param, original in self._backup.items():
            param.copy_(original)
        self._backup.clear()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = True) -> None:
        """Restore w and update it with the gradient taken at w + e(w)."""
        if not self._backup:
            raise RuntimeError("SAM.second_step called without first_step")
        self.restore()
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Both steps; ``closure`` must zero nothing, run forward + backward and return the loss."""
        closure = torch.enable_grad()(closure)
        loss = closure()
        self.first_step(zero_grad=True)
        closure()
        self.second_step(zero_grad=True)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"base_optimizer": self.base_optimizer.state_dict(), "rho": self.rho, "adaptive": self.adaptive}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "base_optimizer" not in state_dict:
            raise KeyError("SAM.load_state_dict: no 'base_optimizer' entry (is this a plain optimizer's state?)")
        self.base_optimizer.load_state_dict(state_dict["base_optimizer"])
        self.rho = float(state_dict.get("rho", self.rho))
        self.adaptive = bool(state_dict.get("adaptive", self.adaptive))


def build_sam(params: Any, cfg: SAMConfig, base: str = "sgd", **base_kwargs: Any) -> SAM:
    """SAM over a named base optimizer ("sgd" | "adam" | "adamw") built on ``params``."""
    optimizers = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if base not in optimizers:
        raise ValueError(f"unknown base optimizer {base!r}; known: {', '.join(optimizers)}")
    return SAM(optimizers[base](params, **base_kwargs), rho=cfg.rho, adaptive=cfg.adaptive)


@contextlib.contextmanager
def frozen_batchnorm_stats(model: nn.Module | None) -> Iterator[None]:
    """BatchNorm layers still normalise with batch statistics but do not update running ones."""
    if model is None:
        yield
        return
    saved = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            saved.append((module, module.momentum))
            module.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for module, momentum in saved:
            module.momentum = momentum


@dataclass
class SAMStepResult:
    loss: torch.Tensor  # pass-1 loss (at w), detached
    perturbed_loss: torch.Tensor | None  # pass-2 loss (at w + e), None when skipped
    skipped: bool  # True when fp16 gradients overflowed and no update was made


def _unscale_and_check(sam: SAM, scaler: torch.amp.GradScaler) -> bool:
    """Divide pass-1 gradients by the loss scale; True when all are finite."""
    grads = [param.grad for param in sam._params_with_grad()]
    if not grads:
        return True
    inverse = 1.0 / scaler.get_scale()
    for grad in grads:
        grad.mul_(inverse)
    # one device sync for the whole check
    return bool(torch.stack([torch.isfinite(grad).all().to(grads[0].device) for grad in grads]).all())


def sam_step(
    sam: SAM,
    compute_loss: Callable[[], torch.Tensor],
    scaler: torch.amp.GradScaler | None = None,
    model: nn.Module | None = None,
) -> SAMStepResult:
    """One SAM update with optional AMP: see the module docstring. ``compute_loss`` runs the
    forward pass (under autocast if wanted) and returns the scalar loss, without backward.
    Pass ``model`` to keep BatchNorm running statistics from being updated in pass 2 (at w + e);
    without it they are updated in both passes, as in SBI."""
    scaling = scaler is not None and scaler.is_enabled()
    sam.zero_grad()
    loss = compute_loss()
    (scaler.scale(loss) if scaling else loss).backward()
    if scaling and not _unscale_and_check(sam, scaler):
        sam.zero_grad()
        scaler.update(new_scale=scaler.get_scale() * scaler.get_backoff_factor())
        return SAMStepResult(loss=loss.detach(), perturbed_loss=None, skipped=True)
    sam.first_step(zero_grad=True)
    with frozen_batchnorm_stats(model):
        perturbed_loss = compute_loss()
    (scaler.scale(perturbed_loss) if scaling else perturbed_loss).backward()
    sam.restore()
    skipped = False
    if scaling:
        scale_before = scaler.get_scale()
        scaler.step(sam.base_optimizer)  # unscales, skips the step on inf/NaN
        scaler.update()
        skipped = scaler.get_scale() < scale_before
    else:
        sam.base_optimizer.step()
    sam.zero_grad()
    return SAMStepResult(loss=loss.detach(), perturbed_loss=perturbed_loss.detach(), skipped=skipped)
