"""Training of the built-in generator by self-reconstruction (``mfrn generator train``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mfrn.models.batchnorm import precise_channels_last_batch_norm
from mfrn.synth.reconstructors.base import ReconstructionError, crops_to_tensor
from mfrn.synth.reconstructors.builtin import BuiltinGeneratorConfig, BuiltinReconstructor

FaceInput = np.ndarray | tuple[np.ndarray, np.ndarray]


@dataclass
class BuiltinTrainConfig:
    """Optimisation of the built-in generator (self-reconstruction; SimSwap's GAN terms are left out)."""

    steps: int = 600
    batch_size: int = 8
    # interpretation: Adam as SimSwap (beta1 0) but lr 2e-3 instead of 4e-4, for minutes on a CPU
    lr: float = 2e-3
    beta1: float = 0.0
    beta2: float = 0.999
    lambda_l1: float = 1.0
    lambda_ssim: float = 1.0  # weight of 1 - SSIM (7x7 uniform window)
    lambda_identity: float = 0.1  # weight of 1 - cos(id(output), id(input))
    augment: bool = True  # flip, small similarity jitter, brightness/contrast
    max_seconds: float = 0.0  # stop early after this many seconds (0: no limit)
    seed: int = 0
    log_every: int = 50


@dataclass
class GeneratorTrainReport:
    """What ``train_builtin_generator`` did and how well the generator reconstructs held-out faces."""

    steps: int
    final_loss: float
    final_l1: float
    final_ssim_loss: float
    final_identity_loss: float
    val_psnr: float  # dB, uint8 crops, no noise
    val_ssim: float
    val_psnr_noisy: float  # with RBINoiseConfig() defaults: how far the noise moves the output
    n_train: int
    n_val: int
    val_is_train: bool
    seconds: float
    checkpoint: str
    loss_history: list[float] = field(default_factory=list)

    def format(self) -> str:
        held_out = "training faces (no held-out split)" if self.val_is_train else f"{self.n_val} held-out faces"
        return (
            f"built-in generator: {self.steps} steps in {self.seconds:.0f} s on {self.n_train} faces; loss {self.final_loss:.4f} "
            f"(L1 {self.final_l1:.4f}, 1-SSIM {self.final_ssim_loss:.4f}, identity {self.final_identity_loss:.4f}); "
            f"on {held_out}: PSNR {self.val_psnr:.2f} dB, SSIM {self.val_ssim:.3f} (with default noise: PSNR {self.val_psnr_noisy:.2f} dB); "
            f"saved {self.checkpoint}"
        )


def ssim_torch(x: torch.Tensor, y: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean SSIM of two (B, C, H, W) batches in [0, 1] with a uniform window (as skimage's default)."""
    c1, c2 = 0.01**2, 0.03**2
    pad = window // 2
    x = F.pad(x, (pad,) * 4, mode="reflect")
    y = F.pad(y, (pad,) * 4, mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, window, 1), F.avg_pool2d(y, window, 1)
    var_x = F.avg_pool2d(x * x, window, 1) - mu_x**2
    var_y = F.avg_pool2d(y * y, window, 1) - mu_y**2
    cov = F.avg_pool2d(x * y, window, 1) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim.mean()


def augment_face_views(
    image: np.ndarray, keypoints5: np.ndarray, n: int, rng: np.random.Generator, max_rotation_deg: float = 12.0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (image, keypoints) variants of one face: random rotation/scale/shift, flip, colour jitter."""
    import cv2

    from mfrn.faces.landmarks import flip_keypoints

    height, width = image.shape[:2]
    views = []
    for _ in range(n):
        angle = rng.uniform(-max_rotation_deg, max_rotation_deg)
        scale = rng.uniform(0.8, 1.2)
        center = keypoints5.mean(0) + rng.uniform(-0.03, 0.03, 2) * (width, height)
        matrix = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), angle, scale)
        warped = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        points = keypoints5 @ matrix[:, :2].T + matrix[:, 2]
        if rng.random() < 0.5:
            warped = np.ascontiguousarray(warped[:, ::-1])
            points = flip_keypoints(points, width)
        gain = rng.uniform(0.8, 1.2, 3)
        bias = rng.uniform(-20, 20)
        warped = np.clip(warped.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
        views.append((warped, points.astype(np.float32)))
    return views


def _to_crop(face: FaceInput, model: BuiltinReconstructor, index: int) -> np.ndarray:
    import cv2

    if isinstance(face, tuple):
        image, keypoints = face
        try:
            return model.align(np.asarray(image), keypoints).crop
        except ReconstructionError as error:
            raise ReconstructionError(f"training face {index}: {error.reason}") from None
    crop = np.asarray(face)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8 or crop.shape[0] != crop.shape[1]:
        raise ValueError(f"training face {index}: expected a square RGB uint8 aligned crop, got {crop.dtype} {crop.shape}")
    if crop.shape[0] != model.crop_size:
        crop = cv2.resize(crop, (model.crop_size, model.crop_size), interpolation=cv2.INTER_AREA)
    return crop


def _augment_batch(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import cv2

    out = np.empty_like(crops)
    size = crops.shape[1]
    for i, crop in enumerate(crops):
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-5, 5), rng.uniform(0.95, 1.05))
        matrix[:, 2] += rng.uniform(-0.03, 0.03, 2) * size
        crop = cv2.warpAffine(np.ascontiguousarray(crop), matrix, (size, size), borderMode=cv2.BORDER_REFLECT101)
        gain, bias = rng.uniform(0.9, 1.1), rng.uniform(-10, 10)
        out[i] = np.clip(crop.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return out


def _evaluate(model: BuiltinReconstructor, crops: np.ndarray, noisy: bool, seed: int) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from mfrn.synth.reconstructors.noise import RBINoiseConfig

    outputs: list[np.ndarray] = []
    rng = np.random.default_rng(seed)
    for start in range(0, len(crops), 16):
        chunk = list(crops[start : start + 16])
        out, _ = model.reconstruct_aligned(chunk, RBINoiseConfig() if noisy else None, rng)
        outputs.extend(out)
    psnr = [peak_signal_noise_ratio(c, o, data_range=255) for c, o in zip(crops, outputs)]
    ssim = [structural_similarity(c, o, channel_axis=2, data_range=255) for c, o in zip(crops, outputs)]
    return float(np.mean(psnr)), float(np.mean(ssim))


def train_builtin_generator(
    faces: Sequence[FaceInput],
    cfg: BuiltinGeneratorConfig | None = None,
    out_path: str | Path = "builtin_generator.pt",
    val_fraction: float = 0.2,
    steps: int | None = None,
    device: str | torch.device | None = "cpu",
    train_cfg: BuiltinTrainConfig | None = None,
    identity_encoder: nn.Module | None = None,
    log: bool = False,
    progress: bool = False,
    bar_over_steps: bool = False,
) -> GeneratorTrainReport:
    """Train the built-in generator on real faces by self-reconstruction and save a checkpoint.

    ``faces``: aligned uint8 crops (resized to the crop size if needed) or (image, keypoints5) pairs.
    Loss: L1 + (1 - SSIM) + identity consistency 1 - cos(id(output), id(input)). An ``identity_encoder``
    (e.g. ``ArcFaceEncoder``) is frozen; otherwise the light encoder trains jointly. ``progress`` shows a
    bar over the time budget (``train_cfg.max_seconds``) when there is one, else over the steps;
    ``bar_over_steps`` shows the steps when the time budget is only a cap.
    """
    from tqdm import tqdm

    cfg = cfg if cfg is not None else BuiltinGeneratorConfig()
    device = device if device is not None else "cpu"
    train_cfg = train_cfg if train_cfg is not None else BuiltinTrainConfig()
    n_steps = train_cfg.steps if steps is None else steps
    if not faces:
        raise ValueError("train_builtin_generator needs at least one face")
    if torch.device(device).type == "cpu":
        from mfrn.runtime import retain_freed_memory

        retain_freed_memory()  # large activations freed and mapped again each step cost page faults
    torch.manual_seed(train_cfg.seed)
    rng = np.random.default_rng(train_cfg.seed)
    model = BuiltinReconstructor(cfg, identity_encoder).to(device, memory_format=torch.channels_last)  # as crops_to_tensor
    precise_channels_last_batch_norm(model)  # torch's CPU batch norm is imprecise in channels_last training
    if identity_encoder is not None:
        identity_encoder.eval().requires_grad_(False)
    crops = np.stack([_to_crop(face, model, i) for i, face in enumerate(faces)])

    order = rng.permutation(len(crops))
    n_val = int(round(len(crops) * val_fraction)) if len(crops) > 1 else 0
    n_val = min(max(n_val, 1 if val_fraction > 0 and len(crops) > 1 else 0), len(crops) - 1)
    val_crops, train_crops = crops[order[:n_val]], crops[order[n_val:]]
    val_is_train = n_val == 0
    if val_is_train:
        val_crops = train_crops

    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=train_cfg.lr, betas=(train_cfg.beta1, train_cfg.beta2))
    model.train()
    if identity_encoder is not None:
        identity_encoder.eval()
    history: list[float] = []
    parts: list[tuple[float, float, float]] = []
    start = time.perf_counter()
    step = 0
    timed = bool(train_cfg.max_seconds) and not bar_over_steps
    bar = tqdm(total=round(train_cfg.max_seconds) if timed else n_steps, unit="s" if timed else "step",
               desc="generator train", disable=not progress, dynamic_ncols=True)
    for step in range(1, n_steps + 1):
        index = rng.integers(0, len(train_crops), train_cfg.batch_size)
        batch_np = train_crops[index]
        if train_cfg.augment:
            batch_np = _augment_batch(batch_np, rng)
        batch = crops_to_tensor(batch_np, device)
        identity, background = model.encode(batch)
        output = model.decode(identity, background)
        l1 = (output - batch).abs().mean()
        ssim_loss = 1.0 - ssim_torch(output, batch)
        # interpretation: with its own light encoder trained jointly, the identity term only asks the
        # output to encode like the input (it could collapse; reconstruction keeps the injection useful)
        id_out = F.normalize(model.identity_encoder(output), dim=1)
        identity_loss = (1.0 - (id_out * identity).sum(dim=1)).mean()
        loss = train_cfg.lambda_l1 * l1 + train_cfg.lambda_ssim * ssim_loss + train_cfg.lambda_identity * identity_loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"built-in generator training diverged at step {step} (loss {loss.item()})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.item()))
        parts.append((float(l1.item()), float(ssim_loss.item()), float(identity_loss.item())))
        if log and (step % train_cfg.log_every == 0 or step == 1):
            print(f"step {step}/{n_steps} loss {history[-1]:.4f} l1 {parts[-1][0]:.4f} 1-ssim {parts[-1][1]:.4f} id {parts[-1][2]:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        bar.update(min(round(time.perf_counter() - start), bar.total) - bar.n if timed else 1)
        bar.set_postfix(step=step, loss=f"{history[-1]:.4f}", refresh=False)
        if train_cfg.max_seconds and time.perf_counter() - start > train_cfg.max_seconds:
            break
    bar.close()
    seconds = time.perf_counter() - start

    model.eval()
    val_psnr, val_ssim = _evaluate(model, val_crops, noisy=False, seed=train_cfg.seed)
    val_psnr_noisy, _ = _evaluate(model, val_crops, noisy=True, seed=train_cfg.seed)
    window = max(1, min(20, len(history)))
    final = np.mean(parts[-window:], axis=0)
    report = GeneratorTrainReport(
        steps=step,
        final_loss=float(np.mean(history[-window:])),
        final_l1=float(final[0]),
        final_ssim_loss=float(final[1]),
        final_identity_loss=float(final[2]),
        val_psnr=val_psnr,
        val_ssim=val_ssim,
        val_psnr_noisy=val_psnr_noisy,
        n_train=len(train_crops),
        n_val=n_val,
        val_is_train=val_is_train,
        seconds=seconds,
        checkpoint=str(out_path),
        loss_history=history,
    )
    extra = {k: v for k, v in report.__dict__.items() if k != "loss_history"}
    model.to("cpu").save(out_path, extra=extra)
    return report
