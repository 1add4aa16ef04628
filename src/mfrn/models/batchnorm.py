"""Batch norm for training in channels_last on the CPU, as precise as in the plain layout.

torch's CPU batch norm in training mode accumulates its batch statistics on channels_last input about 100x
less precisely than on the plain layout (``benchmarks/bn_precision.py``: 7.8e-6 against 4.3e-8 relative to
float64 at unit variance, 1e-3 against 1e-5 when the mean is 300 times the std), and the error reaches the
gradients of every layer below. Every demo trained that way tested below every demo trained in the plain
layout. Running the layers on the plain layout instead (a layout copy in and out of each) took back the
speed channels_last was chosen for. This computes the statistics on the (N*H*W, C) view of the channels_last
memory with ``torch.sum`` (a cascaded, precise reduction): the mean, then the centred values (exact near the
mean), the rounding residual of the mean and the centred variance, with a hand-written backward; a few
memory passes each way, so a training step costs somewhat more than with torch's kernel (bn_precision --time).

:func:`precise_channels_last_batch_norm` turns a model's ``nn.BatchNorm2d`` and timm ``BatchNormAct2d``
layers into subclasses that take this path only where it matters (training mode, float32 channels_last
CPU input) and are the parent class everywhere else: state dicts, eval mode and CUDA are unchanged.
"""

from __future__ import annotations

import torch
from timm.layers.norm_act import BatchNormAct2d
from torch import nn


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in channels_last memory -> its (N*H*W, C) view, no copy."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _as_nchw(rows: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    n, c, h, w = shape
    return rows.view(n, h, w, c).permute(0, 3, 1, 2)


class _ChannelsLastBatchNorm(torch.autograd.Function):
    """Training-mode batch norm over (N, H, W) of a channels_last tensor: output, batch mean, biased var."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float):
        rows = _rows(x)
        count = rows.shape[0]
        mean = rows.sum(0) / count
        centred = rows - mean  # exact wherever x is within a factor 2 of the mean (Sterbenz): no cancellation
        residual = centred.sum(0) / count  # what rounding the mean to float32 left: x - mean = centred - residual
        var = torch.linalg.vecdot(centred, centred, dim=0) / count - residual.square()
        invstd = torch.rsqrt(var + eps)
        scale = invstd if weight is None else invstd * weight
        shift = -residual * scale if bias is None else bias - residual * scale
        out = torch.empty_like(x, memory_format=torch.channels_last)  # not a view: later layers act in place
        torch.addcmul(shift, centred, scale, out=_rows(out))
        ctx.save_for_backward(centred, residual, invstd, weight)
        ctx.shape = x.shape
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor, _grad_mean, _grad_var):
        centred, residual, invstd, weight = ctx.saved_tensors
        grad = _rows(grad_out.contiguous(memory_format=torch.channels_last))
        count = grad.shape[0]
        grad_sum = grad.sum(0)
        grad_dot_centred = torch.linalg.vecdot(grad, centred, dim=0) - residual * grad_sum  # sum grad * (x - mean)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # d/dx of w * (x - mean) * invstd, mean and invstd functions of the batch:
            # gain * (grad - mean(grad)) + coef * (x - mean), x - mean = centred - residual
            gain = invstd if weight is None else weight * invstd
            coef = -gain * invstd.square() * grad_dot_centred / count
            grad_x = torch.addcmul(-gain * grad_sum / count - coef * residual, grad, gain)
            grad_x.addcmul_(centred, coef)
            grad_x = _as_nchw(grad_x, ctx.shape)
        if weight is not None and ctx.needs_input_grad[1]:
            grad_weight = grad_dot_centred * invstd
        if ctx.needs_input_grad[2]:
            grad_bias = grad_sum
        return grad_x, grad_weight, grad_bias, None


def _takes_precise_path(x: torch.Tensor) -> bool:
    """Float32 CPU channels_last input that is not also plain-contiguous (C = 1 or 1x1 maps are both)."""
    return (x.dim() == 4 and x.device.type == "cpu" and x.dtype == torch.float32
            and x.shape[0] * x.shape[2] * x.shape[3] > 1
            and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())


class _PreciseInTraining:
    """The training-mode branch of torch's ``_BatchNorm.forward`` on :class:`_ChannelsLastBatchNorm`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _takes_precise_path(x)):
            return super().forward(x)
        out, mean, var = _ChannelsLastBatchNorm.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats and self.running_mean is not None:
            factor = 0.0 if self.momentum is None else self.momentum
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
                if self.momentum is None:  # cumulative moving average
                    factor = 1.0 / float(self.num_batches_tracked)
            count = x.numel() // x.shape[1]
            with torch.no_grad():
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(var * (count / (count - 1)), factor)  # the unbiased estimate, as torch
        return self._after_norm(out)

    def _after_norm(self, x: torch.Tensor) -> torch.Tensor:
        return x


class PreciseBatchNorm2d(_PreciseInTraining, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training-mode statistics on channels_last CPU input are precise."""


class PreciseBatchNormAct2d(_PreciseInTraining, BatchNormAct2d):
    """timm's ``BatchNormAct2d`` (batch norm, then drop and activation), precise as :class:`PreciseBatchNorm2d`."""

    def _after_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


_PRECISE = {nn.BatchNorm2d: PreciseBatchNorm2d, BatchNormAct2d: PreciseBatchNormAct2d}


def precise_channels_last_batch_norm(model: nn.Module) -> nn.Module:
    """Make ``model``'s ``nn.BatchNorm2d`` and timm ``BatchNormAct2d`` layers precise in channels_last training.

    In place (the class of each such layer is swapped for its precise subclass; parameters, buffers and
    state-dict keys stay as they are) and returned. Other norm layers (SyncBatchNorm, subclasses) are left.
    """
    for module in model.modules():
        precise = _PRECISE.get(type(module))
        if precise is not None:
            module.__class__ = precise
    return model
