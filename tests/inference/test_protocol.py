from __future__ import annotations

import numpy as np
import pytest

from mfrn.inference.protocol import ProtocolConfig, aggregate_video, keep_large_faces


def test_defaults_follow_method_md():
    cfg = ProtocolConfig()
    assert (cfg.n_frames, cfg.min_face_area_ratio, cfg.face_aggregation, cfg.frame_aggregation) == (32, 0.5, "max", "mean")
    assert cfg.no_face_score == 0.5 and cfg.tta_flip is False
    line = cfg.describe()
    assert "\n" not in line and "32" in line and "max" in line and "mean" in line and "0.5" in line


def test_max_over_faces_then_mean_over_frames():
    video = aggregate_video([[0.2, 0.9], [0.5], [0.1, 0.3, 0.2]], ProtocolConfig())
    assert video.score == pytest.approx((0.9 + 0.5 + 0.3) / 3)
    assert (video.n_frames, video.n_frames_with_face, video.no_face) == (3, 3, False)
    assert video.frame_scores == [0.9, 0.5, 0.3]


def test_frames_without_face_are_left_out_of_the_mean():
    video = aggregate_video([[], [0.8], [], [0.4]], ProtocolConfig())
    assert video.score == pytest.approx(0.6)
    assert (video.n_frames, video.n_frames_with_face) == (4, 2)
    assert video.frame_scores == [None, 0.8, None, 0.4]


def test_no_face_video_gets_the_configured_score_and_is_flagged():
    video = aggregate_video([[], [], []], ProtocolConfig())
    assert video.score == 0.5 and video.no_face and video.n_frames_with_face == 0 and video.n_frames == 3
    assert aggregate_video([], ProtocolConfig(no_face_score=0.3)).score == 0.3


@pytest.mark.parametrize(
    "rule,expected",
    [("mean", 0.5), ("max", 0.9), ("median", 0.5), ("top_k_mean", 0.8)],
)
def test_frame_aggregation_rules(rule, expected):
    frames = [[0.1], [0.5], [0.9], [0.7], [0.3]]
    assert aggregate_video(frames, ProtocolConfig(frame_aggregation=rule, top_k=2)).score == pytest.approx(expected)


def test_mean_over_faces():
    assert aggregate_video([[0.2, 0.6]], ProtocolConfig(face_aggregation="mean")).score == pytest.approx(0.4)


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="frame_aggregation"):
        ProtocolConfig(frame_aggregation="mode")
    with pytest.raises(ValueError, match="face_aggregation"):
        ProtocolConfig(face_aggregation="min")
    with pytest.raises(ValueError, match="min_face_area_ratio"):
        ProtocolConfig(min_face_area_ratio=2.0)


def test_keep_large_faces():
    np.testing.assert_array_equal(keep_large_faces([100.0, 49.0, 50.0, 80.0], 0.5), [True, False, True, True])
    assert keep_large_faces([], 0.5).size == 0
