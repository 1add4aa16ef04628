"""The training loop on real prepared faces: loss falls, AUC rises, resume is exact, DDP agrees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mfrn.config import load_config
from mfrn.train.checkpoint import CheckpointError, load_checkpoint
from mfrn.train.loop import train
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow


def tiny(prepared: Path, out: Path, *extra: str) -> list[str]:
    """Overrides for a tiny CPU run: timm's test_efficientnet at 64 px, SBI fakes, no workers."""
    return [
        f"data.prepared={prepared}", "data.batch_size=4", "data.num_workers=0", "data.frames_per_video=0",
        *TINY_MODEL,
        "rbi.probability=0.0", "rbi.source=off", "train.device=cpu", "train.tensorboard=false",
        "train.optimizer=adamw", "train.lr=0.002", f"train.out_dir={out}", *extra,
    ]


# SBI's own fakes need thousands of steps; for a test of the loop the source transform always hits
# the pasted face with a strong colour shift, which a tiny network learns within a minute
EASY_FAKES = ("sbi.p_transform_source=1.0", "sbi.source_transform.p_rgb_shift=1.0",
              "sbi.source_transform.rgb_shift_limit=40", "sbi.blend_ratios=[1.0]", "sbi.post_transform_enabled=false")


def test_tiny_run_learns_and_selects_on_validation(prepared_faces, tmp_path):
    # every face of the group photos, not only the largest (SBI's default): more faces for a test that must learn
    config = load_config(None, tiny(prepared_faces, tmp_path / "run", *EASY_FAKES, "train.epochs=40", "data.batch_size=8",
                                    "data.faces_per_frame=all",
                                    "train.sam=false", "train.lr=0.001", "train.val_every_epochs=10"))
    result = train(config, progress=False)
    losses = [entry["train_loss"] for entry in result.history]
    assert losses[-1] < losses[0], losses
    assert result.best_val_auc is not None and result.best_val_auc > 0.6, result.history
    best = load_checkpoint(result.best_checkpoint)
    assert best["config"]["model"]["backbone"] == "test_efficientnet"
    assert best["preprocessing"]["input_size"] == 64 and "prepare" in best["preprocessing"]
    assert "val split" in best["selection_rule"]
    # best.pt is the epoch with the best val AUC
    assert max(e["val_auc"] for e in result.history if "val_auc" in e) == pytest.approx(result.best_val_auc)
    # selected.pt follows SBI's rule: four validations all stay among the five best, so the latest (40) is chosen
    selected = load_checkpoint(result.selected_checkpoint)
    assert result.selected_checkpoint.name == "selected.pt" and result.selection.epoch == 40
    assert selected["epoch"] == 40 and selected["selection"]["epoch"] == 40
    assert selected["selection"]["rule"] == "latest_of_top_k" and "latest of the 5" in selected["selection_rule"]
    assert [e["selected"] for e in result.history if "val_auc" in e] == [True] * 4
    # the scheduler stepped: SBI's schedule ends at lr 0
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_resume_continues_bit_for_bit(prepared_faces, tmp_path):
    base = tiny(prepared_faces, tmp_path / "a", "train.epochs=2")
    full = train(load_config(None, base), progress=False)
    # the same run, killed after 3 steps (mid-epoch), then resumed
    stopped = train(load_config(None, tiny(prepared_faces, tmp_path / "b", "train.epochs=2", "train.max_steps=3")),
                    progress=False)
    assert stopped.stopped_early and stopped.global_step == 3
    resumed = train(load_config(None, tiny(prepared_faces, tmp_path / "b", "train.epochs=2")), resume="auto",
                    progress=False)
    assert resumed.global_step == full.global_step
    assert resumed.weights_digest == full.weights_digest


