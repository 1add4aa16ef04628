"""train.ema_decay: the moving average of the weights, its warm-up, and a run that saves and resumes it."""

from __future__ import annotations

import pytest
import torch

from mfrn.config import load_config
from mfrn.train.checkpoint import load_checkpoint
from mfrn.train.ema import WeightAverage
from mfrn.train.loop import train, weights_digest
from tests.train.test_loop import tiny


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def test_average_follows_the_formula_with_its_warm_up():
    net = _net()
    average = WeightAverage(net, decay=0.99)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net.train()(torch.randn(8, 3))  # BatchNorm's running statistics and its integer batch counter move
    now = net.state_dict()
    assert average.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0): the first update nearly copies
    average.update(net)
    for name, value in average.module.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.1 * start[name] + 0.9 * now[name], atol=1e-6), name
        else:
            assert torch.equal(value, now[name]), name  # num_batches_tracked is copied, not averaged
    assert average.updates == 1 and average.current_decay() == pytest.approx(2 / 11)
    average.updates = 10_000
    assert average.current_decay() == 0.99  # the decay caps the warm-up
    assert not any(p.requires_grad for p in average.module.parameters())
    with pytest.raises(ValueError, match="train.ema_decay"):
        WeightAverage(net, decay=1.0)
    with pytest.raises(ValueError, match="train.ema_decay"):
        load_config(None, ["train.ema_decay=1.5"])


@pytest.mark.slow
def test_a_run_saves_the_average_as_its_model_and_resumes_bit_for_bit(prepared_faces, tmp_path):
    from mfrn.models import build_model

    def config(name: str, *extra: str):
        return load_config(None, tiny(prepared_faces, tmp_path / name, "train.epochs=2", "train.ema_decay=0.9", *extra))

    full = train(config("full"), progress=False)
    state = load_checkpoint(full.last_checkpoint)
    assert state["ema_updates"] == full.global_step and state["ema_decay"] == 0.9
    model = build_model(config("full").model)
    model.load_state_dict(state["train_model"])
    assert weights_digest(model) == full.weights_digest  # train_model: the raw weights the run ended with
    averaged = state["model"]  # what eval, detect and calibration load
    assert any(not torch.equal(averaged[k], state["train_model"][k]) for k in averaged if averaged[k].is_floating_point())
    assert "calibration" in load_checkpoint(full.selected_checkpoint)  # calibrated on the average's weights

    stopped = train(config("resumed", "train.max_steps=3"), progress=False)
    assert stopped.stopped_early
    resumed = train(config("resumed"), resume="auto", progress=False)
    assert resumed.weights_digest == full.weights_digest
    again = load_checkpoint(resumed.last_checkpoint)
    assert all(torch.equal(again["model"][k], averaged[k]) for k in averaged)  # the average resumed exactly too
    assert [e["val_auc"] for e in resumed.history] == [e["val_auc"] for e in full.history]

    with pytest.raises(ValueError, match="trained with train.ema_decay"):
        train(load_config(None, tiny(prepared_faces, tmp_path / "resumed", "train.epochs=2")), resume="auto",
              progress=False)
    plain = train(load_config(None, tiny(prepared_faces, tmp_path / "plain", "train.epochs=1")), progress=False)
    with pytest.raises(ValueError, match="without train.ema_decay"):
        train(load_config(None, tiny(prepared_faces, tmp_path / "plain", "train.epochs=2", "train.ema_decay=0.9")),
              resume="auto", progress=False)
    assert "train_model" not in load_checkpoint(plain.last_checkpoint)  # off: the checkpoints as before
