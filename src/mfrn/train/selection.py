"""Which epoch's weights are the trained model: the checkpoint rule (method.md section 6).

* ``latest_of_top_k`` (SBI, the default): keep the ``k`` (5) best epochs by validation AUC and take
  the latest of them. An epoch joins the kept set when fewer than ``k`` are kept or its AUC is at
  least the lowest kept one (a tie lets the newer epoch in and the oldest of the lowest out). The
  latest kept epoch is always the last one that joined, which is after the learning-rate decay when
  the late epochs are as good as the early ones.
* ``best``: the epoch with the highest validation AUC; ties keep the earlier epoch.

Validation AUC is measured on the training dataset's own val split (real val faces and their
synthetic fakes), never on a test set. ``select_checkpoint`` replays a recorded history, so the
choice can be recomputed from any checkpoint's ``history`` (and after a resume).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

CHECKPOINT_RULES = ("latest_of_top_k", "best")
SELECTED_FILE = "selected.pt"  # the checkpoint to evaluate, whatever the rule
BEST_FILE = "best.pt"  # the highest val AUC, kept under every rule


@dataclass
class Selection:
    """The outcome of a checkpoint rule over a history of validated epochs."""

    rule: str
    top_k: int
    epoch: int | None = None  # the chosen epoch (1-based), None before any finite val AUC
    val_auc: float | None = None
    kept: list[tuple[int, float]] = field(default_factory=list)  # (epoch, val AUC), best first

    def to_dict(self) -> dict:
        return {**asdict(self), "kept": [list(item) for item in self.kept], "text": rule_text(self.rule, self.top_k)}

    def describe(self) -> str:
        if self.epoch is None:
            return f"no epoch selected yet ({rule_text(self.rule, self.top_k)})"
        kept = ", ".join(f"{epoch}: {auc:.4f}" for epoch, auc in self.kept)
        extra = f"; kept (epoch: val AUC) {kept}" if self.rule == "latest_of_top_k" else ""
        return f"epoch {self.epoch} (val AUC {self.val_auc:.4f}){extra}"


def rule_text(rule: str, top_k: int = 5) -> str:
    """One line that says what the rule keeps (printed at the start of training, stored in checkpoints)."""
    where = "on the training data's val split (real val faces + their synthetic fakes)"
    if rule == "latest_of_top_k":
        return (f"{SELECTED_FILE} = the latest of the {top_k} epochs with the highest val AUC {where} (SBI's rule; "
                f"a tie lets the newer epoch in); {BEST_FILE} = the highest val AUC")
    if rule == "best":
        return f"{SELECTED_FILE} = {BEST_FILE} = the epoch with the highest val AUC {where}; ties keep the earlier epoch"
    raise ValueError(f"unknown checkpoint rule {rule!r}; known: {', '.join(CHECKPOINT_RULES)}")


def select_checkpoint(history: list[dict], rule: str = "latest_of_top_k", top_k: int = 5) -> Selection:
    """Replay ``history`` (entries with ``epoch`` and, when validated, ``val_auc``) under ``rule``."""
    rule_text(rule, top_k)  # validates the rule
    if top_k < 1:
        raise ValueError(f"checkpoint top_k must be >= 1, got {top_k}")
    selection = Selection(rule=rule, top_k=top_k)
    kept: list[tuple[int, float]] = []  # in the order they joined
    for entry in history:
        auc = entry.get("val_auc")
        if auc is None or math.isnan(float(auc)):
            continue
        epoch, auc = int(entry["epoch"]), float(auc)
        if rule == "best":
            if selection.val_auc is None or auc > selection.val_auc:
                selection.epoch, selection.val_auc = epoch, auc
                kept = [(epoch, auc)]
            continue
        if len(kept) >= top_k:
            lowest = min(a for _, a in kept)
            if auc < lowest:
                continue
            kept.remove(next(item for item in kept if item[1] == lowest))  # the oldest of the lowest
        kept.append((epoch, auc))
        selection.epoch, selection.val_auc = epoch, auc
    selection.kept = sorted(kept, key=lambda item: (-item[1], item[0]))
    return selection
