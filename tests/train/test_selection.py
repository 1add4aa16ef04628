"""The checkpoint rule on a recorded history: SBI's latest of the five best epochs, or the best one."""

from __future__ import annotations

import math

import pytest

from mfrn.train.selection import select_checkpoint

# a history as the training loop records it: validated epochs carry val_auc, others do not
AUCS = [0.90, 0.95, 0.97, 0.96, 0.97, 0.93, 0.96, 0.94, 0.965, 0.955]
HISTORY = [{"epoch": e, "train_loss": 0.1, "val_auc": auc} for e, auc in enumerate(AUCS, start=1)]


def test_sbi_rule_takes_the_latest_of_the_five_best_epochs():
    selection = select_checkpoint(HISTORY, "latest_of_top_k", 5)
    # epochs 6 (0.93 > 0.90), 7 and 9 each entered the five best when evaluated; 8 and 10 did not
    assert selection.epoch == 9 and selection.val_auc == pytest.approx(0.965)
    assert selection.kept == [(3, 0.97), (5, 0.97), (9, 0.965), (4, 0.96), (7, 0.96)]
    # the first best epoch would have been 3
    assert select_checkpoint(HISTORY, "best").epoch == 3
    # a tie with the lowest kept AUC lets the newer epoch in, and the oldest of the lowest out
    tie = select_checkpoint(HISTORY + [{"epoch": 11, "val_auc": 0.96}], "latest_of_top_k", 5)
    assert tie.epoch == 11 and (4, 0.96) not in tie.kept and (7, 0.96) in tie.kept
    assert "latest of the 5" in selection.to_dict()["text"] and selection.to_dict()["epoch"] == 9


def test_rule_replays_every_prefix_as_the_loop_does():
    """At each validated epoch the loop saves selected.pt when the rule picks that epoch."""
    picks = [select_checkpoint(HISTORY[:n], "latest_of_top_k", 5).epoch for n in range(1, len(HISTORY) + 1)]
    assert picks == [1, 2, 3, 4, 5, 6, 7, 7, 9, 9]
    saved_at = [e for e, p in zip(range(1, 11), picks) if p == e]
    assert saved_at[-1] == select_checkpoint(HISTORY, "latest_of_top_k", 5).epoch


def test_unvalidated_and_nan_epochs_are_ignored_and_k_is_a_switch():
    history = [{"epoch": 1, "val_auc": 0.8}, {"epoch": 2}, {"epoch": 3, "val_auc": math.nan}, {"epoch": 4, "val_auc": 0.7}]
    assert select_checkpoint(history, "latest_of_top_k", 5).epoch == 4
    assert select_checkpoint(history, "latest_of_top_k", 1).epoch == 1
    assert select_checkpoint(history, "best").epoch == 1
    assert select_checkpoint([{"epoch": 1}], "latest_of_top_k").epoch is None
    with pytest.raises(ValueError, match="unknown checkpoint rule"):
        select_checkpoint(history, "first")


def test_config_switch_is_validated():
    from mfrn.config import ConfigError, load_config

    assert load_config(None).train.checkpoint_rule == "latest_of_top_k"
    assert load_config(None, ["train.checkpoint_rule=best"]).train.checkpoint_rule == "best"
    with pytest.raises(ConfigError, match="checkpoint_rule"):
        load_config(None, ["train.checkpoint_rule=newest"])
