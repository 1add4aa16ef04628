"""Temporal checkpoints in the inference core: clips tracked and scored beside the frame timeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mfrn.inference import Detector

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def temporal_detector(tiny_temporal_checkpoint):
    return Detector.from_checkpoint(tiny_temporal_checkpoint, device="cpu", warn_uncalibrated=False)


def test_a_video_gets_clip_scores_beside_its_frame_scores(temporal_detector, sample_media):
    detector = temporal_detector
    assert detector.temporal_model is not None and detector.model is detector.temporal_model.frame
    assert detector.clip_length == 3 and "2 clips of 3 consecutive frames" in detector.describe_temporal()
    result = detector(sample_media.single_face_video)
    assert result.n_frames == 2 and result.score is not None  # the frame timeline, by the frame detector
    temporal = result.temporal
    assert len(temporal.clips) == 2 and temporal.n_scored == 2
    for clip in temporal.clips:
        assert np.diff(clip.frames).tolist() == [1, 1]  # consecutive frames
        assert len(clip.track_scores) == 1 and 0.0 <= clip.score <= 1.0  # one person, tracked through the clip
    assert temporal.clips[0].frames[0] == 0 and temporal.clips[-1].frames[-1] == 71  # spread over the video
    assert temporal.score == pytest.approx(np.mean([c.score for c in temporal.clips]))
    record = json.loads(json.dumps(result.to_json()))
    assert record["temporal"]["n_clips_scored"] == 2 and record["temporal"]["clips"][1]["last_frame"] == 71
    image = detector(sample_media.single_face_images[0])
    assert image.temporal.score is None and image.temporal.warning == "an image has no clips"


def test_a_face_lost_within_every_clip_gives_no_temporal_score(temporal_detector, sample_media, monkeypatch):
    detector = temporal_detector
    real = detector.analyzer
    calls = {"n": 0}

    def every_second_frame(image):  # the face disappears on every other frame: no track spans a clip
        calls["n"] += 1
        return real(image) if calls["n"] % 2 else []

    monkeypatch.setattr(detector, "_analyzer", every_second_frame)
    pending = detector.collect_clips(sample_media.single_face_video)
    result = detector.score_clips(pending)
    assert result.score is None and result.n_scored == 0
    assert result.protocol_score == detector.protocol.no_face_score


def test_detect_prints_the_temporal_score_and_draws_the_timeline(tiny_temporal_checkpoint, sample_media, tmp_path,
                                                                 capsys):
    from mfrn.cli import main

    out = tmp_path / "detect"
    assert main(["detect", str(sample_media.single_face_video), "-m", str(tiny_temporal_checkpoint), "-o", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "temporal P(fake) = " in printed and "over 2/2 clips of 3 frames" in printed
    record = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"][0]
    assert record["temporal"]["score"] is not None
    from mfrn.io_utils import read_image_rgb

    timeline = read_image_rgb(record["timeline"])
    assert timeline.shape[1] == 720 and (timeline != 255).any()
