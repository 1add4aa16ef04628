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
    config = load_config(None, tiny(prepared_faces, tmp_path / "run", *EASY_FAKES, "train.epochs=40", "data.batch_size=8",
                                    "train.sam=false", "train.lr=0.001", "train.val_every_epochs=10"))
    result = train(config, progress=False)
    losses = [entry["train_loss"] for entry in result.history]
    assert losses[-1] < losses[0], losses
    assert result.best_val_auc is not None and result.best_val_auc > 0.6, result.history
    best = load_checkpoint(result.best_checkpoint)
    assert best["config"]["model"]["backbone"] == "test_efficientnet"
    assert best["preprocessing"]["input_size"] == 64 and "prepare" in best["preprocessing"]
    assert "val split" in best["selection_rule"]
    # the checkpoint that was kept is the epoch with the best val AUC
    assert max(e["val_auc"] for e in result.history if "val_auc" in e) == pytest.approx(result.best_val_auc)
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


def test_truncated_or_foreign_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "truncated.pt"
    good = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, good)
    bad.write_bytes(good.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not an mfrn checkpoint"):
        load_checkpoint(good)


def test_ddp_two_cpu_processes_hold_the_same_weights(prepared_faces, tmp_path):
    overrides = tiny(prepared_faces, tmp_path / "ddp", "train.epochs=1", "train.max_steps=1", "data.batch_size=2")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               str(Path(__file__).parent / "ddp_worker.py"), str(tmp_path), *overrides]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    digests = [(tmp_path / f"digest.rank{r}.txt").read_text().split() for r in (0, 1)]
    assert digests[0][0] == digests[1][0]  # the same initial weights
    assert digests[0][1] == digests[1][1]  # and the same weights after a step
    assert digests[0][1] != digests[0][0]  # which did change them
    assert digests[0][2] == digests[1][2] == "1"


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
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519",
               "-m", "mfrn.cli", "train", "--no-progress", *sets]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("last checkpoint:") == 1 and "2 process(es)" in result.stdout
    assert (tmp_path / "cli" / "last.pt").is_file()
