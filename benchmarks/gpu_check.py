"""One prepared GPU check for mfrn: the paper-scale numbers a CPU cannot give, in about five minutes.

On the first CUDA device it reports the card, then, each section with its own time budget and guard
(a failure is recorded with its error and the next section runs), rewriting gpu_check.json and
gpu_check.md in the output folder after every section:

- training: images/s, ms/step and peak memory of the SBI baseline and MFRN (EfficientNet-B4, 380 px,
  16 real + 16 fake, SAM's two passes) through the training loop's own step function
  (``mfrn.train.loop._train_step``, configs/sbi_effb4.yaml and configs/mfrn_effb4.yaml), in fp32,
  bf16 and fp16 + GradScaler, with and without channels_last; the MFRN/baseline step-time ratio
  (target <= 1.6 at bf16 + channels_last);
- data_pipeline: DataLoader samples/s with N workers for SBI and for the RBI mix read from a
  reconstruction cache, against the training rate (the margin), and loader + training step together;
- evaluation: videos/min at 32 frames through ``mfrn.evaluate.runner.score_records`` with the dlib
  path and with RetinaFace / MTCNN on CUDA, and the model-only images/s at inference;
- ddp: a smoke run under ``torchrun --nproc_per_node 1`` with NCCL (DDP-wrapped steps of the loop's
  step function, then ``mfrn.train.loop.train`` itself);
- max_batch: the largest batch of MFRN (bf16, channels_last) that fits, with its images/s;
- projection: hours per 100 epochs of FF++ (720 real training videos x 8 frames), eval minutes.

Inputs are said in the output: real face crops are not on the device machine, so the faces are
scikit-image's public-domain astronaut photo (shipped inside the scikit-image wheel) at several
scales, flips and small rotations, prepared by ``mfrn prepare``'s own code (``--inputs`` holds a
folder prepared here, with dlib's real 68-point predictor; without it they are prepared at start).
Detector networks without weight files run with random weights (speed only; the output says so).

Here, before a device run (pip reaches PyPI here; writes .gpu-check/, git-ignored, about 50 MB):

    python benchmarks/gpu_check.py make-carry

On the device machine (fresh, no network; its python3 has torch, timm, OpenCV, scikit-image, but not
dlib, PyAV or albumentations, which travel as wheels), with carry [".gpu-check"] and timeout_s 420:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu-check/whl/*.whl && PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --inputs .gpu-check/inputs --commit SHA

(make-carry prints this line with the commit filled in). The output folder is ``$OUT`` when that is
set (the device tool brings it back), else ``gpu-check/``. The CPU form, which the test suite runs
(tiny model, tiny sizes, gloo instead of NCCL):

    python benchmarks/gpu_check.py --reduced --out /tmp/gpu-check

Exit codes: 0 every section ran, or there is no CUDA device (one clear line says so, nothing is
measured); 1 at least one section failed (its error is in the JSON); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
CONFIG_FILES = {"baseline": "sbi_effb4.yaml", "mfrn": "mfrn_effb4.yaml"}
RATIO_TARGET = 1.6
SCHEMA = 1
JSON_NAME, MD_NAME = "gpu_check.json", "gpu_check.md"

# FF++ (FaceForensics repository's splits): 720 / 140 / 140 real videos; SBI trains on 8 frames of each
FFPP_TRAIN_VIDEOS, FFPP_VAL_VIDEOS, FFPP_TEST_REAL = 720, 140, 140
FFPP_TEST_VIDEOS = {"4 methods (DF, F2F, FS, NT)": FFPP_TEST_REAL * 5, "5 methods (+ FaceShifter)": FFPP_TEST_REAL * 6}
EPOCHS = 100

# what the device machine's python3 lacks (KINDS.md's package list): carried as wheels by make-carry
CARRIED_PACKAGES = ("dlib-bin", "av", "albumentations", "albucore", "pydantic", "pydantic-core", "annotated-types",
                    "typing-inspection", "stringzilla", "simsimd")
DEVICE_PYTHON = "3.12"
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                   "manylinux1_x86_64")
CARRY_LIMIT_MIB = 64

# the tiny model of the CPU form (as tests/conftest.py's TINY_MODEL and bench_eval.py's TINY)
TINY_MODEL = ["sbi.crop.size=64", "model.input_size=64", "model.backbone=test_efficientnet",
              "model.noise_channels=[4, 8, 8, 16]", "model.fused_channels=[8, 8, 16, 16]", "model.edge_channels=4",
              "model.decoder_channels=8", "model.attention_heads=2"]


# --------------------------------------------------------------------------------------------------
# the plan: sizes and budgets of the full run and of the reduced CPU form


@dataclass
class Plan:
    reduced: bool
    total_budget_s: float
    budgets_s: dict[str, float]
    batch: int  # real faces per step (each with its fake: 2x images)
    model_overrides: list[str]
    precisions: tuple[str, ...] = ("bf16", "fp32", "fp16")  # bf16 first: the target's row exists even if time runs out
    layouts: tuple[tuple[str, bool], ...] = ()  # (precision, channels_last) pairs; () = every precision x both layouts
    warmup_steps: int = 3
    max_timed_steps: int = 20
    step_seconds: float = 6.0  # timed window per training configuration
    loader_workers: tuple[int, ...] = (1, 4, 8, 15)  # the device has 16 cores: 15 workers + the training process
    loader_workers_sbi: tuple[int, ...] = (8, 15)
    loader_seconds: float = 3.5
    end_to_end_seconds: float = 8.0
    prepare_workers: int = 8
    fp16_settle_steps: int = 10  # extra fp16 warm-up steps while GradScaler still backs off
    faces: int = 24  # astronaut variants prepared (the last val_faces are the val split)
    val_faces: int = 4
    face_scales: tuple[float, ...] = (1.25, 1.5, 1.75, 2.0, 2.25, 2.5)  # face about 110 px x scale wide
    video_size: tuple[int, int] = (1280, 720)
    video_frames: int = 250  # 10 s at 25 fps; FF++ videos hold about 500 frames, mostly 480p-1080p
    eval_frames: int = 32
    eval_videos: int = 12
    eval_seconds: float = 20.0
    inference_seconds: float = 5.0
    max_batch_candidates: tuple[int, ...] = (32, 64, 96, 128, 192, 256, 384)
    ddp_timeout_s: float = 150.0

    def combos(self) -> list[tuple[str, bool]]:
        return list(self.layouts) or [(p, cl) for p in self.precisions for cl in (True, False)]

    @classmethod
    def full(cls, scale: float = 1.0) -> "Plan":
        budgets = {"environment": 15, "inputs": 45, "training": 150, "data_pipeline": 65, "evaluation": 90,
                   "ddp": 60, "max_batch": 40, "projection": 5}
        return cls(reduced=False, total_budget_s=340 * scale, budgets_s={k: v * scale for k, v in budgets.items()},
                   batch=16, model_overrides=[])

    @classmethod
    def cpu(cls, scale: float = 1.0) -> "Plan":
        budgets = {"environment": 10, "inputs": 30, "training": 30, "data_pipeline": 20, "evaluation": 30,
                   "ddp": 60, "max_batch": 10, "projection": 5}
        return cls(reduced=True, total_budget_s=200 * scale, budgets_s={k: v * scale for k, v in budgets.items()},
                   batch=2, model_overrides=list(TINY_MODEL), warmup_steps=1, max_timed_steps=2, step_seconds=0.5,
                   layouts=(("bf16", True), ("fp32", False), ("fp16", True)), end_to_end_seconds=0.5,
                   prepare_workers=1, fp16_settle_steps=2, loader_workers=(0, 1), loader_workers_sbi=(0,), loader_seconds=0.5, faces=6, val_faces=2,
                   face_scales=(1.0,), video_size=(480, 360), video_frames=8, eval_frames=2, eval_videos=2,
                   eval_seconds=2.0, inference_seconds=0.5, max_batch_candidates=(2, 4), ddp_timeout_s=120.0)


SECTIONS = ("environment", "inputs", "training", "data_pipeline", "evaluation", "ddp", "max_batch", "projection")


@dataclass
class Deadline:
    end: float

    @classmethod
    def after(cls, seconds: float) -> "Deadline":
        return cls(time.perf_counter() + seconds)

    def left(self) -> float:
        return self.end - time.perf_counter()

    def passed(self) -> bool:
        return self.left() <= 0

    def within(self, seconds: float) -> "Deadline":
        return Deadline(min(self.end, time.perf_counter() + seconds))


# --------------------------------------------------------------------------------------------------
# the report: one JSON file and one Markdown file, rewritten after every step


class Report:
    def __init__(self, out_dir: Path, data: dict) -> None:
        self.out_dir = out_dir
        self.data = data

    def section(self, name: str) -> dict:
        return self.data["sections"].setdefault(name, {"status": "pending", "result": {}})

    def result(self, name: str) -> dict:
        return self.section(name).setdefault("result", {})

    def note(self, text: str) -> None:
        if text not in self.data["notes"]:
            self.data["notes"].append(text)
            print(f"note: {text}", flush=True)

    def write(self) -> None:
        from mfrn.io_utils import atomic_write_json, atomic_write_text

        self.data["updated"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        atomic_write_json(self.out_dir / JSON_NAME, self.data)
        atomic_write_text(self.out_dir / MD_NAME, render_markdown(self.data))


@dataclass
class Context:
    args: argparse.Namespace
    plan: Plan
    report: Report
    work: Path
    device: object = None  # torch.device
    predictor: Path | None = None  # dlib 68-point predictor file used everywhere
    predictor_kind: str = ""  # "real" | "synthetic"
    prepared: Path | None = None
    rbi_cache: Path | None = None
    video: Path | None = None
    reference_face: object = None  # FaceDetection found by dlib on the video's first frame
    real_batch: dict | None = None  # one collated batch of the RBI-mix pipeline (CPU tensors)

    @property
    def cuda(self) -> bool:
        return self.device is not None and self.device.type == "cuda"

    def config(self, model: str, amp: str = "off", channels_last: bool = False, batch: int | None = None,
               extra: tuple[str, ...] = ()):
        """The project's config of ``model`` (configs/*.yaml) with this check's settings on top."""
        from mfrn.config import load_config

        overrides = ["model.pretrained=false", f"train.amp={amp}", f"train.channels_last={str(channels_last).lower()}",
                     f"data.batch_size={batch or self.plan.batch}", f"train.device={self.device.type}",
                     "train.tensorboard=false", *self.plan.model_overrides]
        if self.prepared is not None:
            overrides.append(f"data.prepared={self.prepared}")
        if self.rbi_cache is not None:
            overrides.append(f"rbi.cache_dir={self.rbi_cache}")
        return load_config(CONFIGS / CONFIG_FILES[model], overrides + list(extra))


def _sync(device) -> None:
    import torch

    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device) -> None:
    import torch

    gc.collect()
    if device is not None and device.type == "cuda":
        torch.cuda.empty_cache()


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip()[:2000]


def _amp_name(precision: str) -> str:
    return {"fp32": "off", "bf16": "bf16", "fp16": "fp16"}[precision]


# --------------------------------------------------------------------------------------------------
# a dlib 68-point shape predictor of the real one's structure (for speed where the real file is absent)

# dlib's shape_predictor_68_face_landmarks.dat (face-recognition-models), read with read_dlib_structure. A synthetic
# file of this structure predicts a face in 1.4-1.9 ms on the development CPU, the real one in 2.1 ms (dlib's HOG
# detector takes 30-100 ms per frame)
DLIB68_STRUCTURE = {"version": 1, "parts": 68, "cascades": 15, "trees_per_cascade": 500, "splits_per_tree": 15,
                    "leaves_per_tree": 16, "feature_pool_size": 500}


class _DlibReader:
    """dlib's portable serialisation: an int is a control byte (bit 7 = negative, low 4 bits = byte
    count) and that many little-endian bytes; a float is two ints, mantissa and base-2 exponent."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def int(self) -> int:
        control = self.data[self.pos]
        if control & 0x70:
            raise ValueError(f"not a dlib integer at byte {self.pos} (control byte {control:#x})")
        size = control & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        return math.ldexp(mantissa, exponent)

    def column(self) -> int:
        rows, cols = -self.int(), -self.int()  # dlib writes negative sizes (its newer matrix format)
        for _ in range(rows * cols):
            self.int(), self.int()
        return rows * cols


