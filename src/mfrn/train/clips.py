"""What ``mfrn train`` does differently for the temporal head (``model.temporal`` not "off").

The loop itself is the frame loop: batches of clips (2B, T, 3, S, S) go through the same SAM step,
validation and checkpoints; this module builds the clip datasets and loads a frozen frame detector.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from mfrn.config import Config
from mfrn.data.manifest import Manifest
from mfrn.synth.clip_dataset import ClipPairDataset, select_clips


def clip_datasets(config: Config, manifest: Manifest, prepared: Path,
                  device: str) -> tuple[ClipPairDataset, ClipPairDataset]:
    """Training and validation clip pairs (validation fixed across epochs, as for frames)."""
    data = config.data
    train_clips = select_clips(manifest, "train", config.clip, data.val_fraction, data.faces_per_frame)
    val_clips = select_clips(manifest, "val", config.clip, data.val_fraction, data.faces_per_frame)
    for split, clips in (("train", train_clips), ("val", val_clips)):
        if not clips:
            raise ValueError(
                f"{prepared}: no {split} clips of {config.clip.length} consecutive frames of one face: prepare the "
                f"videos with clips (mfrn prepare --clip-length {config.clip.length} --clips-per-video K) or lower "
                "clip.length")
    train_set = ClipPairDataset.from_config(train_clips, config.sbi, config.rbi, prepared, config.train.seed,
                                            device=device, clip_config=config.clip)
    val_set = ClipPairDataset.from_config(val_clips, config.sbi, config.rbi, prepared, config.train.seed + 1_000_003,
                                          fixed_epoch=0, device=device, augment=data.val_augmentation,
                                          clip_config=config.clip)
    return train_set, val_set


def load_frame_checkpoint(model: nn.Module, path: Path | str) -> None:
    """The frame detector's weights of ``model`` (a ``TemporalDetector``) from an mfrn checkpoint of a frame
    detector (its ``model`` entry), strictly: the frame settings of both configs must agree."""
    from mfrn.train.checkpoint import CheckpointError, load_checkpoint, load_model_state

    state = load_checkpoint(Path(path))
    if any(key.startswith("head.") for key in state["model"]):
        raise CheckpointError(f"{path}: holds a temporal model; model.temporal_frame_checkpoint takes a frame "
                              "detector's checkpoint")
    load_model_state(model.frame, state["model"], path)
