"""Training settings (method.md section 6: SAM over SGD, lr 1e-3, constant then linear decay)."""

from __future__ import annotations

from dataclasses import dataclass

from mfrn.train.selection import CHECKPOINT_RULES


@dataclass
class TrainConfig:
    epochs: int = 100
    optimizer: str = "sgd"  # "sgd" | "adam" | "adamw"
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0
    sam: bool = True
    sam_rho: float = 0.05
    sam_adaptive: bool = False
    # BatchNorm running statistics in SAM's second pass (at w + e): "update" as SBI's code does (it
    # runs two ordinary forward passes), or "freeze" so that each step updates them once
    sam_bn_second_pass: str = "update"
    schedule: str = "sbi"  # "sbi" (constant for 75 %, then linear to 0) | "cosine" | "constant"
    warmup_steps: int = 0
    amp: str = "off"  # "off" | "bf16" | "fp16" (SBI trains in fp32)
    channels_last: bool = False
    # with channels_last on the CPU: batch norm's training statistics by mfrn.models.batchnorm, as precise as in
    # the plain layout (torch's own kernel is ~100x less precise there; benchmarks/bn_precision.py)
    precise_batch_norm: bool = True
    grad_clip: float = 0.0  # 0 = off
    # moving average of the weights (mfrn.train.ema), e.g. 0.99; validated, selected, calibrated and saved
    # as the model's weights when on. 0 = off (SBI's and the paper's recipe)
    ema_decay: float = 0.0
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    seed: int = 0
    out_dir: str = "runs/mfrn"
    save_every_steps: int = 0  # also save last.pt every N steps (0 = at epoch ends only)
    val_every_epochs: int = 1
    # which epoch becomes selected.pt (mfrn.train.selection): "latest_of_top_k" = SBI's rule, the latest
    # of the checkpoint_top_k best epochs by val AUC; "best" = the highest val AUC. best.pt is kept either way.
    checkpoint_rule: str = "latest_of_top_k"
    checkpoint_top_k: int = 5
    # under torchrun on GPUs: BatchNorm statistics over the global batch, as one GPU sees it (no effect on CPU)
    sync_batchnorm: bool = True
    log_every_steps: int = 10
    max_steps: int = 0  # stop after this many steps in total (0 = run all epochs)
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"train.optimizer must be sgd, adam or adamw, got {self.optimizer!r}")
        if self.amp not in ("off", "bf16", "fp16"):
            raise ValueError(f"train.amp must be off, bf16 or fp16, got {self.amp!r}")
        if self.epochs < 1:
            raise ValueError("train.epochs must be >= 1")
        if self.sam_bn_second_pass not in ("update", "freeze"):
            raise ValueError(f"train.sam_bn_second_pass must be update or freeze, got {self.sam_bn_second_pass!r}")
        if self.checkpoint_rule not in CHECKPOINT_RULES:
            raise ValueError(f"train.checkpoint_rule must be one of {', '.join(CHECKPOINT_RULES)}, got {self.checkpoint_rule!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if self.checkpoint_top_k < 1:
            raise ValueError("train.checkpoint_top_k must be >= 1")
