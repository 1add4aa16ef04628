"""The precise channels_last batch norm: torch's semantics, plain-layout precision, the parent class elsewhere."""

from __future__ import annotations

import copy

import pytest
import torch
from timm.layers.norm_act import BatchNormAct2d
from torch import nn

from mfrn.models.batchnorm import (PreciseBatchNorm2d, PreciseBatchNormAct2d, _ChannelsLastBatchNorm,
                                   precise_channels_last_batch_norm)

CHANNELS_LAST = torch.channels_last


def _relative(a: torch.Tensor, reference: torch.Tensor) -> float:
    return float((a.double() - reference.double()).norm() / reference.double().norm())


def _layer(channels: int = 6, **kwargs) -> nn.BatchNorm2d:
    layer = nn.BatchNorm2d(channels, **kwargs)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(3))
        layer.bias.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(4))
    return layer


def _forward_backward(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor, steps: int = 1):
    """Output, input / weight / bias gradients of the last of ``steps`` training steps, and the buffers."""
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        layer.zero_grad()
        out = layer(x)
        out.backward(grad.to(out.dtype))
    return (out.detach(), x.grad, layer.weight.grad, layer.bias.grad, layer.running_mean, layer.running_var,
            layer.num_batches_tracked)


def _inputs(shape=(4, 6, 9, 7), mean=0.0, std=1.0):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * std + mean
    return x, torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def test_swap_keeps_parameters_buffers_and_state_dict_keys():
    model = nn.Sequential(nn.Conv2d(3, 6, 3), _layer(), BatchNormAct2d(6, act_layer=nn.ReLU), nn.SyncBatchNorm(6))
    before = copy.deepcopy(model.state_dict())
    assert precise_channels_last_batch_norm(model) is model
    assert type(model[1]) is PreciseBatchNorm2d and type(model[2]) is PreciseBatchNormAct2d
    assert type(model[3]) is nn.SyncBatchNorm  # other norm layers are left as they are
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    plain = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), BatchNormAct2d(6, act_layer=nn.ReLU), nn.SyncBatchNorm(6))
    plain.load_state_dict(after)  # a checkpoint of a precise model loads into the stock one
    precise_channels_last_batch_norm(model)  # twice is once
    assert type(model[1]) is PreciseBatchNorm2d


@pytest.mark.parametrize("momentum", [0.1, None, 0.0], ids=["momentum", "cumulative", "frozen (SAM pass 2)"])
def test_matches_torch_batch_norm_in_the_plain_layout(momentum):
    """Output, gradients and running statistics as nn.BatchNorm2d's, over three steps (the running averages)."""
    x, grad = _inputs()
    stock = _layer(momentum=momentum)
    precise = precise_channels_last_batch_norm(copy.deepcopy(stock))
    expected = _forward_backward(stock, x, grad, steps=3)
    got = _forward_backward(precise, x.contiguous(memory_format=CHANNELS_LAST), grad, steps=3)
    assert got[0].is_contiguous(memory_format=CHANNELS_LAST) and got[1].is_contiguous(memory_format=CHANNELS_LAST)
    for name, a, b in zip(("out", "dx", "dweight", "dbias", "running_mean", "running_var"), got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
    assert int(got[6]) == int(expected[6]) == 3


def test_as_precise_as_the_plain_layout_where_torch_channels_last_is_not():
    """Mean 30 x the std: error against float64 within 4x of the plain layout's (measured: 1-3x; torch's own
    channels_last kernel 10-50x on output and dweight, torch 2.14.1)."""
    x, grad = _inputs((8, 16, 40, 40), mean=3.0, std=0.1)
    stock = _layer(16)
    reference = _forward_backward(copy.deepcopy(stock).double(), x.double(), grad.double())
    plain = _forward_backward(copy.deepcopy(stock), x, grad)
    precise = _forward_backward(precise_channels_last_batch_norm(copy.deepcopy(stock)),
                                x.contiguous(memory_format=CHANNELS_LAST), grad)
    for index, name in enumerate(("out", "dx", "dweight", "dbias", "running_mean", "running_var")):
        plain_error, precise_error = _relative(plain[index], reference[index]), _relative(precise[index], reference[index])
        assert precise_error <= max(4 * plain_error, 1e-6), (name, precise_error, plain_error)


def test_gradients_pass_gradcheck():
    x = torch.randn(3, 4, 5, 2, dtype=torch.float64).contiguous(memory_format=CHANNELS_LAST).requires_grad_(True)
    weight = torch.rand(4, dtype=torch.float64, requires_grad=True)
    bias = torch.rand(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: _ChannelsLastBatchNorm.apply(*a, 1e-5)[0], (x, weight, bias))
    assert torch.autograd.gradcheck(lambda a: _ChannelsLastBatchNorm.apply(a, None, None, 1e-5)[0], (x,))


def test_batch_norm_act_normalises_then_acts_and_an_in_place_activation_after_it_works():
    x, grad = _inputs(mean=0.5)
    stock = nn.Sequential(BatchNormAct2d(6, act_layer=nn.ReLU6), nn.BatchNorm2d(6), nn.ReLU(inplace=True))
    precise = precise_channels_last_batch_norm(copy.deepcopy(stock))
    x_plain, x_cl = x.clone().requires_grad_(True), x.contiguous(memory_format=CHANNELS_LAST).requires_grad_(True)
    stock(x_plain).backward(grad)
    out = precise(x_cl)
    out.backward(grad)
    torch.testing.assert_close(out, stock(x), rtol=1e-5, atol=1e-5)
    assert float(out.detach().min()) >= 0.0
    torch.testing.assert_close(x_cl.grad, x_plain.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["eval mode", "plain layout", "bfloat16", "1x1 maps"])
def test_elsewhere_it_is_the_parent_class_bit_for_bit(case):
    x, _ = _inputs()
    stock = _layer()
    if case == "eval mode":
        stock.eval()
        x = x.contiguous(memory_format=CHANNELS_LAST)
    elif case == "bfloat16":
        stock = stock.to(torch.bfloat16)
        x = x.to(torch.bfloat16).contiguous(memory_format=CHANNELS_LAST)
    elif case == "1x1 maps":
        x = x[:, :, :1, :1].contiguous(memory_format=CHANNELS_LAST)
    precise = precise_channels_last_batch_norm(copy.deepcopy(stock))
    assert torch.equal(precise(x), stock(x))
    assert torch.equal(precise.running_mean, stock.running_mean)


def test_one_value_per_channel_is_refused_as_torch_refuses_it():
    layer = precise_channels_last_batch_norm(_layer())
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(torch.randn(1, 6, 1, 1).contiguous(memory_format=CHANNELS_LAST))


def test_a_training_step_of_a_timm_backbone_matches_the_plain_layout():
    """The whole of a (tiny) timm model: every BatchNorm(Act)2d swapped, gradients as in the plain layout."""
    import timm

    torch.manual_seed(0)
    stock = timm.create_model("test_efficientnet", pretrained=False, num_classes=2).train()
    precise = precise_channels_last_batch_norm(copy.deepcopy(stock).to(memory_format=CHANNELS_LAST))
    swapped = [m for m in precise.modules() if isinstance(m, nn.BatchNorm2d)]
    assert swapped and all(type(m) in (PreciseBatchNorm2d, PreciseBatchNormAct2d) for m in swapped)
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    stock(x).logsumexp(1).sum().backward()
    precise(x.contiguous(memory_format=CHANNELS_LAST)).logsumexp(1).sum().backward()
    for (name, a), b in zip(precise.named_parameters(), stock.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5, msg=name)
    for (name, a), b in zip(precise.named_buffers(), stock.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