def test_resume_without_last_checkpoint_is_an_error_and_overwrite_replaces_the_earlier_run(prepared_faces, tmp_path):
    """`--resume` with nothing to resume once trained from scratch and replaced best.pt after epoch 1."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"the 25-epoch model")
    config = load_config(None, tiny(prepared_faces, out, "train.epochs=1", "train.max_steps=1"))
    with pytest.raises(ValueError, match="nothing to resume"):
        train(config, resume="auto", progress=False)
    with pytest.raises(ValueError, match="already holds the checkpoints"):
        train(config, progress=False)
    assert (out / "best.pt").read_bytes() == b"the 25-epoch model"
    result = train(config, progress=False, overwrite=True)
    assert result.global_step == 1 and not (out / "best.pt").exists()  # stopped before validation: no stale best.pt
    assert load_checkpoint(result.last_checkpoint)["global_step"] == 1


def test_truncated_or_foreign_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "truncated.pt"
    good = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, good)
    bad.write_bytes(good.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not an mfrn checkpoint"):
        load_checkpoint(good)


def test_ddp_global_batch_equals_the_one_process_run(prepared_faces, tmp_path, monkeypatch):
    """data.batch_size is the global batch: 2 gloo processes take 2 + 2 faces per step, and step k of the
    2-process run sees exactly the faces of step k of the 1-process run; the ranks hold the same weights."""
    import json

    import mfrn.train.loop as loop
    from tests.train.ddp_worker import record_batches

    overrides = tiny(prepared_faces, tmp_path / "ddp", "train.epochs=1", "train.max_steps=2", "data.batch_size=4")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               str(Path(__file__).parent / "ddp_worker.py"), str(tmp_path), *overrides]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["initial"] == ranks[1]["initial"]  # the same initial weights
    assert ranks[0]["final"] == ranks[1]["final"] != ranks[0]["initial"]  # the same, changed, after the steps

    monkeypatch.setattr(loop, "collate_pairs", loop.collate_pairs)  # undone after the test
    single_batches: list = []
    record_batches(single_batches)
    single = train(load_config(None, tiny(prepared_faces, tmp_path / "one", "train.epochs=1", "train.max_steps=2",
                                          "data.batch_size=4")), progress=False)
    assert single.batch_per_process == 4 and [r["batch_per_process"] for r in ranks] == [2, 2]
    assert single.steps_per_epoch > 2 and [r["steps_per_epoch"] for r in ranks] == [single.steps_per_epoch] * 2
    assert single.global_step == ranks[0]["global_step"] == ranks[1]["global_step"] == 2
    assert len(single_batches) == len(ranks[0]["batches"]) == 2
    for step, faces in enumerate(single_batches):
        assert sorted(ranks[0]["batches"][step] + ranks[1]["batches"][step]) == sorted(faces)


def test_global_batch_must_split_evenly_across_processes():
    from mfrn.train.loop import per_process_batch

    assert per_process_batch(16, 1) == 16 and per_process_batch(16, 4) == 4
    with pytest.raises(ValueError, match="global batch.*multiple of 4"):
        per_process_batch(18, 4)


def test_sam_updates_batchnorm_statistics_in_both_passes_as_sbi():
    """SBI runs SAM as two ordinary forward passes, so BatchNorm statistics move twice per step;
    train.sam_bn_second_pass=freeze keeps the second pass (at w + e) from moving them."""
    import copy

    from mfrn.models import build_model
    from mfrn.train.loop import _build_optimizer, _train_step
    from mfrn.train.losses import DetectionLoss

    def running_means(model):
        return torch.cat([m.running_mean.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)])

    torch.manual_seed(0)
    base = build_model(load_config(None, TINY_MODEL).model).train()
    images = torch.rand(4, 3, 64, 64)
    targets = (torch.tensor([0, 1, 0, 1]), torch.rand(4, 64, 64), torch.rand(4, 64, 64))
    once = copy.deepcopy(base)
    torch.manual_seed(1)
    with torch.no_grad():
        once(images)  # one ordinary forward pass at w
    after = {}
    for mode in ("update", "freeze"):
        config = load_config(None, TINY_MODEL + ["train.sam=true", f"train.sam_bn_second_pass={mode}"])
        model = copy.deepcopy(base)
        torch.manual_seed(1)
        _train_step(model, model, DetectionLoss(config.loss), _build_optimizer(config, model.parameters()),
                    torch.amp.GradScaler("cpu", enabled=False), images, targets, config, torch.device("cpu"))
        after[mode] = running_means(model)
    assert load_config(None).train.sam_bn_second_pass == "update"
    torch.testing.assert_close(after["freeze"], running_means(once))  # pass 1 only
    assert not torch.allclose(after["update"], running_means(once), atol=1e-6)  # pass 2 moved them again


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_with_sam_runs_and_steps(prepared_faces, tmp_path, amp):
    """SAM's two passes under autocast (bf16 without a scaler; fp16 with a GradScaler)."""
    if amp == "fp16" and not torch.cuda.is_available():
        pytest.skip("fp16 autocast with a GradScaler is a GPU setting")
    config = load_config(None, tiny(prepared_faces, tmp_path / amp, "train.epochs=1", "train.max_steps=2",
                                    f"train.amp={amp}", "train.sam=true"))
    result = train(config, progress=False)
    assert result.global_step == 2 and result.stopped_early
    state = load_checkpoint(result.last_checkpoint)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_torchrun_runs_the_train_command_on_cpu(prepared_faces, tmp_path):
    """`torchrun --nproc_per_node 2 -m mfrn.cli train ...`, as the README says; rank 0 reports once."""
    sets = [arg for item in tiny(prepared_faces, tmp_path / "cli", "train.epochs=1", "data.batch_size=2")
            for arg in ("--set", item)]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               "-m", "mfrn.cli", "train", "--no-progress", *sets]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("last checkpoint:") == 1 and "2 process(es)" in result.stdout
    assert (tmp_path / "cli" / "last.pt").is_file()
