"""DetectionLoss: hand-computed values, real samples, pos_weight, Dice, resizing, the baseline."""

from __future__ import annotations

import math

import pytest
import torch

from mfrn.models.outputs import DetectorOutput
from mfrn.train.losses import DetectionLoss, LossConfig, resize_target, soft_dice_loss


def _output(logits, region=None, boundary=None) -> DetectorOutput:
    return DetectorOutput(logits=torch.as_tensor(logits, dtype=torch.float32), region_logits=region,
                          boundary_logits=boundary)


def test_known_values_on_hand_made_inputs():
    output = _output([[0.0, 0.0], [0.0, 0.0]], torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2))
    labels = torch.tensor([0, 1])
    maps = torch.full((2, 8, 8), 0.25)
    losses = DetectionLoss(LossConfig(lambda_map=2.0, lambda_edge=0.5))(output, labels, maps, maps)
    assert losses.cls.item() == pytest.approx(math.log(2))
    assert losses.region.item() == pytest.approx(math.log(2))  # sigmoid(0) = 0.5 for any target
    assert losses.boundary.item() == pytest.approx(math.log(2))
    assert losses.total.item() == pytest.approx(math.log(2) * (1 + 2.0 + 0.5))
    # CE with a confident logit: log(1 + e^-4)
    confident = DetectionLoss()(_output([[4.0, 0.0]]), torch.tensor([0]))
    assert confident.cls.item() == pytest.approx(math.log1p(math.exp(-4.0)), rel=1e-5)


def test_region_bce_value_with_soft_target():
    logit, target = 1.5, 0.3
    output = _output([[0.0, 0.0]], torch.full((1, 1, 4, 4), logit), torch.zeros(1, 1, 4, 4))
    losses = DetectionLoss()(output, torch.tensor([1]), torch.full((1, 16, 16), target), torch.zeros(1, 16, 16))
    p = 1 / (1 + math.exp(-logit))
    assert losses.region.item() == pytest.approx(-(target * math.log(p) + (1 - target) * math.log(1 - p)), rel=1e-5)


def test_real_samples_with_zero_maps_and_confident_negative_maps_cost_nothing():
    output = _output([[10.0, -10.0]], torch.full((1, 1, 4, 4), -20.0), torch.full((1, 1, 4, 4), -20.0))
    zeros = torch.zeros(1, 16, 16)
    for boundary_loss in ("bce", "bce+dice"):
        losses = DetectionLoss(LossConfig(boundary_loss=boundary_loss))(output, torch.tensor([0]), zeros, zeros)
        assert losses.region.item() < 1e-6 and losses.boundary.item() < 1e-6
        assert losses.total.item() < 1e-4


def test_pos_weight_scales_the_positive_term_only():
    boundary = torch.zeros(1, 1, 4, 4)
    target = torch.zeros(1, 4, 4)
    target[0, 1, :] = 1.0  # one boundary row out of four
    output = _output([[0.0, 0.0]], torch.zeros(1, 1, 4, 4), boundary)
    plain = DetectionLoss(LossConfig(boundary_pos_weight=1.0))(output, torch.tensor([1]), target, target)
    weighted = DetectionLoss(LossConfig(boundary_pos_weight=5.0))(output, torch.tensor([1]), target, target)
    log2 = math.log(2)
    assert plain.boundary.item() == pytest.approx(log2)
    assert weighted.boundary.item() == pytest.approx(log2 * (0.25 * 5.0 + 0.75))
    assert weighted.region.item() == pytest.approx(plain.region.item())  # region has no pos_weight
    empty = torch.zeros(1, 4, 4)  # no positives: pos_weight cannot matter
    assert DetectionLoss(LossConfig(boundary_pos_weight=5.0))(output, torch.tensor([0]), empty, empty).boundary.item() \
        == pytest.approx(log2)


def test_dice_term_rewards_overlap():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1.0
    perfect = torch.where(target > 0, 30.0, -30.0)
    assert soft_dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-4)
    assert soft_dice_loss(-perfect, target).item() == pytest.approx(1 - 1 / (16 + 48 + 1), abs=1e-4)
    output = _output([[0.0, 0.0]], torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with_dice = DetectionLoss(LossConfig(boundary_loss="bce+dice"))(output, torch.tensor([1]), target[:, 0], target[:, 0])
    without = DetectionLoss(LossConfig(boundary_loss="bce"))(output, torch.tensor([1]), target[:, 0], target[:, 0])
    assert with_dice.boundary.item() > without.boundary.item()


def test_targets_are_resized_to_the_prediction():
    target = torch.zeros(2, 64, 64)
    target[:, :32] = 1.0
    small = resize_target(target, (16, 16))
    assert small.shape == (2, 1, 16, 16)
    assert small.mean().item() == pytest.approx(0.5)  # area interpolation keeps the mass
    assert resize_target(torch.ones(1, 1, 4, 4), (8, 8)).shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="target map"):
        resize_target(torch.zeros(2, 3, 4, 4), (2, 2))


def test_baseline_output_skips_the_map_terms():
    losses = DetectionLoss()(_output([[1.0, -1.0], [0.0, 2.0]]), torch.tensor([0, 1]))
    assert losses.region.item() == 0.0 and losses.boundary.item() == 0.0
    assert torch.equal(losses.total, losses.cls)


def test_predicted_maps_without_targets_are_an_error():
    output = _output([[0.0, 0.0]], torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="region_maps"):
        DetectionLoss()(output, torch.tensor([0]))


def test_label_smoothing_and_unknown_boundary_loss():
    output = _output([[10.0, -10.0]])
    sharp = DetectionLoss(LossConfig(label_smoothing=0.0))(output, torch.tensor([0])).cls
    smooth = DetectionLoss(LossConfig(label_smoothing=0.2))(output, torch.tensor([0])).cls
    assert smooth.item() > sharp.item() + 1.0
    with pytest.raises(ValueError, match="boundary_loss"):
        DetectionLoss(LossConfig(boundary_loss="focal"))


def test_total_backpropagates_into_every_map():
    region = torch.zeros(1, 1, 4, 4, requires_grad=True)
    boundary = torch.zeros(1, 1, 4, 4, requires_grad=True)
    logits = torch.zeros(1, 2, requires_grad=True)
    maps = torch.ones(1, 16, 16)
    DetectionLoss()(DetectorOutput(logits, region, boundary), torch.tensor([1]), maps, maps).total.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (region, boundary, logits))
