"""RetinaFace (Deng et al., 2020) with a ResNet-50 body: the detector of SBI's data protocol.

An independent implementation whose state dict matches, by key names and shapes, the widely used
public checkpoint ``Resnet50_Final.pth`` of biubug6/Pytorch_Retinaface (MIT licence): body =
torchvision ResNet-50 (``body.conv1`` ... ``body.layer4``), FPN (``fpn.output1..3``,
``fpn.merge1..2``), three SSH context modules (``ssh1..3``) and per-level 1x1 heads
(``ClassHead.i``, ``BboxHead.i``, ``LandmarkHead.i``), two anchors per location.

Inputs follow the checkpoint: BGR pixel values minus the mean (104, 117, 123), no scaling.
Each image is first resized so that its longer side is ``long_side`` pixels (SBI: 2048; small frames
are up-scaled, which is what finds their small faces), and the boxes and keypoints are mapped back to
the image as given. Images of one batch are padded (bottom/right) to a common size and run through
the network at once.
"""

from __future__ import annotations

import math
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

CHECKPOINT_HELP = (
    "RetinaFace needs the ResNet-50 checkpoint 'Resnet50_Final.pth' from biubug6/Pytorch_Retinaface "
    "(MIT licence; linked from that repository's README, https://github.com/biubug6/Pytorch_Retinaface). "
    "Download it yourself and pass weights_path=<path to Resnet50_Final.pth>."
)
BGR_MEAN = (104.0, 117.0, 123.0)


# --------------------------------------------------------------------------------------------------
# network


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, relu: bool) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ ReLU): keys ``.0`` conv, ``.1`` batch norm, as in the checkpoint."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))  # the checkpoint's LeakyReLU has slope 0 for 256 channels
    return nn.Sequential(*layers)


class ResNet50Body(nn.Module):
    """torchvision's ResNet-50 without pooling/classifier; returns the strides 8, 16, 32 features."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c3 = self.layer2(x)
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]


class FPN(nn.Module):
    """Top-down pyramid: 1x1 lateral convs, nearest up-sampling, 3x3 merge convs."""

    def __init__(self, in_channels: Sequence[int] = (512, 1024, 2048), out_channels: int = 256) -> None:
        super().__init__()
        self.output1 = _conv_bn(in_channels[0], out_channels, 1, relu=True)
        self.output2 = _conv_bn(in_channels[1], out_channels, 1, relu=True)
        self.output3 = _conv_bn(in_channels[2], out_channels, 1, relu=True)
        self.merge1 = _conv_bn(out_channels, out_channels, 3, relu=True)
        self.merge2 = _conv_bn(out_channels, out_channels, 3, relu=True)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = self.output1(features[0]), self.output2(features[1]), self.output3(features[2])
        p4 = self.merge2(p4 + F.interpolate(p5, size=p4.shape[2:], mode="nearest"))
        p3 = self.merge1(p3 + F.interpolate(p4, size=p3.shape[2:], mode="nearest"))
        return [p3, p4, p5]


class SSH(nn.Module):
    """Context module: 3x3, stacked 3x3 (~5x5) and three stacked 3x3 (~7x7) branches, concatenated."""

    def __init__(self, in_channels: int = 256, out_channels: int = 256) -> None:
        super().__init__()
        if out_channels % 4:
            raise ValueError(f"SSH needs out_channels divisible by 4, got {out_channels}")
        quarter = out_channels // 4
        self.conv3X3 = _conv_bn(in_channels, out_channels // 2, 3, relu=False)
        self.conv5X5_1 = _conv_bn(in_channels, quarter, 3, relu=True)
        self.conv5X5_2 = _conv_bn(quarter, quarter, 3, relu=False)
        self.conv7X7_2 = _conv_bn(quarter, quarter, 3, relu=True)
        self.conv7x7_3 = _conv_bn(quarter, quarter, 3, relu=False)  # lower-case x: the checkpoint's key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5_first = self.conv5X5_1(x)
        branch7 = self.conv7x7_3(self.conv7X7_2(branch5_first))
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(branch5_first), branch7], dim=1))


class _Head(nn.Module):
    """1x1 conv predicting ``values`` numbers per anchor; output (N, H*W*anchors, values)."""

    def __init__(self, in_channels: int, anchors: int, values: int) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(in_channels, anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1x1(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.values)


class RetinaFaceNet(nn.Module):
    """ResNet-50 RetinaFace; ``forward`` returns (box offsets, face scores, landmark offsets) per prior."""

    def __init__(self, out_channels: int = 256, anchors: int = 2) -> None:
        super().__init__()
        self.body = ResNet50Body()
        self.fpn = FPN((512, 1024, 2048), out_channels)
        self.ssh1, self.ssh2, self.ssh3 = SSH(out_channels, out_channels), SSH(out_channels, out_channels), SSH(out_channels, out_channels)
        self.ClassHead = nn.ModuleList(_Head(out_channels, anchors, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(out_channels, anchors, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(_Head(out_channels, anchors, 10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        levels = self.fpn(self.body(x))
        levels = [self.ssh1(levels[0]), self.ssh2(levels[1]), self.ssh3(levels[2])]
        boxes = torch.cat([head(level) for head, level in zip(self.BboxHead, levels)], dim=1)
        logits = torch.cat([head(level) for head, level in zip(self.ClassHead, levels)], dim=1)
        landmarks = torch.cat([head(level) for head, level in zip(self.LandmarkHead, levels)], dim=1)
        return boxes, F.softmax(logits, dim=-1)[..., 1], landmarks


# --------------------------------------------------------------------------------------------------
# priors and decoding


def prior_boxes(
    height: int,
    width: int,
    min_sizes: Sequence[Sequence[int]] = ((16, 32), (64, 128), (256, 512)),
    steps: Sequence[int] = (8, 16, 32),
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Anchors (cx, cy, w, h) in pixels, ordered level -> row -> column -> size, as the heads output."""
    priors = []
    for sizes, step in zip(min_sizes, steps):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy, cx = torch.meshgrid(
            (torch.arange(rows, dtype=torch.float32, device=device) + 0.5) * step,
            (torch.arange(cols, dtype=torch.float32, device=device) + 0.5) * step,
            indexing="ij",
        )
        centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2).expand(-1, len(sizes), 2)
        wh = torch.tensor([[s, s] for s in sizes], dtype=torch.float32, device=device).expand_as(centres)
        priors.append(torch.cat([centres, wh], dim=-1).reshape(-1, 4))
    return torch.cat(priors)