def read_dlib_structure(path: Path, full: bool = True) -> dict:
    """The structure of a dlib shape-predictor file (parts, cascades, trees, depth, feature pool).
    ``full=False`` reads the header and the first tree only (fast; no feature pool size)."""
    reader = _DlibReader(Path(path).read_bytes())
    version = reader.int()
    parts = reader.column() // 2
    cascades = reader.int()
    trees = splits = leaves = None
    for _ in range(cascades if full else 1):
        n_trees = reader.int()
        for _ in range(n_trees if full else 1):
            n_splits = reader.int()
            for _ in range(n_splits):
                reader.int(), reader.int(), reader.float()
            n_leaves = reader.int()
            for _ in range(n_leaves):
                reader.column()
            trees, splits, leaves = n_trees, n_splits, n_leaves
    structure = {"version": version, "parts": parts, "cascades": cascades, "trees_per_cascade": trees,
                 "splits_per_tree": splits, "leaves_per_tree": leaves, "feature_pool_size": None}
    if not full:
        return structure
    pools = [0] * reader.int()
    for i in range(len(pools)):
        pools[i] = reader.int()
        for _ in range(pools[i]):
            reader.int()
    for _ in range(reader.int()):
        for _ in range(reader.int()):
            reader.float(), reader.float()
    if reader.pos != len(reader.data):
        raise ValueError(f"{path}: {len(reader.data) - reader.pos} bytes after the shape predictor")
    structure["feature_pool_size"] = max(pools, default=0)
    return structure


def _dlib_int(value: int) -> bytes:
    magnitude = abs(int(value))
    payload = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(payload) | (0x80 if value < 0 else 0)]) + payload


def _dlib_float(value: float) -> bytes:
    """As dlib's float_details: 24-bit mantissa from frexp, trailing zero bytes shifted off."""
    fraction, exponent = math.frexp(float(np.float32(value)))
    mantissa, exponent = int(fraction * (1 << 24)), exponent - 24
    for _ in range(8):
        if mantissa & 0xFF:
            break
        mantissa >>= 8
        exponent += 8
    return _dlib_int(mantissa) + _dlib_int(exponent)


def _column(values) -> bytes:
    return _dlib_int(-len(values)) + _dlib_int(-1) + b"".join(_dlib_float(v) for v in values)


def mean_face_68() -> np.ndarray:
    """A generic 68-point face (iBUG order) in box coordinates [0, 1]: jaw, brows, nose, eyes, mouth."""
    t = np.linspace(0, 1, 17)
    jaw = np.stack([0.02 + 0.96 * t, 0.25 + 0.72 * np.sin(np.pi * t)], 1)
    brow = np.linspace(0, 1, 5)
    brows = [np.stack([x0 + 0.3 * brow, 0.1 - 0.06 * np.sin(np.pi * brow)], 1) for x0 in (0.12, 0.58)]
    bridge = np.stack([np.full(4, 0.5), np.linspace(0.22, 0.52, 4)], 1)
    nostrils = np.stack([np.linspace(0.4, 0.6, 5), 0.6 - 0.03 * np.sin(np.pi * np.linspace(0, 1, 5))], 1)
    angle = np.linspace(0, 2 * np.pi, 6, endpoint=False) + np.pi
    eyes = [np.stack([cx + 0.08 * np.cos(angle), 0.27 + 0.03 * np.sin(angle)], 1) for cx in (0.3, 0.7)]
    outer = np.linspace(0, 2 * np.pi, 12, endpoint=False) + np.pi
    inner = np.linspace(0, 2 * np.pi, 8, endpoint=False) + np.pi
    mouth = [np.stack([0.5 + 0.17 * np.cos(outer), 0.78 + 0.07 * np.sin(outer)], 1),
             np.stack([0.5 + 0.11 * np.cos(inner), 0.78 + 0.03 * np.sin(inner)], 1)]
    points = np.concatenate([jaw, *brows, bridge, nostrils, *eyes, *mouth]).astype(np.float32)
    assert points.shape == (68, 2)
    return points


def write_synthetic_dlib_predictor(path: Path, structure: dict | None = None, seed: int = 0) -> Path:
    """A dlib shape-predictor file with the given structure (default: the real 68-point model's):
    a generic mean face, random split features, zero leaf updates. dlib runs every cascade, tree and
    leaf addition exactly as for the real model, so its speed is the real one's; the points it
    predicts are the mean face placed in the box (for speed measurements only, never for data)."""
    s = dict(DLIB68_STRUCTURE if structure is None else structure)
    rng = np.random.default_rng(seed)
    parts, pool = s["parts"], s["feature_pool_size"]
    shape = mean_face_68() if parts == 68 else rng.random((parts, 2), dtype=np.float32)
    zero_leaf = _column([0.0] * (2 * parts))
    leaves = _dlib_int(s["leaves_per_tree"]) + zero_leaf * s["leaves_per_tree"]
    chunks = [_dlib_int(s["version"]), _column(shape.reshape(-1)), _dlib_int(s["cascades"])]
    for _ in range(s["cascades"]):
        chunks.append(_dlib_int(s["trees_per_cascade"]))
        for _ in range(s["trees_per_cascade"]):
            idx = rng.integers(0, pool, size=(s["splits_per_tree"], 2))
            thresholds = rng.uniform(-40, 40, size=s["splits_per_tree"])
            chunks.append(_dlib_int(s["splits_per_tree"]) + b"".join(
                _dlib_int(a) + _dlib_int(b) + _dlib_float(th) for (a, b), th in zip(idx.tolist(), thresholds.tolist())))
            chunks.append(leaves)
    chunks.append(_dlib_int(s["cascades"]))
    for _ in range(s["cascades"]):
        chunks.append(_dlib_int(pool) + b"".join(_dlib_int(int(a)) for a in rng.integers(0, parts, size=pool)))
    chunks.append(_dlib_int(s["cascades"]))
    for _ in range(s["cascades"]):
        deltas = rng.uniform(-0.1, 0.1, size=(pool, 2))
        chunks.append(_dlib_int(pool) + b"".join(_dlib_float(x) + _dlib_float(y) for x, y in deltas.tolist()))
    from mfrn.io_utils import atomic_write_bytes

    atomic_write_bytes(Path(path), b"".join(chunks))
    return Path(path)


def resolve_predictor(choice: str, work: Path) -> tuple[Path, str]:
    """The 68-point predictor: face-recognition-models' file ("real") or a synthetic one of its structure."""
    from mfrn.faces.backends.dlib_backend import find_model_file

    if choice in ("auto", "real"):
        try:
            return find_model_file("shape_predictor_68_face_landmarks.dat"), "real"
        except FileNotFoundError:
            if choice == "real":
                raise
    return write_synthetic_dlib_predictor(work / "synthetic_shape_predictor_68.dat"), "synthetic"


# --------------------------------------------------------------------------------------------------
# inputs: the astronaut, prepared by mfrn prepare's code; an RBI cache; a synthetic H.264 video


