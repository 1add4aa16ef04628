"""MTCNN face detector (Zhang et al., 2016): P-Net -> R-Net -> O-Net cascade, the project's own code.

It loads the MIT-licensed weight files shipped in the PyPI package ``facenet-pytorch``
(``facenet_pytorch/data/{pnet,rnet,onet}.pt``); the module names below match that package's
state-dict keys, so the files load with ``strict=True``. facenet-pytorch itself is never installed
or imported: ``fetch_mtcnn_weights`` downloads its wheel with pip and extracts just the three files.

The whole cascade runs on torch tensors (GPU where there is one): images of the same size are
stacked and go through every stage together; candidate windows are cut with ``roi_align``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mfrn.faces.backends.weights import default_device, load_state_dict_file, load_strict
from mfrn.faces.base import DETECTORS, FaceDetector
from mfrn.faces.types import FaceDetection

WEIGHT_FILES = {"pnet": "pnet.pt", "rnet": "rnet.pt", "onet": "onet.pt"}
FACENET_PYTORCH_VERSION = "2.6.0"


class WeightFetchError(RuntimeError):
    """The weight files could not be downloaded (no network, registry down, pip missing)."""


# --------------------------------------------------------------------------------------------------
# weight files


def default_cache_dir() -> Path:
    """``$MFRN_CACHE/facenet-pytorch`` if ``MFRN_CACHE`` is set, else ``~/.cache/mfrn/facenet-pytorch``."""
    root = os.environ.get("MFRN_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "mfrn") / "facenet-pytorch"


def _has_weights(folder: Path) -> bool:
    return all((folder / name).is_file() for name in WEIGHT_FILES.values())


def locate_mtcnn_weights(weights_dir: str | Path | None = None) -> Path:
    """Folder holding ``pnet.pt``, ``rnet.pt``, ``onet.pt``.

    Looks in ``weights_dir`` (if given, and only there), else in an installed ``facenet_pytorch``
    package (found with ``importlib.util.find_spec``, not imported), else in ``default_cache_dir()``.
    """
    if weights_dir:
        folder = Path(weights_dir)
        missing = [name for name in WEIGHT_FILES.values() if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: MTCNN weight files missing: {', '.join(missing)}")
        return folder
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            if _has_weights(Path(root) / "data"):
                return Path(root) / "data"
    cache = default_cache_dir()
    if _has_weights(cache):
        return cache
    raise FileNotFoundError(
        f"MTCNN weights (pnet.pt, rnet.pt, onet.pt) not found: no weights_dir given, facenet-pytorch is not "
        f"installed, and {cache} does not hold them. Fetch them once with "
        "`python -c 'from mfrn.faces.backends.mtcnn import fetch_mtcnn_weights; fetch_mtcnn_weights()'` "
        "(downloads the facenet-pytorch wheel, MIT licence) or pass auto_fetch=True."
    )


def fetch_mtcnn_weights(cache_dir: str | Path | None = None, version: str = FACENET_PYTORCH_VERSION, timeout_s: float = 300.0) -> Path:
    """Download the facenet-pytorch wheel with pip (no install) and extract the three weight files.

    Returns the folder that holds them (``cache_dir``, default ``default_cache_dir()``). Raises
    ``WeightFetchError`` when pip cannot get the wheel.
    """
    target = Path(cache_dir) if cache_dir else default_cache_dir()
    if _has_weights(target):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mfrn-facenet-") as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", f"facenet-pytorch=={version}", "-d", tmp,
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WeightFetchError(f"pip download of facenet-pytorch=={version} failed: {exc}") from exc
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise WeightFetchError(f"pip download of facenet-pytorch=={version} failed: {' / '.join(tail)}")
        wheels = sorted(Path(tmp).glob("facenet_pytorch-*.whl"))
        if not wheels:
            raise WeightFetchError(f"pip download of facenet-pytorch=={version} produced no wheel in {tmp}")
        _extract_weights(wheels[0], target)
    return target


def _extract_weights(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for filename in WEIGHT_FILES.values():
            member = f"facenet_pytorch/data/{filename}"
            if member not in names:
                raise WeightFetchError(f"{wheel}: has no {member}")
            partial = target / f"{filename}.part"
            partial.write_bytes(archive.read(member))
            load_state_dict_file(partial)  # refuses anything that is not plain tensors
            partial.replace(target / filename)


# --------------------------------------------------------------------------------------------------
# the three networks (attribute names = facenet-pytorch's state-dict keys)


def _flatten_like_checkpoint(x: torch.Tensor) -> torch.Tensor:
    # the weights were converted from a framework that flattens (W, H, C); keep that order
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class PNet(nn.Module):
    """Proposal net: fully convolutional, 12x12 windows at stride 2 -> face probability + box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return F.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """Refinement net on 24x24 crops -> face probability + box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu4(self.dense4(_flatten_like_checkpoint(self.prelu3(self.conv3(x)))))
        return F.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output net on 48x48 crops -> face probability, box offsets, 5 landmarks (x1..x5, y1..y5)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu5(self.dense5(_flatten_like_checkpoint(self.prelu4(self.conv4(x)))))
        return F.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


# --------------------------------------------------------------------------------------------------
# box helpers (boxes are continuous pixel coordinates x1, y1, x2, y2)


def _apply_offsets(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    size = torch.cat([boxes[:, 2:] - boxes[:, :2]] * 2, dim=1)
    return boxes + offsets * size


def _square(boxes: torch.Tensor) -> torch.Tensor:
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(dim=1, keepdim=True).values / 2
    return torch.cat([centre - half, centre + half], dim=1)


def _nms_per_image(boxes: torch.Tensor, scores: torch.Tensor, image_index: torch.Tensor, threshold: float) -> torch.Tensor:
    """IoU NMS within each image; kept indices, highest score first per image.

    One ``torchvision.ops.nms`` call per image rather than ``batched_nms``: its coordinate-offset trick
    rounds boxes of later images differently, so a batch would not reproduce single-image results.
    """
    from torchvision.ops import nms

    keep = [torch.nonzero(image_index == i).flatten() for i in torch.unique(image_index).tolist()]
    keep = [members[nms(boxes[members], scores[members], threshold)] for members in keep]
    return torch.cat(keep) if keep else torch.zeros(0, dtype=torch.long, device=boxes.device)


def _nms_min(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS on intersection over the smaller area (MTCNN's last step), per group; kept indices."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    top_left = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    overlap = inter / torch.minimum(area[:, None], area[None, :]).clamp(min=1e-6)
    overlap = torch.where(groups[:, None] == groups[None, :], overlap, torch.zeros_like(overlap))
    order = scores.argsort(descending=True).tolist()
    overlap = overlap.cpu()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for index in order:
        if suppressed[index]:
            continue
        keep.append(index)
        suppressed |= overlap[index] > threshold
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


@dataclass
class _Candidates:
    boxes: torch.Tensor  # (N, 4)
    scores: torch.Tensor  # (N,)
    image_index: torch.Tensor  # (N,) long: which image of the batch

    def select(self, keep: torch.Tensor) -> "_Candidates":
        return _Candidates(self.boxes[keep], self.scores[keep], self.image_index[keep])


# --------------------------------------------------------------------------------------------------
# the detector


@dataclass
class MTCNNConfig:
    """Settings of the ``mtcnn`` detector (defaults: the MTCNN paper / facenet-pytorch's)."""

    weights_dir: str = ""  # "" = facenet_pytorch package, else default_cache_dir()
    device: str = ""  # "" = cuda if available, else cpu
    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # P-Net, R-Net, O-Net
    scale_factor: float = 0.709
    nms_thresholds: tuple[float, float, float, float] = (0.5, 0.7, 0.7, 0.7)  # per scale, pyramid, R-Net, O-Net
    final_nms: str = "min"  # "min" (intersection over smaller box, as MTCNN) or "iou"
    auto_fetch: bool = False  # download the weights with pip when they are nowhere to be found


@DETECTORS.register("mtcnn")
class MTCNNDetector(FaceDetector):
    """MTCNN cascade with facenet-pytorch's weights; batched, runs on ``device``."""

    name = "mtcnn"

    def __init__(
        self,
        weights_dir: str | Path | None = None,
        device: str | torch.device | None = None,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        nms_thresholds: Sequence[float] = (0.5, 0.7, 0.7, 0.7),
        final_nms: str = "min",
        auto_fetch: bool = False,
    ) -> None:
        if final_nms not in ("min", "iou"):
            raise ValueError(f"final_nms must be 'min' or 'iou', got {final_nms!r}")
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be a positive number of pixels, got {min_face_size}")
        if not 0.0 < scale_factor < 1.0:
            raise ValueError(f"scale_factor must be in (0, 1), got {scale_factor}")
        if len(thresholds) != 3 or len(nms_thresholds) != 4:
            raise ValueError("thresholds needs 3 values (P/R/O-Net), nms_thresholds 4 (scale, pyramid, R-Net, O-Net)")
        self.config = MTCNNConfig(
            weights_dir=str(weights_dir or ""), device=str(device or ""), min_face_size=int(min_face_size),
            thresholds=tuple(float(t) for t in thresholds), scale_factor=float(scale_factor),
            nms_thresholds=tuple(float(t) for t in nms_thresholds), final_nms=final_nms, auto_fetch=bool(auto_fetch),
        )
        self.device = torch.device(device or default_device())
        try:
            folder = locate_mtcnn_weights(weights_dir)
        except FileNotFoundError:
            if not auto_fetch or weights_dir:
                raise
            folder = fetch_mtcnn_weights()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for key, net in (("pnet", self.pnet), ("rnet", self.rnet), ("onet", self.onet)):
            path = folder / WEIGHT_FILES[key]
            load_strict(net, load_state_dict_file(path), path)
            net.to(self.device).eval()

    @classmethod
    def from_config(cls, config: MTCNNConfig) -> "MTCNNDetector":
        return cls(**asdict(config))

    # public API ------------------------------------------------------------------------------------

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        """Faces in every image; images of equal size run through the cascade as one batch."""
        results: list[list[FaceDetection]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            _check_image(image, index)
            groups.setdefault(image.shape, []).append(index)
        for indices in groups.values():
            batch = torch.from_numpy(np.stack([images[i] for i in indices]))
            for index, detections in zip(indices, self._detect_tensor(batch)):
                results[index] = detections
        return results

    # the cascade -----------------------------------------------------------------------------------

    @torch.inference_mode()
    def _detect_tensor(self, batch_hwc: torch.Tensor) -> list[list[FaceDetection]]:
        images = batch_hwc.to(self.device).permute(0, 3, 1, 2).float()
        height, width = images.shape[2:]
        candidates = self._propose(images)
        candidates = self._refine(images, candidates)
        candidates, landmarks = self._output(images, candidates)
        return _to_detections(candidates, landmarks, len(images), width, height)

    def _scales(self, height: int, width: int) -> list[float]:
        scale = 12.0 / self.config.min_face_size
        side = min(height, width) * scale
        scales = []
        while side >= 12:
            scales.append(scale)
            scale *= self.config.scale_factor
            side *= self.config.scale_factor
        return scales

    def _propose(self, images: torch.Tensor) -> _Candidates:
        height, width = images.shape[2:]
        found = []
        for scale in self._scales(height, width):
            size = (int(height * scale + 1), int(width * scale + 1))
            resized = F.interpolate(images, size=size, mode="area")
            prob, offsets = self.pnet(_normalise(resized))
            image_index, row, col = torch.nonzero(prob >= self.config.thresholds[0], as_tuple=True)
            if image_index.numel() == 0:
                continue
            # P-Net cell (row, col) looks at the 12x12 window starting at (2 col, 2 row) of the resized image
            scale_x, scale_y = size[1] / width, size[0] / height
            x1, y1 = 2.0 * col / scale_x, 2.0 * row / scale_y
            boxes = torch.stack([x1, y1, x1 + 12.0 / scale_x, y1 + 12.0 / scale_y], dim=1)
            scores = prob[image_index, row, col]
            keep = _nms_per_image(boxes, scores, image_index, self.config.nms_thresholds[0])
            found.append((boxes[keep], scores[keep], image_index[keep], offsets[image_index, :, row, col][keep]))
        if not found:
            return _empty(images.device)
        boxes, scores, image_index, offsets = (torch.cat(parts) for parts in zip(*found))
        # as in MTCNN: suppress across the pyramid on the raw windows, then regress and square
        keep = _nms_per_image(boxes, scores, image_index, self.config.nms_thresholds[1])
        return _Candidates(_square(_apply_offsets(boxes[keep], offsets[keep])), scores[keep], image_index[keep])

    def _refine(self, images: torch.Tensor, candidates: _Candidates) -> _Candidates:
        if candidates.boxes.shape[0] == 0:
            return candidates
        prob, offsets = self.rnet(_crops(images, candidates, 24))
        keep = torch.nonzero(prob > self.config.thresholds[1]).flatten()
        candidates = _Candidates(candidates.boxes[keep], prob[keep], candidates.image_index[keep])
        offsets = offsets[keep]
        keep = _nms_per_image(candidates.boxes, candidates.scores, candidates.image_index, self.config.nms_thresholds[2])
        candidates, offsets = candidates.select(keep), offsets[keep]
        candidates.boxes = _square(_apply_offsets(candidates.boxes, offsets))
        return candidates

    def _output(self, images: torch.Tensor, candidates: _Candidates) -> tuple[_Candidates, torch.Tensor]:
        if candidates.boxes.shape[0] == 0:
            return candidates, torch.zeros(0, 5, 2, device=images.device)
        prob, offsets, points = self.onet(_crops(images, candidates, 48))
        keep = torch.nonzero(prob > self.config.thresholds[2]).flatten()
        boxes, offsets, points = candidates.boxes[keep], offsets[keep], points[keep]
        # landmarks are relative to the O-Net input window, i.e. the box before regression
        size = boxes[:, 2:] - boxes[:, :2]
        landmarks = torch.stack([points[:, :5], points[:, 5:]], dim=2) * size[:, None, :] + boxes[:, None, :2]
        candidates = _Candidates(_apply_offsets(boxes, offsets), prob[keep], candidates.image_index[keep])
        threshold = self.config.nms_thresholds[3]
        if self.config.final_nms == "min":
            keep = _nms_min(candidates.boxes, candidates.scores, candidates.image_index, threshold)
        else:
            keep = _nms_per_image(candidates.boxes, candidates.scores, candidates.image_index, threshold)
        return candidates.select(keep), landmarks[keep]


def _check_image(image: np.ndarray, index: int) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        description = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image {index}: expected an RGB uint8 array of shape (H, W, 3), got {description}")


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) * 0.0078125


def _crops(images: torch.Tensor, candidates: _Candidates, size: int) -> torch.Tensor:
    """Candidate windows resized to ``size`` x ``size``, outside the image black (as MTCNN pads)."""
    from torchvision.ops import roi_align

    rois = torch.cat([candidates.image_index[:, None].to(images.dtype), candidates.boxes], dim=1)
    # interpretation: roi_align with adaptive sampling averages over each output cell, close to MTCNN's area resize
    return _normalise(roi_align(images, rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True))


def _empty(device: torch.device) -> _Candidates:
    return _Candidates(torch.zeros(0, 4, device=device), torch.zeros(0, device=device), torch.zeros(0, dtype=torch.long, device=device))


def _to_detections(candidates: _Candidates, landmarks: torch.Tensor, batch_size: int, width: int, height: int) -> list[list[FaceDetection]]:
    boxes = candidates.boxes.cpu().numpy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    scores = candidates.scores.cpu().numpy()
    points = landmarks.cpu().numpy()
    image_index = candidates.image_index.cpu().numpy()
    results: list[list[FaceDetection]] = [[] for _ in range(batch_size)]
    for i in np.argsort(-scores, kind="stable"):
        if boxes[i, 2] - boxes[i, 0] < 1 or boxes[i, 3] - boxes[i, 1] < 1:
            continue
        results[image_index[i]].append(FaceDetection(boxes[i], float(scores[i]), points[i]))
    return results
