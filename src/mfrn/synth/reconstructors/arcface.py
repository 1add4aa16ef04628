"""ArcFace identity encoders: an IR-SE-50 network (state dict) and an ONNX model (onnxruntime).

Both take aligned faces (B, 3, S, S) in [0, 1] and return (B, 512) L2-normalised identities.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mfrn.synth.reconstructors.checkpoints import load_state_dict_file, load_strict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCFACE_INPUT_SIZE = 112


class SEModule(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIRSE(nn.Module):
    """Improved residual unit with squeeze-excitation (keys ``shortcut_layer.*``, ``res_layer.*``)."""

    def __init__(self, in_channels: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


# (in, depth, units) per stage of the 50-layer network; the first unit of a stage has stride 2
IR50_STAGES = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))


class IRSE50(nn.Module):
    """IR-SE-50 ArcFace backbone (InsightFace_Pytorch's ``Backbone(50, 0.6, 'ir_se')`` layout), 112x112 input."""

    def __init__(self, embedding_dim: int = 512, drop_ratio: float = 0.6) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units = []
        for in_channels, depth, n_units in IR50_STAGES:
            units.append(BottleneckIRSE(in_channels, depth, 2))
            units.extend(BottleneckIRSE(depth, depth, 1) for _ in range(n_units - 1))
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, embedding_dim),
            nn.BatchNorm1d(embedding_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.output_layer(self.body(self.input_layer(x))), dim=1)


class ArcFaceEncoder(nn.Module):
    """IR-SE-50 with SimSwap's preprocessing: ImageNet mean/std, resize to 112x112, L2-normalised output."""

    dim = 512

    def __init__(self, backbone: IRSE50 | None = None, resize_mode: str = "bilinear") -> None:
        super().__init__()
        self.backbone = backbone if backbone is not None else IRSE50()
        # interpretation: SimSwap resizes with F.interpolate's default (nearest); bilinear with
        # antialiasing is the default here, "nearest" matches SimSwap exactly
        self.resize_mode = resize_mode
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_state_dict_file(cls, path: str | Path, resize_mode: str = "bilinear") -> "ArcFaceEncoder":
        state = load_state_dict_file(path)
        with torch.device("meta"):
            backbone = IRSE50()
        load_strict(backbone, state, path, assign=True)
        return cls(backbone, resize_mode).eval()

    def forward(self, aligned: torch.Tensor) -> torch.Tensor:
        x = (aligned - self.mean) / self.std
        if x.shape[-1] != ARCFACE_INPUT_SIZE or x.shape[-2] != ARCFACE_INPUT_SIZE:
            size = (ARCFACE_INPUT_SIZE, ARCFACE_INPUT_SIZE)
            if self.resize_mode == "nearest":
                x = F.interpolate(x, size=size, mode="nearest")
            else:
                x = F.interpolate(x, size=size, mode=self.resize_mode, align_corners=False, antialias=True)
        return self.backbone(x)


class OnnxArcFaceEncoder(nn.Module):
    """An ONNX ArcFace (e.g. insightface's recognition models) through onnxruntime; not differentiable.

    Preprocessing as insightface does: 112x112, ``(x - 127.5) / 127.5`` on 0..255 pixels, channel order
    per model (``rgb=False`` feeds BGR, as insightface's mxnet-converted models expect).
    """

    dim = 512

    def __init__(self, path: str | Path, rgb: bool = True, providers: list[str] | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError("OnnxArcFaceEncoder needs onnxruntime (pip install onnxruntime)") from error
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX ArcFace model not found: {self.path}")
        self.session = onnxruntime.InferenceSession(str(self.path), providers=providers or ["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"{self.path}: expected one NCHW image input, found {[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        self.rgb = rgb

    @torch.no_grad()
    def forward(self, aligned: torch.Tensor) -> torch.Tensor:
        x = aligned.detach().float()
        if x.shape[-1] != ARCFACE_INPUT_SIZE or x.shape[-2] != ARCFACE_INPUT_SIZE:
            x = F.interpolate(x, size=(ARCFACE_INPUT_SIZE,) * 2, mode="bilinear", align_corners=False, antialias=True)
        if not self.rgb:
            x = x.flip(1)
        x = (x * 255.0 - 127.5) / 127.5
        embedding = self.session.run(None, {self.input_name: x.cpu().numpy().astype(np.float32)})[0]
        embedding = torch.from_numpy(np.asarray(embedding, dtype=np.float32)).reshape(len(x), -1)
        return F.normalize(embedding, dim=1).to(aligned.device)


def load_identity_encoder(path: str | Path, rgb: bool = True, resize_mode: str = "bilinear") -> nn.Module:
    """An ``.onnx`` file -> ``OnnxArcFaceEncoder``; anything else -> IR-SE-50 state dict (``weights_only``)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return OnnxArcFaceEncoder(path, rgb=rgb)
    return ArcFaceEncoder.from_state_dict_file(path, resize_mode=resize_mode)