def decode_boxes(offsets: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = (0.1, 0.2)) -> torch.Tensor:
    """SSD box decoding -> (x1, y1, x2, y2) in the priors' units."""
    centres = priors[..., :2] + offsets[..., :2] * variances[0] * priors[..., 2:]
    sizes = priors[..., 2:] * torch.exp(offsets[..., 2:] * variances[1])
    return torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1)


def decode_landmarks(offsets: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = (0.1, 0.2)) -> torch.Tensor:
    """Five points (..., 5, 2) from offsets (..., 10) relative to the priors."""
    points = offsets.reshape(*offsets.shape[:-1], 5, 2)
    return priors[..., None, :2] + points * variances[0] * priors[..., None, 2:]


# --------------------------------------------------------------------------------------------------
# the detector


@dataclass
class RetinaFaceConfig:
    """Settings of the ``retinaface`` detector (defaults: the public ResNet-50 model, SBI's use of it)."""

    weights_path: str = ""  # Resnet50_Final.pth (required)
    device: str = ""  # "" = cuda if available, else cpu
    # SBI keeps detections above 0.7 with NMS 0.4 (the defaults of the retinaface package it calls)
    score_threshold: float = 0.7
    nms_threshold: float = 0.4
    # SBI runs the network on frames resized to a 2048 px longer side, up or down; 0 = as given
    long_side: int = 2048
    max_side: int = 0  # >0: a cap on the working size (images are never run larger than this)
    min_sizes: tuple[tuple[int, int], ...] = ((16, 32), (64, 128), (256, 512))
    steps: tuple[int, ...] = (8, 16, 32)
    variances: tuple[float, float] = (0.1, 0.2)
    top_k: int = 5000  # best-scoring candidates kept per image before NMS


