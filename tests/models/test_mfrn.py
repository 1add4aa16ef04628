"""MFRN and the baseline: shapes for every switch, fixed/constrained filters, streams."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("timm")

from mfrn.models import MODELS, DetectorOutput, ModelConfig, build_model, fake_probability  # noqa: E402
from mfrn.models.mfrn import MFRN  # noqa: E402
from mfrn.models.streams import BayarConv2d, NoiseStream, SobelMagnitude, SRMFilter  # noqa: E402

SWITCHES = ("use_noise_stream", "use_edge_stream", "use_attention", "use_decoder", "multi_scale")


def tiny_cfg(**overrides) -> ModelConfig:
    """test_efficientnet with narrow MFRN parts: fast enough for every switch combination."""
    values = dict(
        backbone="test_efficientnet", pretrained=False, input_size=64, noise_channels=(8, 8, 16, 16),
        fused_channels=(16, 16, 16, 32), edge_channels=8, decoder_channels=16, attention_heads=4,
    )
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("flags", list(itertools.product([True, False], repeat=len(SWITCHES))))
def test_output_shapes_for_every_switch_combination(images, flags):
    cfg = tiny_cfg(**dict(zip(SWITCHES, flags)))
    model = build_model(cfg)
    output = model(images)
    assert isinstance(output, DetectorOutput)
    assert output.logits.shape == (2, 2)
    if cfg.use_decoder:
        assert output.region_logits.shape == (2, 1, 16, 16)
        assert output.boundary_logits.shape == (2, 1, 16, 16)
    else:
        assert output.region_logits is None and output.boundary_logits is None
    assert (model.noise is not None) == cfg.use_noise_stream
    assert (model.edge is not None) == cfg.use_edge_stream
    assert (model.attention is not None) == cfg.use_attention
    assert len(model.fusion) == (4 if cfg.multi_scale else 1)


def test_odd_input_size_gives_quarter_resolution_maps():
    output = build_model(tiny_cfg()).eval()(torch.rand(1, 3, 70, 66))
    assert output.region_logits.shape == (1, 1, 18, 17)


def test_resnet_backbone_and_baseline_share_the_output_type(images):
    mfrn = build_model(tiny_cfg(backbone="test_resnet"))
    assert mfrn(images).region_logits.shape == (2, 1, 16, 16)
    baseline = build_model(tiny_cfg(name="baseline"))
    output = baseline(images)
    assert output.logits.shape == (2, 2)
    assert output.region_logits is None and output.boundary_logits is None
    baseline.project_constraints()  # a no-op the training loop may call on any detector


def test_fake_probability_is_softmax_column_one():
    logits = torch.tensor([[0.0, 0.0], [-2.0, 3.0], [5.0, -5.0]])
    probability = fake_probability(DetectorOutput(logits=logits))
    assert torch.allclose(probability, torch.softmax(logits, dim=1)[:, 1])
    assert probability[0] == pytest.approx(0.5) and probability[1] > 0.99 and probability[2] < 0.01


def test_registry_knows_both_detectors_and_names_unknown_ones():
    assert {"mfrn", "baseline"} <= set(MODELS.names())
    with pytest.raises(KeyError, match="unknown detector 'nope'"):
        build_model(tiny_cfg(name="nope"))


def test_channel_tuples_must_match_the_levels():
    with pytest.raises(ValueError, match="noise_channels"):
        build_model(tiny_cfg(noise_channels=(8, 16)))


@pytest.mark.parametrize("attention", ["se", "eca", "none"])
def test_channel_attention_variants(images, attention):
    assert build_model(tiny_cfg(channel_attention=attention))(images).logits.shape == (2, 2)


def _training_step(model: MFRN, images: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    output = model(images)
    loss = F.cross_entropy(output.logits, torch.tensor([0, 1]))
    loss = loss + output.region_logits.square().mean() + output.boundary_logits.square().mean()
    loss.backward()
    optimizer.step()


def test_srm_kernels_are_fixed_and_unchanged_by_an_optimizer_step(images):
    model = build_model(tiny_cfg())
    srm = model.noise.srm
    before = srm.weight.clone()
    assert all(p is not srm.weight for p in model.parameters())
    _training_step(model, images)
    assert torch.equal(srm.weight, before)
    # high-pass: a flat image gives no residual away from the border; outputs lie in [-1, 1]
    flat = SRMFilter()(torch.full((1, 3, 16, 16), 0.4))
    assert flat[..., 2:-2, 2:-2].abs().max() < 1e-4
    noisy = SRMFilter()(torch.rand(1, 3, 16, 16))
    assert noisy.abs().max() <= 1.0 + 1e-6 and (noisy.abs() == 1.0).any()


def _assert_bayar_constraint(weight: torch.Tensor) -> None:
    centre = weight.shape[-1] // 2
    assert torch.allclose(weight[:, :, centre, centre], torch.full_like(weight[:, :, 0, 0], -1.0))
    others = weight.sum(dim=(2, 3)) - weight[:, :, centre, centre]
    assert torch.allclose(others, torch.ones_like(others), atol=1e-5)


def test_bayar_constraint_holds_after_a_step_and_projection(images):
    model = build_model(tiny_cfg())
    bayar = model.noise.bayar
    _assert_bayar_constraint(bayar.weight.detach())
    before = bayar.weight.detach().clone()
    _training_step(model, images)
    assert not torch.equal(bayar.weight.detach(), before), "the Bayar filter did not learn"
    model.project_constraints()
    _assert_bayar_constraint(bayar.weight.detach())
    standalone = BayarConv2d(3, 4, 3)
    with torch.no_grad():
        standalone.weight.normal_()
    standalone.project_constraints()
    _assert_bayar_constraint(standalone.weight.detach())


def test_sobel_magnitude_matches_the_convolution_definition():
    features = torch.randn(2, 3, 9, 11)
    kernel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    weight = torch.stack([kernel_x, kernel_x.t()])[:, None].repeat(3, 1, 1, 1)  # (6, 1, 3, 3)
    grads = F.conv2d(features, weight, padding=1, groups=3).reshape(2, 3, 2, 9, 11)
    expected = torch.sqrt(grads.square().sum(dim=2) + 1e-6)
    assert torch.allclose(SobelMagnitude()(features), expected, atol=1e-5)


def test_noise_stream_strides_and_gradients():
    stream = NoiseStream((4, 8, 16, 32), (8, 12, 16, 20))
    outputs = stream(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outputs] == [(8, 16, 16), (12, 8, 8), (16, 4, 4), (20, 2, 2)]
    sum(o.mean() for o in outputs).backward()
    assert stream.bayar.weight.grad is not None and stream.bayar.weight.grad.abs().sum() > 0


def test_every_stream_receives_gradient_from_the_loss(images):
    model = build_model(tiny_cfg())
    output = model(images)
    (output.logits.sum() + output.region_logits.mean() + output.boundary_logits.mean()).backward()
    for part in (model.backbone, model.noise, model.edge, model.attention, model.decoder, model.classifier):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), type(part).__name__


def test_normalisation_inside_the_model_can_be_switched_off(images):
    torch.manual_seed(0)
    normalised = build_model(tiny_cfg()).eval()
    torch.manual_seed(0)
    raw = build_model(tiny_cfg(normalize_input=False)).eval()
    raw.load_state_dict(normalised.state_dict())
    with torch.no_grad():
        assert not torch.allclose(normalised(images).logits, raw(images).logits)
        mean = torch.tensor(normalised.mean).view(1, 3, 1, 1)
        std = torch.tensor(normalised.std).view(1, 3, 1, 1)
        assert torch.allclose(normalised.backbone(normalised.normalize(images))[0],
                              raw.backbone((images - mean) / std)[0], atol=1e-5)


def test_bf16_autocast_keeps_noise_residuals_in_float32(images):
    stream = NoiseStream((4, 8, 16, 32), (8, 12, 16, 20))
    reference = stream.residuals(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        residuals = stream.residuals(images)
        output = build_model(tiny_cfg())(images)
    assert residuals.dtype == torch.float32 and torch.allclose(residuals, reference, atol=1e-5)
    assert output.logits.shape == (2, 2) and torch.isfinite(output.region_logits).all()


def test_noise_residuals_are_never_below_float32_and_keep_float64(images):
    """bf16 input gives float32 residuals; a float64 model (bn_precision's reference) stays in float64."""
    stream = NoiseStream((4, 8, 16, 32), (8, 12, 16, 20))
    assert stream.residuals(images.bfloat16()).dtype == torch.float32
    reference = stream.residuals(images)
    residuals = stream.double().residuals(images.double())
    assert residuals.dtype == torch.float64
    assert torch.allclose(residuals.float(), reference, atol=1e-4)
