"""Evaluation: metrics, score files, result tables, robustness, localisation (the video protocol and
the scoring itself are the inference core's, ``mfrn.inference``; re-exported here).

Plots (matplotlib) and the H.264 re-encoder (PyAV) are imported only when used.
"""

from mfrn.evaluate.localisation import LocalisationAccumulator, LocalisationMetrics
from mfrn.evaluate.metrics import BinaryMetrics, binary_metrics
from mfrn.evaluate.robustness import PERTURBATIONS, Perturbation
from mfrn.evaluate.scores import FrameScoreWriter, ScoreWriter, VideoResult, read_frame_scores, read_scores
from mfrn.evaluate.tables import EvalSummary, cross_dataset_table, cross_manipulation_table, evaluate_scores
from mfrn.inference.protocol import ProtocolConfig, VideoScore, aggregate_video, keep_large_faces

__all__ = [
    "BinaryMetrics", "binary_metrics",
    "ProtocolConfig", "VideoScore", "aggregate_video", "keep_large_faces",
    "ScoreWriter", "FrameScoreWriter", "VideoResult", "read_scores", "read_frame_scores",
    "EvalSummary", "evaluate_scores", "cross_manipulation_table", "cross_dataset_table",
    "PERTURBATIONS", "Perturbation",
    "LocalisationAccumulator", "LocalisationMetrics",
]
