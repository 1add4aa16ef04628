"""The inference core: what ``mfrn detect``, ``mfrn eval``, the demo and a server all run.

Data flows one way, one module per stage:

- ``checkpoint``: a checkpoint read for inference (model, crop, protocol, calibration);
- ``media``: files -> sampled frames (what decodes, with a warning); API arrays checked and converted;
- ``detector``: frames -> faces (the analyzer the checkpoint names) -> scores -> ``MediaResult``;
- ``protocol``: the video protocol (faces -> frame score -> file score);
- ``batching``: many files, decoded ahead in a thread, faces of several files per batch;
- ``results``: ``real | fake | no_face`` verdicts and the one result schema (``result_record``);
- ``overlays``: the maps pasted back into frames, drawn, written as PNG/MP4;
- ``writers``: the streamed ``results.jsonl`` and the final ``results.json`` / ``results.csv``.

This package imports nothing from ``mfrn.train``, ``mfrn.evaluate`` or the commands (tested).
"""

from mfrn.checkpoint import Calibration, CheckpointError
from mfrn.inference.detector import CalibrationProtocolWarning, Detector, PendingFaces, UncalibratedCheckpointWarning
from mfrn.inference.protocol import ProtocolConfig, VideoScore, aggregate_video
from mfrn.inference.results import (
    FAKE,
    LABELS,
    NO_FACE,
    REAL,
    RESULT_SCHEMA_VERSION,
    FaceScore,
    FrameResult,
    MediaResult,
    result_record,
)

__all__ = [
    "Calibration", "CalibrationProtocolWarning", "CheckpointError", "Detector", "PendingFaces",
    "UncalibratedCheckpointWarning",
    "ProtocolConfig", "VideoScore", "aggregate_video",
    "FAKE", "LABELS", "NO_FACE", "REAL", "RESULT_SCHEMA_VERSION", "FaceScore", "FrameResult", "MediaResult",
    "result_record",
]