def astronaut_variants(n: int, scales: tuple[float, ...]) -> list[np.ndarray]:
    """scikit-image's astronaut at several scales, mirrored every other round, rotated by -5..5 degrees
    and brightened / darkened a little: distinct frames of one public-domain face."""
    import cv2
    from skimage import data

    base = data.astronaut()
    images = []
    for i in range(n):
        scale = scales[i % len(scales)]
        image = cv2.resize(base, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
        if (i // len(scales)) % 2:
            image = image[:, ::-1]
        height, width = image.shape[:2]
        angle = float((i * 7) % 11 - 5)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
        gain = 0.85 + 0.3 * ((i * 5) % 7) / 6
        images.append(np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8))
    return images


def prepare_astronaut(out: Path, work: Path, plan: Plan, predictor: Path | None, workers: int) -> dict:
    """Astronaut variants through ``run_prepare`` (dlib detector + landmarker), train and val splits."""
    from mfrn.data.prepare import PrepareConfig, WorkItem, run_prepare
    from mfrn.io_utils import atomic_write_image

    images_dir = work / "astronaut"
    images_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for i, image in enumerate(astronaut_variants(plan.faces, plan.face_scales)):
        path = images_dir / f"astronaut_{i:02d}.png"
        atomic_write_image(path, image)
        split = "val" if i >= plan.faces - plan.val_faces else "train"
        items.append(WorkItem(key=f"astronaut/{split}/{i:02d}", path=str(path), split=split, label=0))
    kwargs = {"model_path": str(predictor)} if predictor is not None else {}
    config = PrepareConfig(n_frames=1, detector_kwargs=dict(kwargs), landmarker_kwargs=dict(kwargs))
    summary = run_prepare(items, out, config, workers=workers, progress=False)
    if summary.failed or summary.ok < plan.faces - 1:
        raise RuntimeError(f"preparing the astronaut variants: {summary.format()}")
    return {"items": summary.total, "ok": summary.ok, "faces": summary.faces, "seconds": round(summary.seconds, 2)}


def synthesise_video(path: Path, size: tuple[int, int], frames: int, fps: int = 25) -> Path:
    """An H.264 (crf 23, about FF++ c23) video of the astronaut drifting a few pixels over a noisy
    background: one face per frame, real decoding work."""
    import av
    import cv2
    from skimage import data

    width, height = size
    face = data.astronaut()
    scale = 0.9 * height / face.shape[0] * 1.1
    face = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    face = face[: int(height * 0.92), : min(face.shape[1], width)]
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(40, 200, (height // 8, width // 8, 3), dtype=np.uint8), (5, 5), 0)
    background = cv2.resize(background, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = [rng.normal(0, 2.0, (height, width, 3)).astype(np.float32) for _ in range(4)]
    x0, y0 = (width - face.shape[1]) // 2, (height - face.shape[0]) // 2
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "23", "preset": "veryfast"}
        for t in range(frames):
            dx = int(round(6 * math.sin(2 * math.pi * t / 50)))
            dy = int(round(4 * math.cos(2 * math.pi * t / 40)))
            frame = background.copy()
            ys, xs = max(0, y0 + dy), max(0, x0 + dx)
            frame[ys : ys + face.shape[0], xs : xs + face.shape[1]] = face[: height - ys, : width - xs]
            frame = np.clip(frame.astype(np.float32) + noise[t % len(noise)], 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def section_inputs(ctx: Context, deadline: Deadline) -> dict:
    from mfrn.data.manifest import Manifest

    out = ctx.report.result("inputs")
    ctx.predictor, ctx.predictor_kind = resolve_predictor(ctx.args.predictor, ctx.work)
    out["dlib_predictor"] = (
        "dlib's 68-point model (face-recognition-models)" if ctx.predictor_kind == "real" else
        "SYNTHETIC: a dlib 68-point predictor file of the real model's structure (15 cascades x 500 trees, depth 4, "
        "feature pool 500), zero leaf updates; the real one is not installed. Its speed is the real model's; "
        "its landmarks are a mean face in the box")
    if ctx.predictor_kind == "synthetic":
        ctx.report.note("dlib's 68-point predictor is not installed here: dlib landmarks come from a synthetic "
                        "predictor of the same structure (speed only)")
    prepared = None
    if ctx.args.prepared:
        prepared = Path(ctx.args.prepared)
    elif ctx.args.inputs and (Path(ctx.args.inputs) / "prepared").is_dir():
        prepared = Path(ctx.args.inputs) / "prepared"
    if prepared is not None:
        if not (prepared / "records").is_dir():
            raise FileNotFoundError(f"{prepared}: not a prepared folder (no records/); make it with make-carry")
        settings = json.loads((prepared / "prepare.json").read_text(encoding="utf-8")) if (prepared / "prepare.json").is_file() else {}
        origin = (prepared / "ORIGIN.txt").read_text(encoding="utf-8").strip() if (prepared / "ORIGIN.txt").is_file() else ""
        out["faces_origin"] = f"prepared folder given: {prepared}" + (f" ({origin})" if origin else "")
        out["prepare_settings"] = settings.get("config", settings)
    else:
        prepared = ctx.work / "prepared"
        use = ctx.predictor if ctx.predictor_kind == "synthetic" else None
        workers = min(ctx.plan.prepare_workers, os.cpu_count() or 1)
        out["prepare"] = prepare_astronaut(prepared, ctx.work, ctx.plan, use, workers=workers)
        out["faces_origin"] = (f"synthesised at start: scikit-image's astronaut, {ctx.plan.faces} variants (scales "
                               f"{', '.join(f'{s:g}' for s in ctx.plan.face_scales)}, flips, rotations), prepared by "
                               f"mfrn's run_prepare with dlib ({ctx.predictor_kind} 68-point predictor)")
    ctx.prepared = prepared
    faces = Manifest(prepared).faces()
    out["faces"] = {"train": sum(f.record.split == "train" for f in faces), "val": sum(f.record.split == "val" for f in faces)}
    widths = [f.face.box[2] - f.face.box[0] for f in faces]
    out["face_width_px"] = [round(min(widths)), round(float(np.median(widths))), round(max(widths))] if widths else []
    ctx.report.write()

    # what the eval and data sections need besides the faces; each step on its own, so one failure keeps the other
    errors = []
    for key, make in (("rbi_cache", lambda: _make_rbi_cache(ctx, faces)), ("video", lambda: _make_video(ctx))):
        try:
            out[key] = make()
        except Exception as error:
            out[key] = {"error": _error_text(error)}
            errors.append(f"{key}: {_error_text(error)}")
            _free(ctx.device)
        ctx.report.write()
    if errors:
        raise RuntimeError("; ".join(errors))
    return out


def _make_rbi_cache(ctx: Context, faces: list) -> dict:
    """The RBI cache configs/mfrn_effb4.yaml reads, made by the built-in generator (random weights) on the device."""
    import torch

    from mfrn.synth.rbi import build_cache
    from mfrn.synth.reconstructors.builtin import BuiltinGeneratorConfig, BuiltinReconstructor

    torch.manual_seed(0)
    generator = BuiltinReconstructor(BuiltinGeneratorConfig()).to(ctx.device).eval()
    cache_dir = ctx.work / "rbi_cache"
    variants = ctx.config("mfrn").rbi.variants_per_face
    start = time.perf_counter()
    with torch.inference_mode():
        index = build_cache(faces, generator, cache_dir, variants=variants, batch_size=16, progress=False)
    _sync(ctx.device)
    seconds = time.perf_counter() - start
    made = sum(len(v) for v in index["entries"].values())
    ctx.rbi_cache = cache_dir
    del generator
    _free(ctx.device)
    return {"reconstructions": made, "variants_per_face": variants, "seconds": round(seconds, 2),
            "reconstructions_per_s": round(made / seconds, 1) if seconds > 0 else None,
            "how": "built-in generator (128 px, RANDOM weights: speed only), batch 16, mfrn's build_cache, "
                   "first call (warm-up) included"}


def _make_video(ctx: Context) -> dict:
    """The video the eval section scores, and the face dlib finds on its first frame."""
    from mfrn.data.frames import read_media_frames
    from mfrn.faces.backends.dlib_backend import DlibHogDetector, DlibLandmarker
    from mfrn.faces.base import FaceAnalyzer

    width, height = ctx.plan.video_size
    start = time.perf_counter()
    video = synthesise_video(ctx.work / "astronaut.mp4", ctx.plan.video_size, ctx.plan.video_frames)
    _, frames = read_media_frames(video, 1)
    first = next(iter(frames)).image
    analyzer = FaceAnalyzer(DlibHogDetector(model_path=ctx.predictor), DlibLandmarker(model_path=ctx.predictor))
    found = analyzer(first)
    if not found:
        raise RuntimeError(f"{video}: dlib found no face on the synthesised video's first frame")
    ctx.reference_face = max(found, key=lambda f: f.detection.area).detection
    ctx.video = video
    box = ctx.reference_face.box
    return {"size": f"{width}x{height}", "frames": ctx.plan.video_frames, "fps": 25,
            "codec": "H.264 crf 23 (libx264 veryfast) when PyAV has it",
            "face_box_px": round(float(box[2] - box[0])), "bytes": video.stat().st_size,
            "seconds_to_make": round(time.perf_counter() - start, 2),
            "how": "the astronaut drifting a few pixels over a noisy background, one face per frame"}


def _real_batch(ctx: Context, pairs: int) -> tuple[dict, str]:
    """``pairs`` pairs from the RBI-mix pipeline (the mfrn config's PairDataset), collated as in training."""
    from mfrn.synth.dataset import PairDataset, collate_pairs, split_faces

    if ctx.prepared is None:
        raise RuntimeError("no prepared faces (the inputs section failed or did not run)")
    if ctx.real_batch is None or ctx.real_batch["label"].shape[0] < 2 * pairs:
        from mfrn.data.manifest import Manifest

        config = ctx.config("mfrn")
        faces = split_faces(Manifest(ctx.prepared), "train", config.data.val_fraction, config.data.frames_per_video)
        dataset = PairDataset.from_config(faces, config.sbi, config.rbi, ctx.prepared, config.train.seed, device="cpu")
        ctx.real_batch = collate_pairs([dataset[i % len(dataset)] for i in range(pairs)])
    batch = ctx.real_batch
    n = 2 * pairs
    return {k: batch[k][:n] for k in ("image", "label", "region_map", "boundary_map")}, "a real batch of the RBI-mix pipeline"


def _batch_on_device(ctx: Context, pairs: int, channels_last: bool) -> tuple[object, tuple, str]:
    import torch

    try:
        batch, origin = _real_batch(ctx, pairs)
    except Exception as error:  # the training numbers do not depend on the pixel values
        size = ctx.config("mfrn").sbi.crop.size
        labels = torch.arange(2 * pairs) % 2
        maps = torch.rand(2 * pairs, size, size) * labels[:, None, None]
        batch = {"image": torch.rand(2 * pairs, 3, size, size), "label": labels, "region_map": maps, "boundary_map": maps}
        origin = f"random tensors (no real batch: {_error_text(error)[:200]})"
        if ctx.report is not None:
            ctx.report.note(f"training used {origin}")
    images = batch["image"].to(ctx.device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = tuple(batch[k].to(ctx.device) for k in ("label", "region_map", "boundary_map"))
    return images, targets, origin


def _repeat_batch(images, targets, pairs: int) -> tuple[object, tuple]:
    """The batch tiled to ``pairs`` pairs (for batch sizes larger than the real batch)."""
    import torch

    n = images.shape[0]
    reps = -(-2 * pairs // n)

    def tile(t):
        return torch.cat([t] * reps)[: 2 * pairs]

    tiled = tile(images)
    if images.is_contiguous(memory_format=torch.channels_last) and images.dim() == 4:
        tiled = tiled.contiguous(memory_format=torch.channels_last)
    return tiled, tuple(tile(t) for t in targets)


# --------------------------------------------------------------------------------------------------
# training: the loop's own step function on the project's configs


# what-if rows of the training table (CUDA only, when time is left): the variant's config overrides
VARIANTS = {
    "cudnn.benchmark": (),  # cuDNN's autotuner on (the loop leaves torch.backends.cudnn.benchmark off)
    "backbone efficientnet_b4": ("model.backbone=efficientnet_b4",),  # timm's B4: symmetric padding, not TF "same"
}


class Trainer:
    """Model, loss, optimizer and scaler as ``mfrn.train.loop.train`` builds them (``distributed``: in
    DistributedDataParallel, with SyncBatchNorm on GPUs as the loop does under torchrun); ``step`` is the
    loop's ``_train_step`` (SAM's two passes, AMP, the Bayar projection)."""

    def __init__(self, ctx: Context, model_name: str, precision: str, channels_last: bool, batch: int | None = None,
                 variant: str = "", distributed: bool = False) -> None:
        import torch

        from mfrn.models import build_model
        from mfrn.train.loop import _build_optimizer, place_for_training
        from mfrn.train.losses import DetectionLoss

        self.ctx = ctx
        self.config = ctx.config(model_name, _amp_name(precision), channels_last, batch, extra=VARIANTS.get(variant, ()))
        torch.manual_seed(self.config.train.seed)
        self.model, self.core = place_for_training(build_model(self.config.model).to(ctx.device), self.config,
                                                   ctx.device, distributed)  # as mfrn train places it
        self.model.train()
        self.criterion = DetectionLoss(self.config.loss)
        self.optimizer = _build_optimizer(self.config, self.model.parameters())
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=precision == "fp16")
        self.fp16 = precision == "fp16"
        self.skipped = 0
        self.parameters = sum(p.numel() for p in self.model.parameters())

    def step(self, images, targets) -> float:
        from mfrn.train.loop import _train_step

        scale = self.scaler.get_scale() if self.fp16 else None
        loss = _train_step(self.model, self.core, self.criterion, self.optimizer, self.scaler, images, targets,
                           self.config, self.ctx.device)
        if self.fp16 and self.scaler.get_scale() < scale:
            self.skipped += 1  # an fp16 overflow: the update was skipped (a cheaper step)
        return loss


def time_steps(step: Callable[[], object], device, warmup: int, max_steps: int, deadline: Deadline) -> list[float]:
    """Seconds of each timed step after ``warmup`` untimed ones; stops at ``max_steps`` or the deadline."""
    for _ in range(warmup):
        step()
    _sync(device)
    times: list[float] = []
    while len(times) < max_steps and not (times and deadline.passed()):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _peak_reset(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peaks(device) -> dict:
    import torch

    if device.type != "cuda":
        return {"peak_allocated_gib": None, "peak_reserved_gib": None}
    return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved(device) / 2**30, 2)}


def measure_training(ctx: Context, model_name: str, precision: str, channels_last: bool, deadline: Deadline,
                     pairs: int | None = None, steps: tuple[int, int] | None = None, variant: str = "") -> dict:
    """One row of the training table; ``steps`` = (warm-up, most timed), default the plan's;
    ``variant`` "cudnn.benchmark" turns cuDNN's autotuner on for this row (the loop leaves it off)."""
    import torch

    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = variant == "cudnn.benchmark"
    try:
        return _measure_training(ctx, model_name, precision, channels_last, deadline, pairs, steps, variant)
    finally:
        torch.backends.cudnn.benchmark = benchmark


def _measure_training(ctx: Context, model_name: str, precision: str, channels_last: bool, deadline: Deadline,
                      pairs: int | None, steps: tuple[int, int] | None, variant: str) -> dict:
    plan = ctx.plan
    pairs = pairs or plan.batch
    warmup, most = steps or (plan.warmup_steps, plan.max_timed_steps)
    _free(ctx.device)
    _peak_reset(ctx.device)
    trainer = Trainer(ctx, model_name, precision, channels_last, pairs, variant)
    images, targets, origin = _batch_on_device(ctx, min(pairs, plan.batch), channels_last)
    if pairs > plan.batch:
        images, targets = _repeat_batch(images, targets, pairs)
    try:
        for _ in range(warmup):
            trainer.step(images, targets)
        # fp16: GradScaler starts at 2**16 and halves on each overflow (a skipped, cheaper step): warm up until it settles
        for _ in range(plan.fp16_settle_steps if trainer.fp16 and warmup else 0):
            before = trainer.skipped
            trainer.step(images, targets)
            if trainer.skipped == before:
                break
        trainer.skipped = 0
        times = time_steps(lambda: trainer.step(images, targets), ctx.device, 0, most, deadline.within(plan.step_seconds))
        seconds = float(np.mean(times))
        row = {"model": model_name, "backbone": trainer.config.model.backbone, "precision": precision,
               "channels_last": channels_last, "variant": variant, "pairs": pairs,
               "images_per_step": 2 * pairs, "steps_timed": len(times), "ms_per_step": round(1000 * seconds, 1),
               "ms_per_step_median": round(1000 * float(np.median(times)), 1),
               "images_per_s": round(2 * pairs / seconds, 1), "parameters_m": round(trainer.parameters / 1e6, 2),
               "batch": origin, **_peaks(ctx.device)}
        if trainer.fp16:
            row["fp16_skipped_steps"] = trainer.skipped
        return row
    finally:
        del trainer, images, targets
        _free(ctx.device)


def section_training(ctx: Context, deadline: Deadline) -> dict:
    out = ctx.report.result("training")
    rows = out.setdefault("rows", [])
    out["backbone"] = ctx.config("mfrn").model.backbone
    out["how"] = (f"Each row: configs/{{sbi,mfrn}}_effb4.yaml (backbone {out['backbone']}, pretrained=false; the "
                  "configs train in fp32, bf16 is a switch), the loop's _train_step on one batch "
                  f"kept on the device: SAM's 2 forward+backward passes + SGD step + Bayar projection; "
                  f"{ctx.plan.warmup_steps} warm-up step(s), then up to {ctx.plan.max_timed_steps} timed steps "
                  f"(at most {ctx.plan.step_seconds:g} s); peak = torch.cuda.max_memory_allocated over the timed steps; "
                  "cudnn.benchmark off and TF32 matmul off (torch's defaults, as the loop leaves them)")
    for precision, channels_last in ctx.plan.combos():
        for model_name in ("baseline", "mfrn"):
            label = f"{model_name} {precision}{' channels_last' if channels_last else ''}"
            if deadline.passed():
                rows.append({"model": model_name, "precision": precision, "channels_last": channels_last,
                             "error": "skipped: the section's time budget ran out"})
                continue
            try:
                row = measure_training(ctx, model_name, precision, channels_last, deadline)
                print(f"  training {label}: {row['images_per_s']} img/s, {row['ms_per_step']} ms/step, "
                      f"peak {row['peak_allocated_gib']} GiB", flush=True)
            except Exception as error:
                row = {"model": model_name, "precision": precision, "channels_last": channels_last,
                       "error": _error_text(error)}
                print(f"  training {label}: FAILED {row['error']}", flush=True)
                _free(ctx.device)
            rows.append(row)
            out["ratios"] = training_ratios(rows)
            ctx.report.write()
    # what-if rows at bf16 + channels_last, while time is left (each pair takes about two rows' time)
    for variant in VARIANTS if ctx.cuda else ():
        if deadline.left() < 4 * ctx.plan.step_seconds:
            break
        for model_name in ("baseline", "mfrn"):
            try:
                row = measure_training(ctx, model_name, "bf16", True, deadline, variant=variant)
                print(f"  training {model_name} bf16 channels_last, {variant}: {row['images_per_s']} img/s", flush=True)
            except Exception as error:
                row = {"model": model_name, "precision": "bf16", "channels_last": True, "variant": variant,
                       "error": _error_text(error)}
                _free(ctx.device)
            rows.append(row)
            ctx.report.write()
    out["ratios"] = training_ratios(rows)
    target = [r for r in out["ratios"] if r["precision"] == "bf16" and r["channels_last"] and not r["variant"]]
    out["target"] = {"what": f"MFRN/baseline step time <= {RATIO_TARGET} at bf16 + channels_last",
                     "ratio": target[0]["ratio"] if target else None,
                     "met": (target[0]["ratio"] <= RATIO_TARGET) if target else None}
    return out


def training_ratios(rows: list[dict]) -> list[dict]:
    ratios = []
    for row in rows:
        if row.get("model") != "mfrn" or "ms_per_step" not in row:
            continue
        base = [r for r in rows if r.get("model") == "baseline" and "ms_per_step" in r
                and (r["precision"], r["channels_last"], r.get("variant", "")) == (row["precision"], row["channels_last"],
                                                                                row.get("variant", ""))]
        if base:
            ratios.append({"precision": row["precision"], "channels_last": row["channels_last"],
                           "variant": row.get("variant", ""), "ratio": round(row["ms_per_step"] / base[0]["ms_per_step"], 3)})
    return ratios


def _training_row(ctx: Context, model: str, precision: str, channels_last: bool) -> dict | None:
    for row in ctx.report.result("training").get("rows", []):
        if (row.get("model"), row.get("precision"), row.get("channels_last")) == (model, precision, channels_last) \
                and "images_per_s" in row and not row.get("variant"):
            return row
    return None


# --------------------------------------------------------------------------------------------------
# data pipeline: DataLoader samples/s with N workers against the training rate


def _loader(dataset, batch_size: int, workers: int, pin: bool):
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from mfrn.synth.dataset import collate_pairs

    # the loop's DataLoader settings (mfrn.train.loop.train), with a sampler that never ends
    sampler = RandomSampler(dataset, replacement=True, num_samples=10**7, generator=torch.Generator().manual_seed(0))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                      collate_fn=collate_pairs, pin_memory=pin, persistent_workers=False,
                      timeout=120 if workers else 0)


def loader_rate(dataset, batch_size: int, workers: int, seconds: float, device, cv2_one_thread: bool = False) -> dict:
    """Pairs/s a DataLoader delivers (to the device, as the loop moves them) after its start-up.
    ``cv2_one_thread``: OpenCV held to one thread while the workers fork (they inherit it; calling
    cv2.setNumThreads inside a forked worker can deadlock on the pool the parent started)."""
    import cv2

    pin = device.type == "cuda"
    threads = cv2.getNumThreads()
    if cv2_one_thread:
        cv2.setNumThreads(1)
    start = time.perf_counter()
    try:
        iterator = iter(_loader(dataset, batch_size, workers, pin))
    finally:
        cv2.setNumThreads(threads)
    try:
        next(iterator)
        first_batch_s = time.perf_counter() - start
        for _ in range(2 * max(workers, 1) - 1):  # drain what the workers prefetched while starting
            next(iterator)
        batches, start = 0, time.perf_counter()
        while batches < 2 or time.perf_counter() - start < seconds:
            batch = next(iterator)
            batch["image"].to(device, non_blocking=True)
            batches += 1
        _sync(device)
        elapsed = time.perf_counter() - start
    finally:
        del iterator  # shuts the workers down
    pairs = batches * batch_size / elapsed
    return {"workers": workers, "pairs_per_s": round(pairs, 1), "images_per_s": round(2 * pairs, 1),
            "pairs_per_s_per_worker": round(pairs / max(workers, 1), 1), "first_batch_s": round(first_batch_s, 2),
            "batches_timed": batches}


def section_data_pipeline(ctx: Context, deadline: Deadline) -> dict:
    from mfrn.data.manifest import Manifest
    from mfrn.synth.dataset import PairDataset, split_faces

    if ctx.prepared is None:
        raise RuntimeError("no prepared faces (the inputs section failed or did not run)")
    out = ctx.report.result("data_pipeline")
    out["how"] = ("PairDataset.from_config on the prepared faces, the loop's DataLoader settings (collate_pairs, "
                  "pin_memory on CUDA, persistent_workers off, batch 16 pairs), batches moved to the device; rate "
                  "after the first batch and the workers' prefetch; first_batch_s = worker start-up, paid every epoch "
                  f"(persistent_workers off); {os.cpu_count()} CPUs here")
    rows = out.setdefault("loader", [])
    # the last: what if each worker held OpenCV to one thread (the loop leaves cv2's default, one thread per core)
    most = max(ctx.plan.loader_workers)
    plans = [("rbi_mix", "mfrn", ctx.plan.loader_workers, False), ("sbi", "baseline", ctx.plan.loader_workers_sbi, False),
             ("rbi_mix", "mfrn", (most,), True)]
    for pipeline, model_name, workers_list, one_thread in plans:
        config = ctx.config(model_name)
        faces = split_faces(Manifest(ctx.prepared), "train", config.data.val_fraction, config.data.frames_per_video)
        dataset = PairDataset.from_config(faces, config.sbi, config.rbi, ctx.prepared, config.train.seed, device="cpu")
        what = (f"RBI from the cache with p={config.rbi.probability:g}, else SBI (configs/mfrn_effb4.yaml)"
                if pipeline == "rbi_mix" else "SBI only (configs/sbi_effb4.yaml)")
        if one_thread:
            pipeline, what = "rbi_mix, cv2 1 thread/worker", what + "; cv2.setNumThreads(1) in each worker (NOT what the loop does)"
        for workers in workers_list:
            if deadline.passed():
                rows.append({"pipeline": pipeline, "workers": workers, "error": "skipped: the section's time budget ran out"})
                continue
            try:
                row = {"pipeline": pipeline, "what": what, **loader_rate(dataset, config.data.batch_size, workers,
                                                                          ctx.plan.loader_seconds, ctx.device, one_thread)}
                print(f"  loader {pipeline} {workers} workers: {row['images_per_s']} img/s "
                      f"(start-up {row['first_batch_s']} s)", flush=True)
            except Exception as error:
                row = {"pipeline": pipeline, "workers": workers, "error": _error_text(error)}
            rows.append(row)
            out["margins"] = loader_margins(ctx, rows)
            ctx.report.write()
    out["margins"] = loader_margins(ctx, rows)

    # loader and training step together: the loop's own iteration, at the config's worker count
    config = ctx.config("mfrn")
    workers = config.data.num_workers if not ctx.plan.reduced else ctx.plan.loader_workers[-1]
    if deadline.passed():
        out["end_to_end"] = {"error": "skipped: the section's time budget ran out"}
        return out
    try:
        out["end_to_end"] = end_to_end(ctx, workers, deadline)
        print(f"  loader + training step (MFRN bf16 channels_last, {workers} workers): "
              f"{out['end_to_end']['images_per_s']} img/s", flush=True)
    except Exception as error:
        out["end_to_end"] = {"workers": workers, "error": _error_text(error)}
    _free(ctx.device)
    return out


def loader_margins(ctx: Context, rows: list[dict]) -> list[dict]:
    margins = []
    for precision in ("bf16", "fp32"):
        train = _training_row(ctx, "mfrn", precision, True) if ctx.plan.precisions else None
        if train is None:
            continue
        for row in rows:
            if "images_per_s" in row:
                margins.append({"pipeline": row["pipeline"], "workers": row["workers"],
                                "against": f"MFRN {precision} channels_last", "train_images_per_s": train["images_per_s"],
                                "loader_images_per_s": row["images_per_s"],
                                "margin": round(row["images_per_s"] / train["images_per_s"], 2)})
    return margins


def end_to_end(ctx: Context, workers: int, deadline: Deadline) -> dict:
    import torch

    from mfrn.data.manifest import Manifest
    from mfrn.synth.dataset import PairDataset, split_faces

    precision = "bf16"
    trainer = Trainer(ctx, "mfrn", precision, True)
    config = trainer.config
    faces = split_faces(Manifest(ctx.prepared), "train", config.data.val_fraction, config.data.frames_per_video)
    dataset = PairDataset.from_config(faces, config.sbi, config.rbi, ctx.prepared, config.train.seed, device="cpu")
    iterator = iter(_loader(dataset, config.data.batch_size, workers, ctx.cuda))

    def step() -> None:
        batch = next(iterator)  # as in mfrn.train.loop.train
        images = batch["image"].to(ctx.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        targets = (batch["label"].to(ctx.device), batch["region_map"].to(ctx.device), batch["boundary_map"].to(ctx.device))
        trainer.step(images, targets)

    try:
        times = time_steps(step, ctx.device, max(ctx.plan.warmup_steps, 2 * max(workers, 1) // 4),
                           max(4 * ctx.plan.max_timed_steps, 2), deadline.within(ctx.plan.end_to_end_seconds))
    finally:
        del iterator
    seconds = float(np.mean(times))
    result = {"model": "mfrn", "precision": precision, "channels_last": True, "workers": workers,
              "steps_timed": len(times), "ms_per_step": round(1000 * seconds, 1),
              "images_per_s": round(2 * config.data.batch_size / seconds, 1)}
    compute = _training_row(ctx, "mfrn", precision, True)
    if compute is not None:
        result["compute_only_images_per_s"] = compute["images_per_s"]
        result["share_of_compute_rate"] = round(result["images_per_s"] / compute["images_per_s"], 2)
    del trainer
    return result


# --------------------------------------------------------------------------------------------------
# evaluation: videos/min through mfrn eval's streaming runner, and the model alone


class ReferenceFaceDetector:
    """Runs ``inner`` on every frame, paying its whole cost, then hands on ``reference`` (the face dlib
    found on the first frame) instead of what a random-weight network finds, so that the landmarker,
    the crop and the model see one real face per frame as they would with the real weights."""

    def __init__(self, inner, reference) -> None:
        from mfrn.faces.base import FaceDetector

        class _Wrapped(FaceDetector):
            name = f"{inner.name} (random weights, reference face)"

            def detect(wrapped, image):  # noqa: N805 - the wrapper's own self is `wrapped`
                found = inner.detect(image)
                self.frames += 1
                self.found += len(found)
                return [reference]

        self.frames, self.found = 0, 0
        self.detector = _Wrapped()


def _eval_detector(ctx: Context, name: str) -> tuple[object, str, object]:
    """(face detector, how it was built, counter or None) for the eval path ``name``."""
    import torch

    if name == "dlib":
        from mfrn.faces.backends.dlib_backend import DlibHogDetector

        return DlibHogDetector(model_path=ctx.predictor), f"dlib HOG (CPU) + {ctx.predictor_kind} 68-point predictor", None
    if name == "retinaface":
        from mfrn.faces.backends.retinaface import RetinaFaceDetector, RetinaFaceNet

        weights = ctx.args.retinaface_weights or (Path(ctx.args.inputs) / "Resnet50_Final.pth" if ctx.args.inputs else None)
        if weights and Path(weights).is_file():
            detector = RetinaFaceDetector(weights, device=ctx.device)
            return detector, f"RetinaFace ResNet-50, weights {weights}, long side {detector.config.long_side}", None
        torch.manual_seed(0)
        # SBI's working size (frames resized to a 2048 px long side) on the GPU; the CPU form runs frames as given
        settings = {"long_side": 0} if ctx.plan.reduced else {}
        retinaface = RetinaFaceDetector.from_network(RetinaFaceNet(), device=ctx.device, **settings)
        wrapper = ReferenceFaceDetector(retinaface, ctx.reference_face)
        side = retinaface.config.long_side
        return wrapper.detector, (f"RetinaFace ResNet-50 with RANDOM weights on every frame (speed does not depend on "
                                  f"them), frames at {f'a {side} px long side' if side else 'their own size'}; the face "
                                  "handed on is the one dlib found on the first frame"), wrapper
    if name == "mtcnn":
        from mfrn.faces.backends.mtcnn import MTCNNDetector, ONet, PNet, RNet, locate_mtcnn_weights

        folder = ctx.args.mtcnn_weights or (Path(ctx.args.inputs) / "facenet-pytorch" if ctx.args.inputs else None)
        try:
            folder = locate_mtcnn_weights(folder if folder and Path(folder).is_dir() else None)
            return MTCNNDetector(folder, device=ctx.device), f"MTCNN, facenet-pytorch's weights from {folder}", None
        except FileNotFoundError:
            random_dir = ctx.work / "mtcnn-random"
            random_dir.mkdir(parents=True, exist_ok=True)
            torch.manual_seed(0)
            for file, net in (("pnet.pt", PNet()), ("rnet.pt", RNet()), ("onet.pt", ONet())):
                torch.save(net.state_dict(), random_dir / file)
            wrapper = ReferenceFaceDetector(MTCNNDetector(random_dir, device=ctx.device), ctx.reference_face)
            ctx.report.note("MTCNN ran with RANDOM weights: its cascade's cost depends on how many windows pass each "
                            "stage, so its eval rate is NOT representative (carry facenet-pytorch's weights)")
            return wrapper.detector, ("MTCNN with RANDOM weights (facenet-pytorch's were not found): NOT representative, "
                                      "the cascade's cost depends on the windows it keeps"), wrapper
    raise ValueError(name)


def _budgeted(records: Iterator, deadline: Deadline, limit: int) -> Iterator:
    for number, record in enumerate(records):
        if number >= limit or (number >= 1 and deadline.passed()):
            return
        yield record


def eval_rate(ctx: Context, checkpoint: Path, folder: Path, name: str, deadline: Deadline) -> dict:
    from mfrn.data.readers import build_reader
    from mfrn.evaluate.runner import score_records
    from mfrn.faces.backends.dlib_backend import DlibLandmarker
    from mfrn.faces.base import FaceAnalyzer
    from mfrn.inference import Detector

    face_detector, how, counter = _eval_detector(ctx, name)
    loaded = Detector.from_checkpoint(checkpoint, device=str(ctx.device), warn_uncalibrated=False)
    protocol = loaded.protocol
    protocol.n_frames = ctx.plan.eval_frames
    analyzer = FaceAnalyzer(face_detector, DlibLandmarker(model_path=ctx.predictor), protocol.min_face_area_ratio)
    detector = Detector(loaded.model, loaded.crop, protocol, loaded.preprocessing, loaded.calibration, ctx.device,
                        analyzer)
    records = list(build_reader("folder", folder).records())
    # one video first, untimed: model and detector warm-up (CUDA kernels, cudnn)
    score_records(detector, records[:1], ctx.work / f"eval-{name}-warmup", "folder", progress=False)
    if counter is not None:
        counter.frames = counter.found = 0
    start = time.perf_counter()
    run = score_records(detector, _budgeted(iter(records[1:]), deadline, ctx.plan.eval_videos),
                        ctx.work / f"eval-{name}", "folder", progress=False)
    seconds = time.perf_counter() - start
    row = {"path": name, "how": how, "videos": run.scored, "failed": run.failed, "seconds": round(seconds, 2),
           "videos_per_min": round(run.scored / seconds * 60, 1) if run.scored else None,
           "frames_per_video": ctx.plan.eval_frames}
    if counter is not None and counter.frames:
        row["network_boxes_per_frame"] = round(counter.found / counter.frames, 2)
    return row


def section_evaluation(ctx: Context, deadline: Deadline) -> dict:
    from bench_eval import make_checkpoint, make_folder  # benchmarks/, this script's folder

    if ctx.video is None:
        raise RuntimeError("no video (the inputs section failed or did not run)")
    out = ctx.report.result("evaluation")
    model = ctx.config("mfrn").model  # the paper config's detector (reduced: the tiny one)
    overrides = TINY_MODEL if ctx.plan.reduced else [f"model.backbone={model.backbone}", f"model.input_size={model.input_size}",
                                                       f"sbi.crop.size={model.input_size}"]
    overrides += [f"model.normalize_input={str(model.normalize_input).lower()}", "model.pretrained=false"]
    checkpoint = make_checkpoint(ctx.work / "eval_model.pt", overrides)
    folder = make_folder(ctx.work / "eval_videos", ctx.video, ctx.plan.eval_videos + 1)
    out["how"] = (f"MFRN ({'tiny' if ctx.plan.reduced else f'{model.backbone}, {model.input_size} px'}, RANDOM weights: speed does not "
                  f"depend on them) through mfrn.evaluate.runner.score_records (decode {ctx.plan.eval_frames} evenly "
                  "spaced frames, faces + dlib 68 landmarks, SBI's test crop, batches of 32 crops across videos, "
                  "decoding and detection in a background thread); copies of the synthesised video; one untimed video "
                  "first; the inference core runs the model in fp32, contiguous layout")
    rows = out.setdefault("paths", [])
    per_path = max(ctx.plan.eval_seconds, 1.0)
    for name in ("dlib", "retinaface", "mtcnn"):
        if deadline.passed():
            rows.append({"path": name, "error": "skipped: the section's time budget ran out"})
            continue
        try:
            row = eval_rate(ctx, checkpoint, folder, name, deadline.within(per_path))
            print(f"  eval {name}: {row['videos_per_min']} videos/min at {row['frames_per_video']} frames", flush=True)
        except Exception as error:
            row = {"path": name, "error": _error_text(error)}
            print(f"  eval {name}: FAILED {row['error']}", flush=True)
        rows.append(row)
        _free(ctx.device)
        ctx.report.write()
    try:
        out["model_only"] = inference_rates(ctx, checkpoint, deadline)
    except Exception as error:
        out["model_only"] = {"error": _error_text(error)}
    return out


def inference_rates(ctx: Context, checkpoint: Path, deadline: Deadline) -> dict:
    """Images/s of the model alone: Detector.score_crops as inference runs it (fp32), and a plain
    forward under bf16 autocast + channels_last (what validation runs with the paper config)."""
    import torch

    from mfrn.inference import Detector

    detector = Detector.from_checkpoint(checkpoint, device=str(ctx.device), warn_uncalibrated=False)
    size, batch = detector.image_size, detector.protocol.batch_size
    crops = list(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
    window = ctx.plan.inference_seconds
    times = time_steps(lambda: detector.score_crops(crops), ctx.device, 2, 10**6, deadline.within(window))
    result = {"batch": batch, "input_size": size,
              "score_crops_fp32_images_per_s": round(batch / float(np.mean(times)), 1)}
    model = detector.model.to(memory_format=torch.channels_last)
    images = torch.rand(batch, 3, size, size, device=ctx.device).contiguous(memory_format=torch.channels_last)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast(ctx.device.type, dtype=torch.bfloat16):
            model(images)

    times = time_steps(forward, ctx.device, 2, 10**6, deadline.within(window))
    result["forward_bf16_channels_last_images_per_s"] = round(batch / float(np.mean(times)), 1)
    del detector, model
    _free(ctx.device)
    return result


# --------------------------------------------------------------------------------------------------
# DDP smoke run under torchrun


def _nccl_version() -> str | None:
    try:
        import torch.cuda.nccl as nccl

        version = nccl.version()
    except Exception:  # no NCCL in this build
        return None
    return ".".join(str(v) for v in version) if isinstance(version, tuple) else str(version)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def section_ddp(ctx: Context, deadline: Deadline) -> dict:
    if ctx.prepared is None:
        raise RuntimeError("no prepared faces (the inputs section failed or did not run)")
    backend = "nccl" if ctx.cuda else "gloo"
    out = ctx.report.result("ddp")
    result_path = ctx.work / "ddp_result.json"
    run_dir = ctx.work / "ddp_run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), str(Path(__file__).resolve()), "ddp-worker",
               "--result", str(result_path), "--run-dir", str(run_dir), "--backend", backend,
               "--prepared", str(ctx.prepared), "--rbi-cache", str(ctx.rbi_cache or ""), "--batch", str(ctx.plan.batch),
               "--device", ctx.device.type, *(["--reduced"] if ctx.plan.reduced else [])]
    out["command"] = "torchrun --nproc_per_node 1 benchmarks/gpu_check.py ddp-worker ... (backend " + backend + ")"
    out["how"] = ("under torchrun (1 process): init_process_group(" + backend + ") and an all_reduce; the model in "
                  "DistributedDataParallel (SyncBatchNorm on GPUs, as the loop under torchrun) for 2 steps of the loop's "
                  "_train_step (SAM: both passes all-reduce the gradients); then mfrn.train.loop.train for 1 epoch (configs/mfrn_effb4.yaml, bf16, channels_last, "
                  "validation and checkpoints). At WORLD_SIZE 1 the loop itself sets up no process group and no DDP "
                  "wrapper, so the first part is what exercises " + backend.upper())
    timeout = min(ctx.plan.ddp_timeout_s, max(45.0, deadline.left()))  # pass/fail matters more than the budget
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "4")}
    start = time.perf_counter()
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(REPO))
        rc, stdout, stderr = completed.returncode, completed.stdout, completed.stderr
    except subprocess.TimeoutExpired as expired:
        rc = None
        stdout = expired.stdout.decode(errors="replace") if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        stderr = expired.stderr.decode(errors="replace") if isinstance(expired.stderr, bytes) else (expired.stderr or "")
    out["seconds"] = round(time.perf_counter() - start, 1)
    out["returncode"] = rc
    worker = json.loads(result_path.read_text(encoding="utf-8")) if result_path.is_file() else {}
    out["worker"] = worker
    ok = rc == 0 and worker.get("status") == "ok"
    out["passed"] = ok
    if not ok:
        out["error"] = worker.get("error") or ("timed out after %.0f s" % timeout if rc is None else f"torchrun exit {rc}")
        out["log_tail"] = (stdout[-1500:] + "\n" + stderr[-3000:]).strip()
        raise RuntimeError(f"DDP smoke run failed: {out['error']}")
    return out


def ddp_worker(args: argparse.Namespace) -> int:
    """One torchrun rank: NCCL/gloo + DDP steps of the loop's step function, then the loop itself."""
    import torch
    import torch.distributed as dist

    from mfrn.io_utils import atomic_write_json

    result: dict = {"status": "running", "backend": args.backend, "rank": int(os.environ.get("RANK", -1)),
                    "world_size": int(os.environ.get("WORLD_SIZE", -1))}
    try:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        device = torch.device("cuda", local_rank) if args.device == "cuda" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        start = time.perf_counter()
        dist.init_process_group(backend=args.backend)
        value = torch.ones(1, device=device) * (result["rank"] + 1)
        dist.all_reduce(value)
        result["all_reduce"] = float(value.item())
        result["init_s"] = round(time.perf_counter() - start, 2)
        if device.type == "cuda":
            result["nccl_version"] = _nccl_version()
        plan = Plan.cpu() if args.reduced else Plan.full()
        ctx = Context(args=args, plan=plan, report=None, work=Path(args.run_dir), device=device,
                      prepared=Path(args.prepared), rbi_cache=Path(args.rbi_cache) if args.rbi_cache else None)
        trainer = Trainer(ctx, "mfrn", "bf16", True, args.batch, distributed=True)
        result["sync_batchnorm"] = any(isinstance(m, torch.nn.SyncBatchNorm) for m in trainer.core.modules())
        images, targets, _ = _batch_on_device(ctx, args.batch, True)
        losses = []
        start = time.perf_counter()
        for _ in range(2):
            losses.append(trainer.step(images, targets))
        _sync(device)
        result["ddp_steps"] = {"losses": [round(x, 4) for x in losses], "seconds": round(time.perf_counter() - start, 2),
                               "finite": all(math.isfinite(x) for x in losses)}
        dist.barrier()
        dist.destroy_process_group()
        del trainer, images, targets
        _free(device)

        from mfrn.train.loop import train

        workers = 0 if args.reduced else 4
        config = ctx.config("mfrn", "bf16", True, args.batch,
                            extra=("train.epochs=1", f"train.out_dir={Path(args.run_dir) / 'train'}",
                                   f"data.num_workers={workers}", "data.val_fraction=0.2"))
        start = time.perf_counter()
        trained = train(config, progress=False)
        result["train_loop"] = {"global_step": trained.global_step, "epochs_done": trained.epochs_done,
                                "best_val_auc": trained.best_val_auc, "seconds": round(time.perf_counter() - start, 2),
                                "last_checkpoint": trained.last_checkpoint.is_file(),
                                "best_checkpoint": trained.best_checkpoint is not None, "workers": workers}
        if not result["ddp_steps"]["finite"]:
            raise RuntimeError(f"non-finite losses in the DDP steps: {losses}")
        if trained.global_step < 1 or not trained.last_checkpoint.is_file():
            raise RuntimeError(f"the training loop made {trained.global_step} steps and no last.pt")
        result["status"] = "ok"
    except BaseException as error:  # recorded for the parent; the exit code says it failed
        result["status"] = "failed"
        result["error"] = _error_text(error)
        result["traceback"] = traceback.format_exc()[-3000:]
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        atomic_write_json(Path(args.result), result)
    return 0 if result["status"] == "ok" else 1


# --------------------------------------------------------------------------------------------------
# the largest batch that fits


def section_max_batch(ctx: Context, deadline: Deadline) -> dict:
    import torch

    out = ctx.report.result("max_batch")
    out["how"] = ("MFRN bf16 channels_last, the loop's _train_step on the real batch tiled; 1 warm-up + up to 2 timed "
                  "steps per size; stops at the first out-of-memory")
    rows = out.setdefault("rows", [])
    for pairs in ctx.plan.max_batch_candidates:
        if deadline.passed():
            rows.append({"pairs": pairs, "error": "skipped: the section's time budget ran out"})
            break
        try:
            row = measure_training(ctx, "mfrn", "bf16", True, deadline, pairs=pairs, steps=(1, 2))
            rows.append({k: row[k] for k in ("pairs", "images_per_step", "images_per_s", "ms_per_step",
                                              "peak_allocated_gib", "peak_reserved_gib")})
            print(f"  max batch {pairs}+{pairs}: fits, {row['images_per_s']} img/s, peak {row['peak_allocated_gib']} GiB",
                  flush=True)
        except Exception as error:  # the first failure ends the ladder; cuDNN may report memory as ALLOC_FAILED
            text = _error_text(error)
            oom = isinstance(error, MemoryError) or "out of memory" in text.lower() or "ALLOC_FAILED" in text
            rows.append({"pairs": pairs, "error": "out of memory" if oom else text[:300], "detail": text[:300]})
            _free(ctx.device)
            break
        ctx.report.write()
    fitting = [r for r in rows if "images_per_s" in r]
    out["largest_fitting_pairs"] = max((r["pairs"] for r in fitting), default=None)
    out["first_oom_pairs"] = next((r["pairs"] for r in rows if r.get("error") == "out of memory"), None)
    if ctx.cuda:
        out["device_memory_gib"] = round(torch.cuda.get_device_properties(ctx.device).total_memory / 2**30, 1)
    return out


# --------------------------------------------------------------------------------------------------
# projection for a 100-epoch FF++ run


def section_projection(ctx: Context, deadline: Deadline) -> dict:
    frames = ctx.config("mfrn").data.frames_per_video
    pairs_per_epoch = FFPP_TRAIN_VIDEOS * frames
    val_images = FFPP_VAL_VIDEOS * frames * 2
    training = ctx.report.result("training").get("rows", [])
    data = ctx.report.result("data_pipeline")
    # the loader as the loop runs it: SBI for the baseline, the RBI mix for MFRN
    pipelines = {"baseline": "sbi", "mfrn": "rbi_mix"}
    best = {model: max((r for r in data.get("loader", []) if r.get("pipeline") == pipe and "images_per_s" in r),
                       key=lambda r: r["images_per_s"], default=None) for model, pipe in pipelines.items()}
    forward = ctx.report.result("evaluation").get("model_only", {}).get("forward_bf16_channels_last_images_per_s")
    out = {"assumptions": (f"FF++ train split: {FFPP_TRAIN_VIDEOS} real videos x {frames} frames = {pairs_per_epoch} "
                           f"pairs/epoch ({pairs_per_epoch // 16} steps of 16+16); validation on {FFPP_VAL_VIDEOS} val "
                           f"videos x {frames} frames x 2 = {val_images} images per epoch at the measured bf16 "
                           f"channels_last forward rate ({'counted' if forward else 'not counted: not measured'}); "
                           f"{EPOCHS} epochs, one GPU; the loader's start-up paid every epoch (persistent_workers off); "
                           "the training rate capped by the best measured loader rate (SBI for the baseline, the RBI "
                           "mix for MFRN)")}
    rows = []
    for row in training:
        if "images_per_s" not in row:
            continue
        rate = row["images_per_s"]
        best_loader = best.get(row["model"])
        capped = min(rate, best_loader["images_per_s"]) if best_loader else rate
        epoch_s = 2 * pairs_per_epoch / capped + (val_images / forward if forward else 0.0)
        epoch_s += best_loader["first_batch_s"] if best_loader else 0.0
        rows.append({"model": row["model"], "precision": row["precision"], "channels_last": row["channels_last"],
                     "variant": row.get("variant", ""), "train_images_per_s": rate,
                     "minutes_per_epoch": round(epoch_s / 60, 2), "hours_per_100_epochs": round(EPOCHS * epoch_s / 3600, 2),
                     "data_bound": bool(best_loader and best_loader["images_per_s"] < rate)})
    out["training"] = rows
    evals = [r for r in ctx.report.result("evaluation").get("paths", []) if r.get("videos_per_min")]
    out["ffpp_test_minutes"] = [{"path": r["path"], **{k: round(n / r["videos_per_min"], 1) for k, n in FFPP_TEST_VIDEOS.items()}}
                                for r in evals]
    cache = ctx.report.result("inputs").get("rbi_cache", {})
    if cache.get("reconstructions_per_s"):
        variants = cache.get("variants_per_face", 4)
        faces = (FFPP_TRAIN_VIDEOS + FFPP_VAL_VIDEOS) * frames  # mfrn synth cache: train + val reals, data.frames_per_video
        out["rbi_cache_minutes"] = {
            "what": f"mfrn synth cache with the built-in generator: {FFPP_TRAIN_VIDEOS + FFPP_VAL_VIDEOS} real videos x "
                    f"{frames} frames x {variants} variants (SimSwap, the paper's generator, was not measured)",
            "minutes": round(faces * variants / cache["reconstructions_per_s"] / 60, 1)}
    return out


# --------------------------------------------------------------------------------------------------
# environment


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def section_environment(ctx: Context, deadline: Deadline) -> dict:
    import torch

    out: dict = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                 "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                 "cpus": os.cpu_count(), "platform": platform.platform(),
                 "packages": {name: _version(name) for name in ("torchvision", "timm", "numpy", "opencv-python-headless",
                                                               "scikit-image", "dlib-bin", "av", "albumentations",
                                                               "face-recognition-models", "facenet-pytorch")},
                 "matmul_tf32": torch.backends.cuda.matmul.allow_tf32, "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                 "cudnn_benchmark": torch.backends.cudnn.benchmark}
    try:
        from mfrn.provenance import machine

        out["machine"] = machine()
    except Exception as error:  # provenance is a nicety
        out["machine"] = _error_text(error)
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        out.update({"gpu": props.name, "capability": f"{props.major}.{props.minor}",
                    "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                    "multiprocessors": props.multi_processor_count,
                    "bf16_supported": torch.cuda.is_bf16_supported(),
                    "nccl": _nccl_version()})
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
            out["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        except (OSError, subprocess.SubprocessError) as error:
            out["nvidia_smi"] = _error_text(error)
    else:
        out["gpu"] = None
    return out


# --------------------------------------------------------------------------------------------------
# Markdown


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(data: dict) -> str:
    """The README-ready summary of a gpu_check.json (also: ``gpu_check.py render FILE``)."""
    sections = data.get("sections", {})

    def result(name: str) -> dict:
        return sections.get(name, {}).get("result", {}) or {}

    env = result("environment")
    lines = [f"### GPU check: {env.get('gpu') or 'no GPU'}{' (reduced CPU form)' if data.get('reduced') else ''}", ""]
    lines.append(f"Measured {data.get('started', '?')} on {env.get('machine', '?')}; torch {env.get('torch', '?')} "
                 f"(CUDA {env.get('torch_cuda') or '-'}, cuDNN {env.get('cudnn') or '-'}), Python {env.get('python', '?')}, "
                 f"commit `{data.get('commit', '?')}`, command `{data.get('command', '?')}`. Status: "
                 f"**{data.get('status', '?')}**.")
    inputs = result("inputs")
    if inputs:
        counts = inputs.get("faces", {})
        lines += ["", f"Faces: {inputs.get('faces_origin', '-')}; {counts.get('train', '-')} train / {counts.get('val', '-')} "
                      f"val faces, widths (min, median, max) {inputs.get('face_width_px', '-')} px. dlib predictor: "
                      f"{inputs.get('dlib_predictor', '-')}."]
    training = result("training")
    if training.get("rows"):
        lines += ["", "| model | precision | channels_last | images/s | ms/step | peak GiB (allocated) | MFRN/baseline |",
                  "|---|---|---|---|---|---|---|"]
        ratios = {(r["precision"], r["channels_last"], r.get("variant", "")): r["ratio"] for r in training.get("ratios", [])}
        for row in training["rows"]:
            if "error" in row:
                variant = f" + {row['variant']}" if row.get("variant") else ""
                lines.append(f"| {row['model']} | {row['precision']}{variant} | {_fmt(row['channels_last'])} | "
                             f"{row['error'][:80]} | | | |")
                continue
            ratio = ratios.get((row["precision"], row["channels_last"], row.get("variant", ""))) if row["model"] == "mfrn" else None
            skipped = f" ({row['fp16_skipped_steps']} fp16 steps skipped)" if row.get("fp16_skipped_steps") else ""
            variant = f" + {row['variant']}" if row.get("variant") else ""
            lines.append(f"| {row['model']} | {row['precision']}{variant}{skipped} | {_fmt(row['channels_last'])} | "
                         f"{_fmt(row['images_per_s'])} | {_fmt(row['ms_per_step'])} | {_fmt(row['peak_allocated_gib'], 2)} | "
                         f"{_fmt(ratio, 3) if ratio is not None else ''} |")
        target = training.get("target", {})
        verdict = "met" if target.get("met") else "NOT met" if target.get("met") is False else "not measured"
        if data.get("reduced"):
            verdict += " (reduced form: a tiny model on the CPU, not a measurement of the claim)"
        lines += ["", f"Target {target.get('what', '')}: ratio {_fmt(target.get('ratio'), 3)}, **{verdict}**. "
                      f"{training.get('how', '')}."]
    data_section = result("data_pipeline")
    if data_section.get("loader"):
        margins = {(m["pipeline"], m["workers"], m["against"]): m["margin"] for m in data_section.get("margins", [])}
        against = sorted({m["against"] for m in data_section.get("margins", [])})
        header = "| pipeline | workers | images/s | pairs/s per worker | start-up s |" + "".join(f" margin vs {a} |" for a in against)
        lines += ["", header, "|---|---|---|---|---|" + "---|" * len(against)]
        for row in data_section["loader"]:
            if "error" in row:
                lines.append(f"| {row['pipeline']} | {row['workers']} | {row['error'][:80]} | | |" + " |" * len(against))
                continue
            cells = "".join(f" {_fmt(margins.get((row['pipeline'], row['workers'], a)), 2)}x |" for a in against)
            lines.append(f"| {row['pipeline']} | {row['workers']} | {_fmt(row['images_per_s'])} | "
                         f"{_fmt(row['pairs_per_s_per_worker'])} | {_fmt(row['first_batch_s'], 2)} |{cells}")
        e2e = data_section.get("end_to_end", {})
        if "images_per_s" in e2e:
            lines += ["", f"Loader + training step together (MFRN bf16 channels_last, {e2e['workers']} workers): "
                          f"{_fmt(e2e['images_per_s'])} images/s, {_fmt(e2e.get('share_of_compute_rate'), 2)} of the "
                          "compute-only rate."]
        elif e2e.get("error"):
            lines += ["", f"Loader + training step together: {e2e['error'][:200]}"]
        lines += ["", f"{data_section.get('how', '')}."]
    evaluation = result("evaluation")
    if evaluation.get("paths"):
        lines += ["", "| eval path | videos/min | frames/video | how |", "|---|---|---|---|"]
        for row in evaluation["paths"]:
            if "error" in row:
                lines.append(f"| {row['path']} | failed | | {row['error'][:120]} |")
            else:
                boxes = row.get("network_boxes_per_frame")
                extra = f" (the network kept {boxes} boxes/frame, discarded)" if boxes is not None else ""
                lines.append(f"| {row['path']} | {_fmt(row['videos_per_min'])} | {row['frames_per_video']} | {row['how']}{extra} |")
        model_only = evaluation.get("model_only", {})
        if "score_crops_fp32_images_per_s" in model_only:
            lines += ["", f"Model only at inference (batch {model_only['batch']}, {model_only['input_size']} px): "
                          f"{_fmt(model_only['score_crops_fp32_images_per_s'])} images/s through Detector.score_crops "
                          f"(fp32), {_fmt(model_only.get('forward_bf16_channels_last_images_per_s'))} images/s as a "
                          "bf16 channels_last forward."]
        lines += ["", f"{evaluation.get('how', '')}."]
    ddp = sections.get("ddp", {})
    if ddp and ddp.get("status") != "skipped":
        res = ddp.get("result", {})
        worker = res.get("worker", {})
        verdict = "PASS" if res.get("passed") else f"FAIL ({ddp.get('error') or res.get('error') or ddp.get('status')})"
        lines += ["", f"DDP smoke ({worker.get('backend', '?')}, torchrun --nproc_per_node 1): **{verdict}**; "
                      f"all_reduce {worker.get('all_reduce', '-')}, DDP steps {worker.get('ddp_steps', {}).get('losses', '-')}, "
                      f"train loop {worker.get('train_loop', {}).get('global_step', '-')} step(s) in "
                      f"{worker.get('train_loop', {}).get('seconds', '-')} s."]
    max_batch = result("max_batch")
    if max_batch.get("rows"):
        fits = ", ".join(f"{r['pairs']}+{r['pairs']}: {_fmt(r['images_per_s'])} img/s, {_fmt(r['peak_allocated_gib'], 1)} GiB"
                         for r in max_batch["rows"] if "images_per_s" in r)
        lines += ["", f"Largest batch (MFRN bf16 channels_last): {max_batch.get('largest_fitting_pairs')} pairs fit "
                      f"(first out-of-memory: {max_batch.get('first_oom_pairs') or 'none tried'}); {fits}."]
    projection = result("projection")
    if projection.get("training"):
        lines += ["", "| 100 FF++ epochs | precision | channels_last | hours | data-bound |", "|---|---|---|---|---|"]
        for row in projection["training"]:
            variant = f" + {row['variant']}" if row.get("variant") else ""
            lines.append(f"| {row['model']} | {row['precision']}{variant} | {_fmt(row['channels_last'])} | "
                         f"{_fmt(row['hours_per_100_epochs'], 2)} | {_fmt(row['data_bound'])} |")
        for row in projection.get("ffpp_test_minutes", []):
            lines.append("")
            lines.append(f"FF++ test at the {row['path']} rate: " + ", ".join(
                f"{k}: {v} min" for k, v in row.items() if k != "path"))
        if projection.get("rbi_cache_minutes"):
            cache = projection["rbi_cache_minutes"]
            lines += ["", f"{cache['what']}: {cache['minutes']} min."]
        lines += ["", projection.get("assumptions", "") + "."]
    failures = [(name, s) for name, s in sections.items() if s.get("status") == "failed"]
    if failures:
        lines += ["", "Failed sections:"] + [f"- {name}: {s.get('error', '')[:300]}" for name, s in failures]
    if data.get("notes"):
        lines += ["", "Notes:"] + [f"- {note}" for note in data["notes"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# make-carry: what a device run needs, prepared here


def make_carry(args: argparse.Namespace) -> int:
    """Wheels for the device's python (3.12, x86-64) + astronaut faces prepared with the real predictor
    + MTCNN's weight files, into ``args.dest`` (git-ignored); prints the device command."""
    from mfrn.provenance import commit

    dest = Path(args.dest)
    wheels, inputs = dest / "whl", dest / "inputs"
    wheels.mkdir(parents=True, exist_ok=True)
    pins = []
    for name in CARRIED_PACKAGES:
        version = _version(name)
        if version is None:
            print(f"make-carry: {name} is not installed here: cannot pin its wheel", file=sys.stderr)
            return 2
        pins.append(f"{name}=={version}")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
               DEVICE_PYTHON, "--implementation", "cp", *[x for p in WHEEL_PLATFORMS for x in ("--platform", p)],
               "-d", str(wheels), *pins]
    print("make-carry: " + " ".join(command[2:6]) + " ... " + " ".join(pins), flush=True)
    if subprocess.run(command).returncode != 0:
        print("make-carry: pip download failed (see above)", file=sys.stderr)
        return 1
    plan = Plan.full()
    with tempfile.TemporaryDirectory(prefix="mfrn-carry-") as tmp:
        prepared = inputs / "prepared"
        if prepared.exists():
            shutil.rmtree(prepared)
        summary = prepare_astronaut(prepared, Path(tmp), plan, None, workers=min(4, os.cpu_count() or 1))
    (prepared / "ORIGIN.txt").write_text("scikit-image's astronaut (public domain), %d variants, prepared by mfrn's "
                                         "run_prepare with dlib's real 68-point predictor, commit %s\n"
                                         % (plan.faces, commit()), encoding="utf-8")
    print(f"make-carry: prepared {summary}", flush=True)
    from mfrn.faces.backends.mtcnn import fetch_mtcnn_weights, locate_mtcnn_weights

    try:
        folder = locate_mtcnn_weights()
    except FileNotFoundError:
        folder = fetch_mtcnn_weights()
    target = inputs / "facenet-pytorch"
    target.mkdir(parents=True, exist_ok=True)
    for file in ("pnet.pt", "rnet.pt", "onet.pt"):
        shutil.copy2(folder / file, target / file)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) / 2**20
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True).stdout.split(b"\0")
    repo_size = sum((REPO / p.decode()).stat().st_size for p in tracked if p and (REPO / p.decode()).is_file()) / 2**20
    print(f"make-carry: {dest} holds {size:.1f} MiB; the tracked tree {repo_size:.1f} MiB; the device takes "
          f"{CARRY_LIMIT_MIB} MiB per call in all" + ("  -- TOO LARGE" if size + repo_size > CARRY_LIMIT_MIB else ""))
    rel = os.path.relpath(dest, REPO)
    print("\nDevice run: carry [\"%s\"], timeout_s 420, command:\n" % rel)
    print(f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site {rel}/whl/*.whl "
          f"&& PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --inputs {rel}/inputs "
          f"--commit {shlex.quote(commit())}")
    return 0


# --------------------------------------------------------------------------------------------------
# main


def default_out() -> Path:
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO / "gpu-check"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="subcommands: make-carry [--dest .gpu-check] | render FILE.json | ddp-worker (internal)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: $OUT if set, else gpu-check/)")
    parser.add_argument("--reduced", action="store_true", help="the CPU form: tiny model and sizes, gloo; seconds")
    parser.add_argument("--device", default=None, help="cuda (default of the full run) or cpu (default of --reduced)")
    parser.add_argument("--inputs", type=Path, default=None, help="folder written by make-carry (prepared/, facenet-pytorch/)")
    parser.add_argument("--prepared", type=Path, default=None, help="a prepared folder to use instead of the astronaut")
    parser.add_argument("--mtcnn-weights", type=Path, default=None, help="folder with pnet.pt, rnet.pt, onet.pt")
    parser.add_argument("--retinaface-weights", type=Path, default=None, help="Resnet50_Final.pth (else random weights)")
    parser.add_argument("--predictor", choices=("auto", "real", "synthetic"), default="auto",
                        help="dlib 68-point predictor: installed file, or a synthetic one of its structure (auto: real if installed)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset, e.g. for a rerun")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every time budget")
    parser.add_argument("--commit", default=None, help="the commit measured (the device's copy has no .git)")
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch folder (printed)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "make-carry":
        sub = argparse.ArgumentParser(prog="gpu_check.py make-carry")
        sub.add_argument("--dest", type=Path, default=REPO / ".gpu-check")
        return make_carry(sub.parse_args(argv[1:]))
    if argv and argv[0] == "render":
        if len(argv) != 2:
            print("usage: gpu_check.py render gpu_check.json", file=sys.stderr)
            return 2
        print(render_markdown(json.loads(Path(argv[1]).read_text(encoding="utf-8"))), end="")
        return 0
    if argv and argv[0] == "ddp-worker":
        sub = argparse.ArgumentParser(prog="gpu_check.py ddp-worker")
        for name in ("--result", "--run-dir", "--backend", "--prepared", "--rbi-cache", "--device"):
            sub.add_argument(name, required=name != "--rbi-cache", default="")
        sub.add_argument("--batch", type=int, required=True)
        sub.add_argument("--reduced", action="store_true")
        return ddp_worker(sub.parse_args(argv[1:]))

    args = _parser().parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        print(f"gpu_check: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    import torch

    from mfrn.io_utils import ensure_output_dir
    from mfrn.provenance import commit

    device_name = args.device or ("cpu" if args.reduced else "cuda")
    out_dir = ensure_output_dir(args.out or default_out())
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    data = {"schema": SCHEMA, "status": "running", "reduced": args.reduced, "started": started,
            "command": " ".join(["python", "benchmarks/gpu_check.py", *argv]),
            "commit": args.commit or os.environ.get("MFRN_COMMIT") or commit(REPO), "device": device_name,
            "sections": {}, "notes": []}
    report = Report(out_dir, data)
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        data["status"] = "no_cuda"
        data["notes"].append(f"no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda}): "
                             "nothing measured")
        report.write()
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, built for CUDA {torch.version.cuda}): the full "
              "check needs one; nothing measured (the CPU form: --reduced). Wrote " + str(out_dir / JSON_NAME))
        return 0
    plan = (Plan.cpu if args.reduced else Plan.full)(args.budget_scale)
    work = Path(tempfile.mkdtemp(prefix="mfrn-gpu-check-"))
    ctx = Context(args=args, plan=plan, report=report, work=work, device=torch.device(device_name))
    if ctx.cuda:
        torch.cuda.set_device(ctx.device)
    run_end = time.perf_counter() + plan.total_budget_s
    functions = {"environment": section_environment, "inputs": section_inputs, "training": section_training,
                 "data_pipeline": section_data_pipeline, "evaluation": section_evaluation, "ddp": section_ddp,
                 "max_batch": section_max_batch, "projection": section_projection}
    print(f"gpu_check: device {ctx.device}, {'reduced CPU form' if plan.reduced else 'full run'}, budget "
          f"{plan.total_budget_s:.0f} s, writing {out_dir / JSON_NAME} and {MD_NAME}", flush=True)
    try:
        for name in SECTIONS:
            entry = report.section(name)
            if name not in chosen:
                entry.update(status="skipped", error="not in --sections")
                continue
            budget = plan.budgets_s[name]
            left = run_end - time.perf_counter()
            deadline = Deadline.after(max(1.0, min(budget, left if name != "projection" else budget)))
            entry.update(status="running", budget_s=round(budget, 1))
            report.write()
            start = time.perf_counter()
            print(f"[{name}] budget {budget:.0f} s", flush=True)
            try:
                entry["result"] = functions[name](ctx, deadline) or entry.get("result", {})
                entry["status"] = "ok"
            except Exception as error:
                entry["status"] = "failed"
                entry["error"] = _error_text(error)
                entry["traceback"] = traceback.format_exc()[-4000:]
                print(f"[{name}] FAILED: {entry['error']}", flush=True)
                _free(ctx.device)
            entry["seconds"] = round(time.perf_counter() - start, 1)
            print(f"[{name}] {entry['status']} in {entry['seconds']} s", flush=True)
            report.write()
        failed = [n for n, s in data["sections"].items() if s.get("status") == "failed"]
        data["status"] = "complete" if not failed else f"complete, {len(failed)} section(s) failed: {', '.join(failed)}"
    except KeyboardInterrupt:
        data["status"] = "interrupted"
        raise
    finally:
        data["seconds"] = round(plan.total_budget_s - (run_end - time.perf_counter()), 1)
        report.write()
        if args.keep_work:
            print(f"gpu_check: scratch folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"gpu_check: {data['status']} in {data['seconds']} s; {out_dir / JSON_NAME}, {out_dir / MD_NAME}", flush=True)
    return 0 if data["status"] == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
