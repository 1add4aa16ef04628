"""The one result schema: per file, per frame, per face, with a version; real | fake | no_face."""

from __future__ import annotations

import json

from mfrn.inference.results import (
    RESULT_SCHEMA,
    RESULT_SCHEMA_VERSION,
    FaceScore,
    FrameResult,
    MediaResult,
    result_record,
    verdict,
)

RECORD_KEYS = {"schema", "schema_version", "path", "kind", "status", "label", "score", "threshold", "threshold_rule",
               "no_face", "n_frames", "n_frames_with_face", "warning", "error", "protocol", "overlay", "temporal",
               "timeline", "frames"}


def _result(frames, score, threshold=0.4, **kwargs) -> MediaResult:
    with_face = sum(bool(f.faces) for f in frames)
    return MediaResult(path="v.mp4", kind="video", score=score, frames=frames, n_frames=len(frames),
                       n_frames_with_face=with_face, threshold=threshold, protocol="protocol: test",
                       threshold_rule="EER on validation", **kwargs)


def test_verdicts_at_the_threshold():
    assert verdict(None, 0.5) == "no_face"
    assert verdict(0.4, 0.4) == "fake" and verdict(0.39, 0.4) == "real"


def test_a_scored_video_record_per_file_frame_and_face():
    frames = [FrameResult(0, [FaceScore([1, 2, 30, 40], 0.7), FaceScore([50, 2, 60, 12], 0.2)], time=0.0, score=0.7),
              FrameResult(12, [], time=0.5, score=None)]
    record = result_record(_result(frames, 0.7, warning="partly readable: scored 2 of 4 sampled frames (x)"))
    assert set(record) == RECORD_KEYS
    assert record["schema"] == RESULT_SCHEMA and record["schema_version"] == RESULT_SCHEMA_VERSION == 2
    assert record["status"] == "ok" and record["label"] == "fake" and record["score"] == 0.7
    assert record["threshold"] == 0.4 and record["threshold_rule"] == "EER on validation"
    assert record["warning"].startswith("partly readable") and record["error"] is None
    first, second = record["frames"]
    assert first == {"index": 0, "time": 0.0, "score": 0.7, "label": "fake",
                     "faces": [{"box": [1.0, 2.0, 30.0, 40.0], "score": 0.7, "label": "fake"},
                               {"box": [50.0, 2.0, 60.0, 12.0], "score": 0.2, "label": "real"}]}
    assert second == {"index": 12, "time": 0.5, "score": None, "label": "no_face", "faces": []}
    json.dumps(record, allow_nan=False)  # plain JSON: no NaN, no numpy types


def test_no_face_and_failed_records():
    no_face = result_record(_result([FrameResult(0), FrameResult(5)], None, protocol_score=0.5))
    assert no_face["label"] == "no_face" and no_face["no_face"] and no_face["score"] is None
    failed = result_record(MediaResult.failed("x.mp4", "empty file (0 bytes)", 0.5, "protocol: test"))
    assert set(failed) == RECORD_KEYS
    assert failed["status"] == "failed" and failed["label"] is None and not failed["no_face"]
    assert failed["error"] == "empty file (0 bytes)" and failed["frames"] == []
