"""`mfrn train`: SAM + AMP + DDP training with full, bit-for-bit resume.

Follows torchvision's reference script: distributed set-up from torchrun's environment, checkpoints
written by rank 0 only, a scheduler stepped once per optimizer step, validation on the training
dataset's own val split (real val faces and their synthetic fakes), never on a test set.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from mfrn.config import Config, config_to_dict
from mfrn.data.manifest import Manifest
from mfrn.io_utils import check_output_dir, ensure_output_dir
from mfrn.runtime import retain_freed_memory
from mfrn.synth.dataset import PairDataset, check_training_faces, collate_pairs, split_faces
from mfrn.train.calibrate import CalibratedRun, calibrate_checkpoints, validation_pairs
from mfrn.train.checkpoint import (clear_run, load_checkpoint, load_model_state, resolve_resume, rng_state,
                                   save_checkpoint, set_rng_state)
from mfrn.train.distributed import DistInfo, barrier, cleanup, init_distributed, resolve_device
from mfrn.train.selection import BEST_FILE, SELECTED_FILE, Selection, rule_text, select_checkpoint
from mfrn.weights import check_device

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    global_step: int
    epochs_done: int
    best_val_auc: float | None
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    weights_digest: str = ""  # SHA-256 of this rank's final weights (DDP ranks must agree)
    selected_checkpoint: Path | None = None  # the one to evaluate: train.checkpoint_rule's choice
    selection: Selection | None = None
    batch_per_process: int = 0  # data.batch_size (the global batch) / number of processes
    steps_per_epoch: int = 0
    calibration: CalibratedRun | None = None  # what the end-of-training calibration stored (rank 0)


class ResumableSampler(DistributedSampler):
    """DistributedSampler whose first epoch after a resume skips the batches already trained on."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skip = 0

    def __iter__(self):
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])

    def __len__(self) -> int:
        return super().__len__() - self.skip


def per_process_batch(global_batch: int, world_size: int) -> int:
    """Each process's share of ``data.batch_size``, the global batch (an error if it does not divide).

    With an equal share per process, DistributedSampler's interleaved indices make step k of an
    N-process run see exactly the faces of step k of the 1-process run, with as many steps per epoch.
    """
    if global_batch % world_size:
        raise ValueError(
            f"data.batch_size {global_batch} is the global batch and does not split evenly across "
            f"{world_size} processes: use a multiple of {world_size}"
        )
    return global_batch // world_size


def preprocessing_of(config: Config, prepared: Path | None) -> dict:
    """What inference must reproduce: crop, size, value range, face pipeline."""
    info = {
        "input_size": config.sbi.crop.size,
        "input_range": [0.0, 1.0],
        "normalization": "inside the model (backbone mean/std)" if config.model.normalize_input else "none",
        "test_crop": "detector box with margins w/8, h/8 per side (SBI's test crop), bilinear resize",
        "channels": "RGB",
    }
    if prepared is not None and (prepared / "prepare.json").is_file():
        import json

        info["prepare"] = json.loads((prepared / "prepare.json").read_text(encoding="utf-8")).get("config", {})
    return info


def _build_optimizer(config: Config, params):
    from mfrn.train.sam import SAM

    t = config.train
    if t.optimizer == "sgd":
        base, kwargs = torch.optim.SGD, {"lr": t.lr, "momentum": t.momentum, "weight_decay": t.weight_decay}
    elif t.optimizer == "adam":
        base, kwargs = torch.optim.Adam, {"lr": t.lr, "weight_decay": t.weight_decay}
    else:
        base, kwargs = torch.optim.AdamW, {"lr": t.lr, "weight_decay": t.weight_decay}
    optimizer = base(params, **kwargs)
    if t.sam:
        return SAM(optimizer, rho=t.sam_rho, adaptive=t.sam_adaptive)
    return optimizer


