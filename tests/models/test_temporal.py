"""The temporal head: shapes for every switch, the frozen frame detector, the clip loss."""

from __future__ import annotations

import itertools

import pytest
import torch

pytest.importorskip("timm")

from mfrn.models import ClipOutput, ModelConfig, build_model, fake_probability  # noqa: E402
from mfrn.models.temporal import N_MAP_STATS, TemporalDetector, frame_statistics  # noqa: E402
from mfrn.train.losses import ClipLoss, DetectionLoss, LossConfig, build_criterion  # noqa: E402

T = 3


def tiny_temporal(**overrides) -> ModelConfig:
    values = dict(
        backbone="test_efficientnet", pretrained=False, input_size=32, noise_channels=(4, 4, 8, 8),
        fused_channels=(8, 8, 8, 16), edge_channels=4, decoder_channels=8, attention_heads=2,
        temporal="transformer", temporal_dim=16, temporal_heads=2, temporal_layers=1, temporal_max_length=8,
    )
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    return torch.rand(2, T, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name,temporal,map_stats,deltas,decoder",
                         [(n, t, m, d, dec) for n, t, m, d, dec in itertools.product(
                             ("mfrn", "baseline"), ("transformer", "tcn"), (True, False), (True, False), (True, False))
                          if n == "mfrn" or dec])
def test_shapes_for_every_switch(clips, name, temporal, map_stats, deltas, decoder):
    model = build_model(tiny_temporal(name=name, temporal=temporal, temporal_map_stats=map_stats,
                                      temporal_deltas=deltas, use_decoder=decoder))
    assert isinstance(model, TemporalDetector)
    output = model(clips)
    assert isinstance(output, ClipOutput) and output.length == T
    assert output.logits.shape == (2, 2) and output.frame_logits.shape == (2, T, 2)
    assert output.frames.embedding.shape == (2 * T, model.frame.embedding_dim)
    if name == "mfrn" and decoder:
        assert output.frames.region_logits.shape == (2 * T, 1, 8, 8)
    assert fake_probability(output).shape == (2,)
    loss = ClipLoss()(output, torch.tensor([0, 1]), torch.rand(2, T, 32, 32), torch.rand(2, T, 32, 32))
    loss.total.backward()
    head_grads = [p.grad for p in model.head.parameters()]
    assert all(g is not None for g in head_grads)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.frame.parameters())  # end to end


def test_off_builds_the_frame_detector_and_its_embedding_is_what_the_classifier_reads():
    images = torch.rand(2, 3, 32, 32)
    for name in ("mfrn", "baseline"):
        model = build_model(tiny_temporal(name=name, temporal="off")).eval()
        assert not isinstance(model, TemporalDetector)
        output = model(images)
        assert output.embedding.shape == (2, model.embedding_dim)
        if name == "baseline":  # the split forward is timm's own forward
            torch.testing.assert_close(output.logits, model.net(model.normalize(images)))


def test_frozen_frame_detector_gets_no_gradient_and_stays_in_eval(clips):
    model = build_model(tiny_temporal(temporal="tcn", temporal_freeze_frame=True,
                                      temporal_frame_checkpoint="frame.pt"))
    model.train()
    assert model.training and not model.frame.training and model.head.training
    assert not any(p.requires_grad for p in model.frame.parameters())
    before = {k: v.clone() for k, v in model.frame.state_dict().items()}
    output = model(clips)
    assert not output.frame_loss and not output.frames.logits.requires_grad
    loss = ClipLoss()(output, torch.tensor([0, 1]), torch.rand(2, T, 32, 32), torch.rand(2, T, 32, 32))
    assert loss.region == 0 and loss.total.requires_grad
    loss.total.backward()
    for key, value in model.frame.state_dict().items():  # BatchNorm statistics untouched too
        torch.testing.assert_close(value, before[key])