@DETECTORS.register("retinaface")
class RetinaFaceDetector(FaceDetector):
    """ResNet-50 RetinaFace loaded from ``Resnet50_Final.pth``; batched, runs on ``device``."""

    name = "retinaface"
    working_size_option = "long_side"

    def __init__(
        self,
        weights_path: str | Path | None = None,
        device: str | torch.device | None = None,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.4,
        long_side: int = 2048,
        max_side: int = 0,
        min_sizes: Sequence[Sequence[int]] = ((16, 32), (64, 128), (256, 512)),
        steps: Sequence[int] = (8, 16, 32),
        variances: Sequence[float] = (0.1, 0.2),
        top_k: int = 5000,
    ) -> None:
        if not weights_path:
            raise ValueError(f"no weights_path given. {CHECKPOINT_HELP}")
        if long_side < 0 or max_side < 0:
            raise ValueError(f"long_side ({long_side}) and max_side ({max_side}) must be >= 0 (0 = off)")
        if len(min_sizes) != len(steps) or len({len(sizes) for sizes in min_sizes}) != 1:
            raise ValueError(f"min_sizes {min_sizes} must give one equally long list of sizes per step {steps}")
        self.config = RetinaFaceConfig(
            weights_path=str(weights_path), device=str(device or ""), score_threshold=float(score_threshold),
            nms_threshold=float(nms_threshold), long_side=int(long_side), max_side=int(max_side),
            min_sizes=tuple(tuple(int(s) for s in sizes) for sizes in min_sizes), steps=tuple(int(s) for s in steps),
            variances=(float(variances[0]), float(variances[1])), top_k=int(top_k),
        )
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: RetinaFace checkpoint not found. {CHECKPOINT_HELP}")
        self.device = torch.device(device or default_device())
        self.net = RetinaFaceNet(anchors=len(self.config.min_sizes[0]))
        # "module." from DataParallel (Resnet50_Final.pth); "model." from Lightning-style wrappers of the same net
        load_strict(self.net, load_state_dict_file(path, strip_prefixes=("module.", "model.")), path)
        self.net.to(self.device).eval()

    @classmethod
    def from_config(cls, config: RetinaFaceConfig) -> "RetinaFaceDetector":
        return cls(**asdict(config))

    @classmethod
    def from_network(cls, net: RetinaFaceNet, device: str | torch.device | None = None, **settings) -> "RetinaFaceDetector":
        """A detector around an existing network (for example one being fine-tuned); no file is read."""
        detector = cls.__new__(cls)
        detector.config = RetinaFaceConfig(device=str(device or ""), **settings)
        detector.device = torch.device(device or default_device())
        detector.net = net.to(detector.device).eval()
        return detector

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        return self.detect_batch([image])[0]

    @torch.inference_mode()
    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        """Faces in every image; the batch is padded to a common size and goes through the net at once."""
        if len(images) == 0:
            return []
        batch, scales = self._prepare(images)
        offsets, scores, landmark_offsets = self.net(batch)
        priors = prior_boxes(batch.shape[2], batch.shape[3], self.config.min_sizes, self.config.steps, self.device)
        boxes = decode_boxes(offsets, priors, self.config.variances)
        landmarks = decode_landmarks(landmark_offsets, priors, self.config.variances)
        return [
            self._select(boxes[i], scores[i], landmarks[i], scales[i], images[i].shape[:2])
            for i in range(len(images))
        ]

    def working_side(self, height: int, width: int) -> int:
        """The longer side an image of this size is run at: ``long_side`` (0: its own), capped by ``max_side``."""
        side = self.config.long_side or max(height, width)
        return min(side, self.config.max_side) if self.config.max_side > 0 else side

    def _prepare(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[tuple[float, float]]]:
        tensors, scales = [], []
        for index, image in enumerate(images):
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                description = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
                raise ValueError(f"image {index}: expected an RGB uint8 array of shape (H, W, 3), got {description}")
            pixels = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1).float()
            height, width = image.shape[:2]
            scale = (1.0, 1.0)
            target = self.working_side(height, width)
            if target != max(height, width):
                factor = target / max(height, width)
                size = (max(1, round(height * factor)), max(1, round(width * factor)))
                pixels = F.interpolate(pixels[None], size=size, mode="bilinear", align_corners=False,
                                       antialias=factor < 1)[0]
                scale = (size[1] / width, size[0] / height)
            mean = torch.tensor(BGR_MEAN, device=self.device)[:, None, None]
            tensors.append(pixels.flip(0) - mean)  # RGB -> BGR, minus the checkpoint's mean
            scales.append(scale)
        height = max(t.shape[1] for t in tensors)
        width = max(t.shape[2] for t in tensors)
        # zero after mean subtraction = the mean colour, the most neutral padding for this network
        batch = torch.zeros(len(tensors), 3, height, width, device=self.device)
        for i, tensor in enumerate(tensors):
            batch[i, :, : tensor.shape[1], : tensor.shape[2]] = tensor
        return batch, scales

    def _select(
        self, boxes: torch.Tensor, scores: torch.Tensor, landmarks: torch.Tensor, scale: tuple[float, float], shape: tuple[int, int]
    ) -> list[FaceDetection]:
        from torchvision.ops import nms

        keep = torch.nonzero(scores > self.config.score_threshold).flatten()
        if keep.numel() > self.config.top_k:
            keep = keep[scores[keep].topk(self.config.top_k).indices]
        boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
        keep = nms(boxes, scores, self.config.nms_threshold)  # sorted by score, highest first
        factor = torch.tensor(scale, device=boxes.device)  # (x, y) network pixels per image pixel
        boxes = (boxes[keep] / factor.repeat(2)).cpu().numpy()
        landmarks = (landmarks[keep] / factor).cpu().numpy()
        scores_np = scores[keep].cpu().numpy()
        height, width = shape
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        return [
            FaceDetection(box, float(score), points)
            for box, score, points in zip(boxes, scores_np, landmarks)
            if box[2] - box[0] >= 1 and box[3] - box[1] >= 1
        ]
