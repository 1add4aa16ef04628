"""Calibration at the end of training, and ``mfrn calibrate CKPT`` for older checkpoints (one code path).

The model scores the validation split exactly as training validated it (real val faces and their
synthetic fakes, made without training-time augmentation, the same seed), the rules of
:mod:`mfrn.calibration` choose the verdict threshold (and a temperature, and the region map's pixel
threshold), and the result is stored in the checkpoint with ``set_calibration``: ``detect``, ``eval``
and the ``Detector`` API use it from then on. Never a test split.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mfrn.calibration import CalibrationConfig, CalibrationReport, PixelHistogram, choose_calibration
from mfrn.checkpoint import load_checkpoint, load_model_state, set_calibration

VAL_SEED_OFFSET = 1_000_003  # the validation pairs' seed: train.seed + this (fixed fakes at every evaluation)


def validation_pairs(config, faces, prepared: Path, device: str = "cpu"):
    """The validation ``PairDataset`` training evaluates and calibration scores (the same fakes)."""
    from mfrn.synth.dataset import PairDataset

    return PairDataset.from_config(faces, config.sbi, config.rbi, prepared, config.train.seed + VAL_SEED_OFFSET,
                                   fixed_epoch=0, device=device, augment=config.data.val_augmentation)


@dataclass
class ValidationScores:
    """What the model made of the validation images: logits (N, 2), labels (1 = fake), each image's
    (video key, frame key), and the region maps of the fakes against their blended regions
    (``PixelHistogram``; None for a model without a region map)."""

    logits: np.ndarray
    labels: np.ndarray
    videos: list[tuple[str, str]]
    pixels: PixelHistogram | None


def _video_keys(key: str, length: int | None) -> list[tuple[str, str]]:
    """(video, frame) keys of one dataset item: a face's key is ``VIDEO#FRAME``, a clip's
    ``VIDEO#FIRST-LAST`` (its frames are told apart by position)."""
    video = key.rpartition("#")[0] or key
    if length is None:
        return [(video, key)]
    return [(video, f"{key}@{t}") for t in range(length)]


@torch.no_grad()
def collect_validation(model: torch.nn.Module, loader, device: torch.device, mask_level: float = 0.5,
                       channels_last: bool = False, flip: bool = False) -> ValidationScores:
    """Score the validation images (``ValidationScores``); with ``flip`` (the protocol's ``tta_flip``) each
    image's logits are the mean of its own and its mirror image's, as the ``Detector`` scores it.

    A temporal model's verdicts are its frame detector's (the frame mean; the clip score is shown beside
    them): its clips are scored frame by frame, each frame with its clip's label."""
    from mfrn.models.outputs import map_probability
    from mfrn.models.temporal import TemporalDetector

    scorer = model.frame if isinstance(model, TemporalDetector) else model
    was_training = model.training
    model.eval()
    logits, labels, videos = [], [], []
    pixels: PixelHistogram | None = None
    try:
        for batch in loader:
            images, batch_labels, regions = batch["image"], batch["label"], batch["region_map"]
            length = images.shape[1] if images.dim() == 5 else None
            if length is not None:  # (2B, T, 3, S, S) clips -> their frames
                images, regions = images.flatten(0, 1), regions.flatten(0, 1)
                batch_labels = batch_labels.repeat_interleave(length)
            # collate_pairs puts each item's real and fake side by side: two images per key
            videos += [pair for key in batch["key"] for _ in range(2) for pair in _video_keys(key, length)]
            images = images.to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            output = scorer(images)
            image_logits = output.logits.float()
            if flip:
                image_logits = (image_logits + scorer(torch.flip(images, dims=[3])).logits.float()) / 2
            logits.append(image_logits.cpu().numpy())
            labels.append(batch_labels.numpy())
            if output.region_logits is None:
                continue
            predicted = map_probability(output.region_logits, tuple(images.shape[-2:])).cpu().numpy()
            pixels = pixels or PixelHistogram()
            for values, target, label in zip(predicted, regions.numpy(), batch_labels.numpy()):
                peak = float(target.max())
                if label == 1 and peak > 0:
                    pixels.update(values, target >= mask_level * peak)
    finally:
        model.train(was_training)
    return ValidationScores(np.concatenate(logits), np.concatenate(labels), videos, pixels)