def test_bad_inputs_and_configs(clips):
    model = build_model(tiny_temporal(temporal_max_length=2))
    with pytest.raises(ValueError, match="temporal_max_length"):
        model(clips)
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        model(clips[0])
    with pytest.raises(ValueError, match="model.temporal must be"):
        ModelConfig(temporal="lstm")
    with pytest.raises(ValueError, match="temporal_frame_checkpoint"):
        tiny_temporal(temporal_freeze_frame=True)
    with pytest.raises(ValueError, match="odd"):
        tiny_temporal(temporal="tcn", temporal_kernel=2)
    with pytest.raises(ValueError, match="divisible"):
        tiny_temporal(temporal_dim=15)
    with pytest.raises(TypeError, match="ClipOutput"):
        ClipLoss()(build_model(tiny_temporal(temporal="off"))(clips[0]), torch.tensor([0, 1, 1]))


def test_frame_statistics_and_clip_loss_weights(clips):
    model = build_model(tiny_temporal()).eval()
    output = model(clips)
    stats = frame_statistics(output.frames)
    assert stats.shape == (2 * T, N_MAP_STATS)
    margin = output.frames.logits[:, 1] - output.frames.logits[:, 0]
    torch.testing.assert_close(stats[:, 0], margin)
    assert ((stats[:, 1:] >= 0) & (stats[:, 1:] <= 1)).all()
    labels, region, boundary = torch.tensor([0, 1]), torch.rand(2, T, 32, 32), torch.rand(2, T, 32, 32)
    clip_only = ClipLoss(LossConfig(lambda_frame=0.0))(output, labels, region, boundary)
    both = ClipLoss()(output, labels, region, boundary)
    frame = DetectionLoss()(output.frames, labels.repeat_interleave(T), region.flatten(0, 1), boundary.flatten(0, 1))
    torch.testing.assert_close(clip_only.total, clip_only.cls)
    torch.testing.assert_close(both.total, both.cls + frame.total)
    assert isinstance(build_criterion(LossConfig(), True), ClipLoss)
    assert isinstance(build_criterion(LossConfig(), False), DetectionLoss)


def _flicker_clips(n: int, length: int, dim: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame features of n clips: a person vector plus a little noise; the fakes (label 1) also flicker
    along one direction, +a / -a from frame to frame, so their time average is the reals' (no frame-mean cue)."""
    person = torch.randn(n, 1, dim, generator=generator)
    features = person + 0.05 * torch.randn(n, length, dim, generator=generator)
    labels = torch.arange(n) % 2
    direction = torch.nn.functional.normalize(torch.randn(dim, generator=generator), dim=0)
    sign = torch.tensor([(-1.0) ** t for t in range(length)])
    features = features + 0.5 * labels[:, None, None] * sign[None, :, None] * direction
    return features, labels


@pytest.mark.parametrize("temporal", ["transformer", "tcn"])
def test_the_head_learns_a_flicker_that_the_frame_mean_cannot_see(temporal):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from mfrn.models.temporal import TemporalHead

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    dim, length = 16, 6
    head = TemporalHead(dim, tiny_temporal(temporal=temporal, temporal_dim=32, temporal_heads=4, temporal_dropout=0.0))
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(250):  # the transformer needs about 200 steps here, the TCN about 100
        features, labels = _flicker_clips(32, length, dim, generator)
        loss = torch.nn.functional.cross_entropy(head(features), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test, test_labels = _flicker_clips(200, length, dim, generator)
    with torch.no_grad():
        scores = torch.softmax(head.eval()(test), dim=1)[:, 1]
    assert roc_auc_score(test_labels, scores) > 0.95
    train_mean, train_labels = _flicker_clips(400, length, dim, generator)
    frame_mean = LogisticRegression(max_iter=1000).fit(train_mean.mean(1), train_labels)
    assert roc_auc_score(test_labels, frame_mean.predict_proba(test.mean(1))[:, 1]) < 0.65
