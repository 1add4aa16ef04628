"""Perturbations for the robustness protocol, five levels each (1 = mild .. 5 = severe).

DeeperForensics-1.0 style: JPEG quality, H.264 re-encoding (CRF, per video, via PyAV), Gaussian
blur, Gaussian noise and down-scaling. Level 0 is the clean input. Frames are RGB uint8 HxWx3.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

FrameFn = Callable[[list[np.ndarray], float, np.random.Generator], list[np.ndarray]]

# interpretation: mpeg4 quantiser per H.264 level when libx264 is missing (qscale 2..31, higher = worse)
MPEG4_QSCALE_FALLBACK = (6, 10, 16, 24, 31)


@dataclass
class Perturbation:
    """One perturbation family: ``levels[i]`` is the parameter of level i+1."""

    name: str
    levels: list[float]
    parameter: str
    video_level: bool
    _fn: FrameFn

    def apply(self, frames: list[np.ndarray], level: int, seed: int = 0) -> list[np.ndarray]:
        """Perturb ``frames`` at ``level`` (0 = unchanged copies, 1..len(levels)); deterministic for ``seed``."""
        if not 0 <= level <= len(self.levels):
            raise ValueError(f"{self.name}: level must be in 0..{len(self.levels)}, got {level}")
        for frame in frames:
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"{self.name}: frames must be HxWx3 uint8, got {frame.dtype} {frame.shape}")
        if level == 0:
            return [frame.copy() for frame in frames]
        return self._fn(frames, self.levels[level - 1], np.random.default_rng(seed))

    def describe(self, level: int) -> str:
        return f"{self.name} level {level} ({self.parameter}={self.levels[level - 1]:g})" if level else "clean"


def _jpeg(frames: list[np.ndarray], quality: float, rng: np.random.Generator) -> list[np.ndarray]:
    import cv2

    out = []
    for frame in frames:
        ok, buffer = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed at quality {quality}")
        out.append(np.ascontiguousarray(cv2.imdecode(buffer, cv2.IMREAD_COLOR)[:, :, ::-1]))
    return out


def _blur(frames: list[np.ndarray], kernel: float, rng: np.random.Generator) -> list[np.ndarray]:
    import cv2

    k = int(kernel) | 1
    # interpretation: sigma derived from the kernel size as OpenCV does (sigma=0), like DeeperForensics
    return [cv2.GaussianBlur(frame, (k, k), 0) for frame in frames]


def _noise(frames: list[np.ndarray], variance: float, rng: np.random.Generator) -> list[np.ndarray]:
    sigma = float(np.sqrt(variance))  # variance on the [0, 1] intensity scale
    out = []
    for frame in frames:
        noisy = frame.astype(np.float32) / 255.0 + rng.normal(0.0, sigma, frame.shape).astype(np.float32)
        out.append((np.clip(noisy, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    return out


def _downscale(frames: list[np.ndarray], factor: float, rng: np.random.Generator) -> list[np.ndarray]:
    import cv2

    out = []
    for frame in frames:
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        out.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))
    return out


def h264_available() -> bool:
    import av

    return "libx264" in av.codecs_available


def _encoder_settings(crf: float, codec: str | None) -> tuple[str, dict[str, str]]:
    if codec is None:
        codec = "libx264" if h264_available() else "mpeg4"
    if codec == "libx264":
        return codec, {"crf": str(int(crf)), "preset": "medium"}
    if codec == "mpeg4":
        q = _crf_to_qscale(crf)
        return codec, {"qmin": str(q), "qmax": str(q)}
    raise ValueError(f"unsupported codec {codec!r} (libx264 or mpeg4)")


def _crf_to_qscale(crf: float) -> int:
    levels = PERTURBATIONS["h264"].levels
    index = int(np.argmin([abs(crf - level) for level in levels]))
    return MPEG4_QSCALE_FALLBACK[index]


def _encode(frames_iter, out_path: Path, width: int, height: int, crf: float, fps: float, codec: str | None) -> None:
    import av

    codec, options = _encoder_settings(crf, codec)
    if codec != "libx264":
        warnings.warn(f"libx264 is not in PyAV's FFmpeg: re-encoding with {codec} {options} instead of H.264 CRF {crf}")
    # yuv420p needs even sizes: pad by edge replication, crop after decoding
    even_w, even_h = width + width % 2, height + height % 2
    with av.open(str(out_path), "w") as container:
        stream = container.add_stream(codec, rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
        stream.options = options
        for frame in frames_iter:
            if frame.shape[:2] != (height, width):
                raise ValueError(f"all frames must be {height}x{width}, got {frame.shape[:2]}")
            if (even_w, even_h) != (width, height):
                frame = np.pad(frame, ((0, even_h - height), (0, even_w - width), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _decode(path: Path, width: int, height: int) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24")[:height, :width].copy() for frame in container.decode(video=0)]


def reencode_frames(
    frames: list[np.ndarray], crf: float, fps: float = 25.0, codec: str | None = None
) -> list[np.ndarray]:
    """Encode ``frames`` as one H.264 (libx264, CRF ``crf``) mp4 in a temp file and decode it back.

    ``codec=None`` picks libx264, or mpeg4 with a quantiser sweep (and a warning) where it is missing.
    """
    if not frames:
        return []
    height, width = frames[0].shape[:2]
    with tempfile.TemporaryDirectory(prefix="mfrn_h264_") as tmp:
        path = Path(tmp) / "reencoded.mp4"
        _encode(iter(frames), path, width, height, crf, fps, codec)
        decoded = _decode(path, width, height)
    if len(decoded) != len(frames):
        raise RuntimeError(f"re-encoding returned {len(decoded)} frames for {len(frames)}")
    return decoded


def reencode_video_file(
    src: str | os.PathLike, dst: str | os.PathLike, crf: float, codec: str | None = None
) -> Path:
    """Re-encode a video file frame by frame (streaming, constant memory) at CRF ``crf``."""
    import av

    src, dst = Path(src), Path(dst)
    try:
        container = av.open(str(src))
    except (av.error.FFmpegError, OSError) as e:
        raise ValueError(f"cannot open video {src}: {e}") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{src} has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        width, height = stream.codec_context.width, stream.codec_context.height
        frames = (frame.to_ndarray(format="rgb24") for frame in container.decode(stream))
        dst.parent.mkdir(parents=True, exist_ok=True)
        _encode(frames, dst, width, height, crf, fps, codec)
    return dst


def _h264(frames: list[np.ndarray], crf: float, rng: np.random.Generator) -> list[np.ndarray]:
    return reencode_frames(frames, crf)


# interpretation: levels follow DeeperForensics-1.0 where it defines them (blur kernels, noise
# variances, CRF 30..40); JPEG qualities and down-scaling factors are the project's own choice
PERTURBATIONS: dict[str, Perturbation] = {
    "jpeg": Perturbation("jpeg", [90, 70, 50, 30, 10], "quality", False, _jpeg),
    "h264": Perturbation("h264", [30, 32, 35, 38, 40], "crf", True, _h264),
    "blur": Perturbation("blur", [7, 9, 13, 17, 21], "kernel", False, _blur),
    "noise": Perturbation("noise", [0.001, 0.002, 0.005, 0.01, 0.05], "variance", False, _noise),
    "downscale": Perturbation("downscale", [0.75, 0.5, 0.35, 0.25, 0.15], "factor", False, _downscale),
}


def parse_perturbation(text: str) -> Perturbation:
    """``--perturb`` values: a family (``h264``: its five levels) or a family with its own levels
    (``h264:23,30,35,40``, parameter values in increasing severity)."""
    name, _, values = str(text).partition(":")
    name = name.strip()
    if name not in PERTURBATIONS:
        raise ValueError(f"--perturb {text!r}: known families are {', '.join(sorted(PERTURBATIONS))}")
    family = PERTURBATIONS[name]
    if not values.strip():
        return family
    try:
        levels = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--perturb {text!r}: levels must be numbers, e.g. {name}:"
                         f"{','.join(f'{v:g}' for v in family.levels[:3])}") from None
    if not levels:
        raise ValueError(f"--perturb {text!r}: no levels after ':'")
    return replace(family, levels=levels)


def level_folder(perturbation: Perturbation, level: int) -> str:
    """The results folder of one level: the family, its parameter and value (``h264_crf40``)."""
    return f"{perturbation.name}_{perturbation.parameter}{perturbation.levels[level - 1]:g}"


def plot_auc_vs_level(
    results: dict[str, list[float]], path: str | os.PathLike, clean_auc: float | None = None, title: str = "",
    x_values: list[float] | None = None, x_label: str | None = None,
) -> Path:
    """Plot ``{family: [AUC at level 1..5]}`` (AUC in [0, 1]) to a PNG; see ``plots.plot_auc_vs_level``."""
    from mfrn.evaluate.plots import plot_auc_vs_level as _plot

    return _plot(results, path, clean_auc=clean_auc, title=title, x_values=x_values, x_label=x_label)