def calibrate_model(model, loader, device, config: CalibrationConfig, channels_last: bool = False,
                    protocol=None) -> CalibrationReport:
    """The calibration of ``model`` on ``loader``'s validation pairs; ``protocol`` (a ``ProtocolConfig``,
    the config's ``eval`` section) scores a validation video from its faces, and each face (flip TTA), as
    ``detect`` does."""
    from mfrn.inference.protocol import aggregate_video

    flip = protocol is not None and protocol.tta_flip
    scored = collect_validation(model, loader, device, config.pixel_mask_level, channels_last, flip)
    aggregate = None if protocol is None else (lambda frames: aggregate_video(frames, protocol).score)
    report = choose_calibration(config, scored.logits, scored.labels, scored.pixels, what="faces",
                                videos=scored.videos, aggregate=aggregate)
    report.calibration = replace(report.calibration, tta_flip=flip)
    return report


@dataclass
class CalibratedRun:
    """What the end-of-training calibration wrote: each checkpoint's report."""

    reports: dict[Path, CalibrationReport]

    def format(self) -> str:
        groups: dict[int, list[Path]] = {}
        for path, report in self.reports.items():
            groups.setdefault(id(report), []).append(path)
        lines = []
        for paths in groups.values():
            lines.append(", ".join(str(p) for p in paths) + ":")
            lines += ["  " + line for line in self.reports[paths[0]].format().splitlines()]
        return "\n".join(lines)


def calibrate_checkpoints(paths: list[Path], model: torch.nn.Module, loader, device, config: CalibrationConfig,
                          channels_last: bool = False, protocol=None) -> CalibratedRun:
    """Calibrate each checkpoint of ``paths`` on its own weights (loaded into ``model``) and store it.

    Checkpoints of the same epoch and step (selected.pt is often best.pt) are scored once."""
    done: dict[tuple, CalibrationReport] = {}
    reports = {}
    for path in paths:
        state = load_checkpoint(path, map_location=device)
        key = (state.get("epoch"), state.get("global_step"), state.get("step_in_epoch"))
        if key not in done:
            load_model_state(model, state["model"], path)
            done[key] = calibrate_model(model, loader, device, config, channels_last, protocol)
        del state
        set_calibration(path, done[key].calibration)
        reports[path] = done[key]
    return CalibratedRun(reports)


def calibrate_file(path: Path, overrides: list[str] | None = None, device: str | None = None,
                   batch_size: int | None = None) -> CalibrationReport:
    """``mfrn calibrate CKPT``: the checkpoint's own config (``overrides`` on top, e.g.
    ``data.prepared=...`` when the prepared folder moved, or ``calibration.rule=eer``), its
    validation split, the same rules as at the end of training; the result is stored in ``path``."""
    from torch.utils.data import DataLoader

    import copy

    from mfrn.config import config_from_dict
    from mfrn.config_schema import apply_overrides
    from mfrn.data.manifest import Manifest
    from mfrn.models import build_model
    from mfrn.synth.dataset import collate_pairs, split_faces
    from mfrn.weights import check_device

    path = Path(path)
    torch_device = check_device(device)
    state = load_checkpoint(path)
    config = config_from_dict(apply_overrides(copy.deepcopy(state["config"]), list(overrides or [])))
    if not config.data.prepared:
        raise ValueError(f"{path}: its config names no data.prepared folder: give --set data.prepared=FOLDER")
    prepared = Path(config.data.prepared)
    if not prepared.is_dir():
        raise FileNotFoundError(f"{path}: the validation faces' folder {prepared} (data.prepared) does not exist: "
                                "give --set data.prepared=FOLDER (the folder `mfrn prepare` wrote for training)")
    faces = split_faces(Manifest(prepared), "val", config.data.val_fraction, config.data.frames_per_video,
                        config.data.faces_per_frame)
    if not faces:
        raise ValueError(f"{prepared}: no real faces of the validation split to calibrate on")
    loader = DataLoader(validation_pairs(config, faces, prepared, torch_device.type),
                        batch_size=batch_size or config.data.batch_size, shuffle=False, collate_fn=collate_pairs)
    model = build_model(_inference_model_config(config.model)).to(torch_device)
    load_model_state(model, state["model"], path)
    del state
    report = calibrate_model(model, loader, torch_device, config.calibration, protocol=config.eval)
    set_calibration(path, report.calibration)
    return report


def _inference_model_config(model_config):
    """The checkpoint holds the weights: never fetch or read pretrained ones to build the model."""
    from dataclasses import replace

    return replace(model_config, pretrained=False, pretrained_file=None)
