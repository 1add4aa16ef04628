"""SAM: ascent/descent, params without grad, ASAM, state dicts, AMP paths, BatchNorm statistics."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mfrn.train.sam import SAM, SAMConfig, build_sam, frozen_batchnorm_stats, sam_step


def _regression(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(64, 4, generator=generator)
    targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
    torch.manual_seed(seed)
    return nn.Linear(4, 1), inputs, targets


@pytest.mark.parametrize("base, kwargs", [("sgd", dict(lr=0.05, momentum=0.9)), ("adam", dict(lr=0.05)),
                                          ("adamw", dict(lr=0.05, weight_decay=0.01))])
@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_reduces_a_least_squares_loss(base, kwargs, adaptive):
    model, inputs, targets = _regression()
    sam = build_sam(model.parameters(), SAMConfig(rho=0.05, adaptive=adaptive), base, **kwargs)

    def compute_loss() -> torch.Tensor:
        return (model(inputs) - targets).square().mean()

    start = compute_loss().item()
    for _ in range(60):
        result = sam_step(sam, compute_loss)
        assert not result.skipped
    assert compute_loss().item() < 0.1 * start


def test_first_step_moves_by_rho_along_the_gradient_and_second_step_uses_the_perturbed_gradient():
    weight = nn.Parameter(torch.tensor([3.0, 4.0]))
    sam = SAM(torch.optim.SGD([weight], lr=0.1), rho=0.5)
    loss = lambda: 0.5 * (weight ** 2).sum()  # noqa: E731  gradient = weight
    loss().backward()
    sam.first_step()
    # e = rho * g / ||g|| = 0.5 * (0.6, 0.8)
    assert torch.allclose(weight.detach(), torch.tensor([3.3, 4.4]))
    assert weight.grad is None
    loss().backward()  # gradient at w + e = (3.3, 4.4)
    sam.second_step()
    assert torch.allclose(weight.detach(), torch.tensor([3.0 - 0.33, 4.0 - 0.44]))


def test_adaptive_perturbation_scales_with_the_weights():
    weight = nn.Parameter(torch.tensor([1.0, 2.0]))
    sam = SAM(torch.optim.SGD([weight], lr=0.1), rho=0.1, adaptive=True)
    weight.grad = torch.tensor([1.0, 1.0])
    sam.first_step(zero_grad=False)
    # ASAM: e = rho * w^2 g / ||w g|| = 0.1 * (1, 4) / sqrt(5)
    expected = torch.tensor([1.0, 2.0]) + 0.1 * torch.tensor([1.0, 4.0]) / 5 ** 0.5
    assert torch.allclose(weight.detach(), expected)
    sam.restore()
    assert torch.equal(weight.detach(), torch.tensor([1.0, 2.0]))


def test_params_without_gradient_are_left_alone():
    used, unused = nn.Parameter(torch.ones(3)), nn.Parameter(torch.full((3,), 7.0))
    sam = SAM(torch.optim.SGD([used, unused], lr=0.1, momentum=0.9), rho=0.05)
    for _ in range(3):
        (used * 2).sum().backward()
        sam.first_step()
        (used * 2).sum().backward()
        sam.second_step()
    assert torch.equal(unused.detach(), torch.full((3,), 7.0))
    assert not torch.equal(used.detach(), torch.ones(3))
    with pytest.raises(RuntimeError, match="without first_step"):
        sam.second_step()


def test_state_dict_round_trip_includes_the_base_optimizer():
    model, inputs, targets = _regression()
    sam = SAM(torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9), rho=0.07, adaptive=True)
    compute = lambda m: (m(inputs) - targets).square().mean()  # noqa: E731
    for _ in range(3):
        sam_step(sam, lambda: compute(model))
    saved = copy.deepcopy(sam.state_dict())
    assert saved["rho"] == 0.07 and saved["adaptive"] is True
    assert saved["base_optimizer"]["state"], "momentum buffers are missing"

    clone = copy.deepcopy(model)
    restored = SAM(torch.optim.SGD(clone.parameters(), lr=0.02, momentum=0.9), rho=0.05)
    restored.load_state_dict(saved)
    assert restored.rho == 0.07 and restored.adaptive is True
    for _ in range(2):
        sam_step(sam, lambda: compute(model))
        sam_step(restored, lambda: compute(clone))
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.allclose(a, b)
    with pytest.raises(KeyError, match="base_optimizer"):
        restored.load_state_dict(torch.optim.SGD(clone.parameters(), lr=0.1).state_dict())


def test_step_with_closure_matches_sam_step():
    model_a, inputs, targets = _regression()
    model_b = copy.deepcopy(model_a)
    sam_a = SAM(torch.optim.SGD(model_a.parameters(), lr=0.05), rho=0.05)
    sam_b = SAM(torch.optim.SGD(model_b.parameters(), lr=0.05), rho=0.05)

    def closure() -> torch.Tensor:
        loss = (model_a(inputs) - targets).square().mean()
        loss.backward()
        return loss

    sam_a.step(closure)
    sam_step(sam_b, lambda: (model_b(inputs) - targets).square().mean())
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        assert torch.allclose(a, b)


def _classifier() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    inputs = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    labels = (inputs[:, 0] > 0).long()
    return model, inputs, labels


@pytest.mark.parametrize("mode", ["bf16", "scaler_disabled"])
def test_sam_step_with_autocast_and_disabled_scaler(mode):
    model, inputs, labels = _classifier()
    sam = SAM(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), rho=0.05)
    scaler = torch.amp.GradScaler("cpu", enabled=False) if mode == "scaler_disabled" else None

    def compute_loss() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            logits = model(inputs)
        return nn.functional.cross_entropy(logits.float(), labels)

    start = compute_loss().item()
    for _ in range(30):
        result = sam_step(sam, compute_loss, scaler=scaler, model=model)
        assert not result.skipped and result.perturbed_loss is not None
    assert compute_loss().item() < 0.5 * start


def test_fp16_style_scaler_skips_the_step_on_overflow():
    model, inputs, labels = _classifier()
    sam = SAM(torch.optim.SGD(model.parameters(), lr=0.1), rho=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    before = [p.detach().clone() for p in model.parameters()]
    overflow = lambda: model(inputs).sum() * float("inf")  # noqa: E731
    result = sam_step(sam, overflow, scaler=scaler, model=model)
    assert result.skipped and result.perturbed_loss is None
    assert scaler.get_scale() == 2.0**9
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    # a finite loss then trains normally through the scaler
    finite = lambda: nn.functional.cross_entropy(model(inputs), labels)  # noqa: E731
    result = sam_step(sam, finite, scaler=scaler, model=model)
    assert not result.skipped
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_second_pass_does_not_update_batchnorm_running_statistics():
    model, inputs, labels = _classifier()
    reference = copy.deepcopy(model)
    reference(inputs)  # one forward in train mode: one running-statistics update
    sam = SAM(torch.optim.SGD(model.parameters(), lr=0.0), rho=0.05)
    sam_step(sam, lambda: nn.functional.cross_entropy(model(inputs), labels), model=model)
    assert torch.allclose(model[1].running_mean, reference[1].running_mean)
    assert torch.allclose(model[1].running_var, reference[1].running_var)
    with frozen_batchnorm_stats(model):
        assert model[1].momentum == 0.0
    assert model[1].momentum == reference[1].momentum