def _autocast(config: Config, device: torch.device):
    if config.train.amp == "off":
        return nullcontext()
    dtype = torch.bfloat16 if config.train.amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def validate(model, loader, criterion, device, config: Config) -> dict:
    """AUC and loss on the val pairs (deterministic fakes)."""
    from sklearn.metrics import roc_auc_score

    from mfrn.models.outputs import fake_probability

    model.eval()
    scores, labels, losses = [], [], []
    for batch in loader:
        images = batch["image"].to(device)
        if config.train.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(config, device):
            output = model(images)
            loss = criterion(output, batch["label"].to(device), batch["region_map"].to(device), batch["boundary_map"].to(device))
        losses.append(float(loss.total))
        scores.append(fake_probability(output).float().cpu().numpy())
        labels.append(batch["label"].numpy())
    model.train()
    scores_all, labels_all = np.concatenate(scores), np.concatenate(labels)
    auc = float(roc_auc_score(labels_all, scores_all)) if len(np.unique(labels_all)) == 2 else float("nan")
    return {"val_auc": auc, "val_loss": float(np.mean(losses)), "val_images": int(len(labels_all))}


def place_for_training(model: torch.nn.Module, config: Config, device: torch.device,
                       distributed: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``model`` (on ``device``) as training runs it: SyncBatchNorm under torchrun on GPUs, channels_last with the
    precise CPU batch norm where configured, DDP-wrapped when distributed. Returns (the model to call, its core)."""
    from mfrn.models.batchnorm import precise_channels_last_batch_norm

    if distributed and config.train.sync_batchnorm and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BN over the global batch, as on 1 GPU
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
        if config.train.precise_batch_norm:
            precise_channels_last_batch_norm(model)  # torch's CPU batch norm is imprecise in channels_last training
    core = model
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    return model, core


def train(config: Config, resume: Path | str | None = None, progress: bool = True, overwrite: bool = False) -> TrainResult:
    """Train ``config``; ``resume`` is a checkpoint path, or "auto" for ``<out_dir>/last.pt`` (which must exist).

    A fresh run into an ``out_dir`` that holds checkpoints is refused unless ``overwrite`` (see ``resolve_resume``).
    """
    from tqdm import tqdm

    from mfrn.models import build_model
    from mfrn.train.losses import build_criterion
    from mfrn.train.schedules import build_scheduler

    check_device(None if config.train.device == "auto" else config.train.device)
    out_dir = Path(config.train.out_dir)
    check_output_dir(out_dir, "train.out_dir folder")
    resume = resolve_resume(out_dir, resume, overwrite)  # before anything is set up or overwritten
    dist_info: DistInfo = init_distributed(None if config.train.device == "auto" else config.train.device)
    device = resolve_device(config.train.device, dist_info)
    memory_line = retain_freed_memory() if device.type == "cpu" else None  # a third of a CPU step was page faults
    per_process = per_process_batch(config.data.batch_size, dist_info.world_size)
    t = config.train
    selection_text = rule_text(t.checkpoint_rule, t.checkpoint_top_k)
    torch.manual_seed(config.train.seed)  # the same initial weights on every rank
    np.random.seed(config.train.seed)

    prepared = Path(config.data.prepared)
    if not config.data.prepared:
        raise ValueError("data.prepared is empty: give the folder written by `mfrn prepare`")
    manifest = Manifest(prepared)
    train_faces = split_faces(manifest, "train", config.data.val_fraction, config.data.frames_per_video,
                              config.data.faces_per_frame)
    val_faces = split_faces(manifest, "val", config.data.val_fraction, config.data.frames_per_video,
                            config.data.faces_per_frame)
    check_training_faces(manifest, train_faces, val_faces, config.data.val_fraction)
    device_name = device.type
    temporal = config.model.temporal != "off"
    if temporal:  # clips of consecutive frames, (2B, T, 3, S, S) batches through the same steps below
        from mfrn.train.clips import clip_datasets, load_frame_checkpoint

        train_set, val_set = clip_datasets(config, manifest, prepared, device_name)
        train_faces, val_faces = train_set.clips, val_set.clips
    else:
        train_set = PairDataset.from_config(train_faces, config.sbi, config.rbi, prepared, config.train.seed,
                                            device=device_name)
        val_set = validation_pairs(config, val_faces, prepared, device_name)

    sampler = ResumableSampler(train_set, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True,
                               seed=config.train.seed, drop_last=True)
    loader_kwargs = dict(num_workers=config.data.num_workers, collate_fn=collate_pairs,
                         pin_memory=device.type == "cuda", persistent_workers=False)
    if config.data.num_workers > 0 and config.rbi.source == "on_the_fly" and config.rbi.probability > 0:
        loader_kwargs["multiprocessing_context"] = "spawn"  # the generator's torch state must not be forked
    steps_per_epoch = len(sampler) // per_process
    if steps_per_epoch == 0:
        raise ValueError(
            f"{len(train_set)} training faces make no full (global) batch of "
            f"{config.data.batch_size}: lower data.batch_size or prepare more faces"
        )
    # each validation loader has its own generator: iterating a DataLoader draws a base seed from torch's global
    # random state otherwise, and that state drives dropout in the training steps (validating would change training)
    def val_loader_of(dataset) -> DataLoader:
        return DataLoader(dataset, batch_size=config.data.batch_size, shuffle=False, drop_last=False,
                          generator=torch.Generator().manual_seed(config.train.seed), **loader_kwargs)

    val_loader = val_loader_of(val_set)
    val_crf_loader = None
    if config.data.val_crf is not None:  # the same val pairs through H.264: reported, never used for selection
        from mfrn.synth.dataset import CompressedPairs

        val_crf_loader = val_loader_of(CompressedPairs(val_set, config.data.val_crf,
                                                       motion_frames=config.data.val_motion_frames))
    total_steps = steps_per_epoch * config.train.epochs

    model = build_model(config.model).to(device)
    if temporal and config.model.temporal_frame_checkpoint:
        load_frame_checkpoint(model, config.model.temporal_frame_checkpoint)
    model, core = place_for_training(model, config, device, dist_info.enabled)
    criterion = build_criterion(config.loss, temporal)
    optimizer = _build_optimizer(config, [p for p in model.parameters() if p.requires_grad])
    scheduler = build_scheduler(optimizer, config.train.schedule, total_steps=total_steps,
                                warmup_steps=config.train.warmup_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=config.train.amp == "fp16")

    epoch, step_in_epoch, global_step = 0, 0, 0
    best_auc: float | None = None
    history: list[dict] = []
    average = None
    if resume:
        state = load_checkpoint(Path(resume), map_location=device)
        # with train.ema_decay the checkpoint's model is the average and train_model the raw weights
        if bool(t.ema_decay) != ("train_model" in state):
            raise ValueError(f"{resume}: was trained {'without' if t.ema_decay else 'with'} train.ema_decay; "
                             "resume it with the setting it was trained with")
        load_model_state(core, state.get("train_model", state["model"]), resume)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        epoch, step_in_epoch, global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        best_auc, history = state.get("best_val_auc"), list(state.get("history", []))
        set_rng_state(state["rng"])
        if dist_info.is_main:
            print(f"resumed from {resume}: epoch {epoch}, step {global_step}")

    if t.ema_decay:
        from mfrn.train.ema import WeightAverage

        average = WeightAverage(core, t.ema_decay, updates=int(state.get("ema_updates", 0)) if resume else 0)
        if resume:
            load_model_state(average.module, state["model"], resume)
    evaluated = core if average is None else average.module  # what is validated, selected, calibrated and saved

    writer = None
    if dist_info.is_main:
        ensure_output_dir(out_dir, "train.out_dir folder")
        if overwrite:
            for path in clear_run(out_dir):
                print(f"--overwrite: removed {path} of the earlier run")
        print(f"train: {len(train_set)} {'clips' if temporal else 'faces'} ({len(train_faces)} train / "
              f"{len(val_faces)} val), "
              f"{steps_per_epoch} steps/epoch x {config.train.epochs} epochs, batch {config.data.batch_size}+"
              f"{config.data.batch_size} ({per_process}+{per_process} on each of {dist_info.world_size} process(es)), "
              f"device {device}, amp {config.train.amp}")
        if dist_info.enabled and device.type != "cuda" and config.train.sync_batchnorm:
            print("train.sync_batchnorm: no SyncBatchNorm on CPUs; BatchNorm statistics are per process")
        print(f"checkpoint rule: {selection_text}")
        if memory_line:
            print(memory_line)
        skipped = train_set.skipped + val_set.skipped
        if skipped:
            print(f"skipped {len(skipped)} faces SBI cannot blend (first: {skipped[0][0]}: {skipped[0][1]})")
        if config.train.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:
                print("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")

    def payload() -> dict:
        weights = {"model": evaluated.state_dict()}
        if average is not None:
            weights.update(train_model=core.state_dict(), ema_updates=average.updates, ema_decay=average.decay)
        return {
            **weights,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": global_step,
            "rng": rng_state(),
            "config": config_to_dict(config),
            "preprocessing": preprocessing_of(config, prepared),
            "best_val_auc": best_auc,
            "history": history,
            "selection_rule": selection_text,
            "selection": select_checkpoint(history, t.checkpoint_rule, t.checkpoint_top_k).to_dict(),
        }

    def save_last() -> None:
        if dist_info.is_main:
            save_checkpoint(out_dir / "last.pt", payload())

    stopped = False
    model.train()
    try:
        while epoch < config.train.epochs and not stopped:
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            sampler.skip = step_in_epoch * per_process
            generator = torch.Generator().manual_seed(config.train.seed * 1000 + epoch)
            loader = DataLoader(train_set, batch_size=per_process, sampler=sampler, drop_last=True,
                                generator=generator, **loader_kwargs)
            bar = tqdm(total=steps_per_epoch, initial=step_in_epoch, desc=f"epoch {epoch + 1}/{config.train.epochs}",
                       disable=not (progress and dist_info.is_main), dynamic_ncols=True)
            running, seen, t0, cpu0 = 0.0, 0, time.perf_counter(), time.process_time()
            for batch in loader:
                images = batch["image"].to(device, non_blocking=True)
                if config.train.channels_last and images.dim() == 4:
                    images = images.contiguous(memory_format=torch.channels_last)
                targets = (batch["label"].to(device), batch["region_map"].to(device), batch["boundary_map"].to(device))
                loss = _train_step(model, core, criterion, optimizer, scaler, images, targets, config, device)
                scheduler.step()
                if average is not None:
                    average.update(core)
                step_in_epoch += 1
                global_step += 1
                running += loss
                seen += images.numel() // images.shape[-3:].numel()  # images (the frames of clips too)
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate * dist_info.world_size:.1f}",
                                lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                if writer is not None and global_step % max(config.train.log_every_steps, 1) == 0:
                    writer.add_scalar("train/loss", loss, global_step)
                    writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], global_step)
                    writer.add_scalar("train/images_per_s", rate * dist_info.world_size, global_step)
                if config.train.save_every_steps and global_step % config.train.save_every_steps == 0:
                    save_last()
                if config.train.max_steps and global_step >= config.train.max_steps:
                    stopped = True
                    break
            bar.close()
            if stopped and step_in_epoch < steps_per_epoch:
                save_last()
                break
            seconds = time.perf_counter() - t0  # this epoch's training steps (data included), not validation
            entry = {"epoch": epoch + 1, "train_loss": running / max(step_in_epoch, 1),
                     "lr": optimizer.param_groups[0]["lr"], "global_step": global_step,
                     "train_seconds": seconds, "train_cpu_seconds": time.process_time() - cpu0,
                     "images_per_s": seen * dist_info.world_size / max(seconds, 1e-9)}
            epoch += 1
            step_in_epoch = 0
            if dist_info.is_main and (epoch % config.train.val_every_epochs == 0 or epoch == config.train.epochs):
                t_val = time.perf_counter()
                entry.update(validate(evaluated, val_loader, criterion, device, config))
                if val_crf_loader is not None:  # a report only: the training run stays the one without it
                    entry["val_auc_crf"] = validate(evaluated, val_crf_loader, criterion, device, config)["val_auc"]
                entry["val_seconds"] = time.perf_counter() - t_val
                improved = not math.isnan(entry["val_auc"]) and (best_auc is None or entry["val_auc"] > best_auc)
                if improved:
                    best_auc = entry["val_auc"]
                entry["best"] = improved
                history.append(entry)
                selected = select_checkpoint(history, t.checkpoint_rule, t.checkpoint_top_k).epoch == epoch
                entry["selected"] = selected
                saved = [name for name, flag in ((BEST_FILE, improved), (SELECTED_FILE, selected)) if flag]
                at_crf = (f", val AUC at H.264 CRF {config.data.val_crf} {entry['val_auc_crf']:.4f}"
                          if "val_auc_crf" in entry else "")
                print(f"epoch {epoch}: train loss {entry['train_loss']:.4f}, val AUC {entry['val_auc']:.4f}, "
                      f"val loss {entry['val_loss']:.4f}{at_crf}" + (f" (saved {', '.join(saved)})" if saved else ""))
                if writer is not None:
                    writer.add_scalar("val/auc", entry["val_auc"], global_step)
                    writer.add_scalar("val/loss", entry["val_loss"], global_step)
                    if "val_auc_crf" in entry:
                        writer.add_scalar("val/auc_crf", entry["val_auc_crf"], global_step)
                if improved:
                    save_checkpoint(out_dir / BEST_FILE, payload())
                if selected:
                    save_checkpoint(out_dir / SELECTED_FILE, payload())
            elif dist_info.is_main:
                history.append(entry)
            save_last()
            barrier(dist_info)
        if dist_info.enabled:
            # without SyncBatchNorm (CPUs) the last pass left per-process BatchNorm statistics; rank 0's
            # are the saved ones, and DDP would hand them to every rank at the next forward anyway
            for buffer in [*core.buffers(), *(average.module.buffers() if average is not None else [])]:
                torch.distributed.broadcast(buffer, src=0)
        digest = weights_digest(core)
    finally:
        if writer is not None:
            writer.close()
        cleanup(dist_info)
    best_path, selected_path = out_dir / BEST_FILE, out_dir / SELECTED_FILE
    selection = select_checkpoint(history, t.checkpoint_rule, t.checkpoint_top_k)
    if dist_info.is_main and selection.epoch is not None:
        print(f"selected checkpoint: {selected_path} = {selection.describe()}")
    calibrated = None
    if dist_info.is_main and config.calibration.enabled:
        # the verdict threshold (and the region map's) of each checkpoint, chosen on the validation split
        written = [path for path in (selected_path, best_path, out_dir / "last.pt") if path.is_file()]
        calibrated = calibrate_checkpoints(written, core, val_loader, device, config.calibration,
                                           config.train.channels_last, config.eval)
        print(calibrated.format())
    return TrainResult(out_dir=out_dir, last_checkpoint=out_dir / "last.pt",
                       best_checkpoint=best_path if best_path.is_file() else None, global_step=global_step,
                       epochs_done=epoch, best_val_auc=best_auc, history=history, stopped_early=stopped,
                       weights_digest=digest,
                       selected_checkpoint=selected_path if selected_path.is_file() else None,
                       selection=selection, batch_per_process=per_process, steps_per_epoch=steps_per_epoch,
                       calibration=calibrated)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer, in state-dict order."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _train_step(model, core, criterion, optimizer, scaler, images, targets, config: Config, device) -> float:
    """One optimizer step: SAM's two passes (or one plain pass), AMP-aware; returns the first loss."""
    labels, region_maps, boundary_maps = targets

    def closure_loss():
        with _autocast(config, device):
            output = model(images)
            return criterion(output, labels, region_maps, boundary_maps).total

    if config.train.sam:
        from mfrn.train.sam import sam_step

        # interpretation: train.grad_clip applies to plain optimisers only; SAM's ascent is already normalised
        # SBI updates BatchNorm statistics in both passes; "freeze" hands sam_step the model to freeze them in pass 2
        frozen = core if config.train.sam_bn_second_pass == "freeze" else None
        loss = sam_step(optimizer, closure_loss, scaler=scaler, model=frozen).loss
    else:
        optimizer.zero_grad(set_to_none=True)
        loss = closure_loss()
        scaler.scale(loss).backward()
        if config.train.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    core.project_constraints()  # Bayar constraint of the noise stream, after every step
    return float(loss.detach())
