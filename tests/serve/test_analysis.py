"""The worker's analyzer: the inference core with progress reports and face thumbnails, one per worker thread
around one model."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _request(tmp_path, **values):
    from mfrn.serve.analysis import AnalysisRequest

    return AnalysisRequest(name=values.pop("name", "clip.mp4"), overlay_stem=tmp_path / "overlay", overlay_ref="/x/overlay",
                           faces_dir=tmp_path / "faces", **values)


def test_workers_share_one_model_but_not_the_face_analyzer(core_analyzer):
    first, second = core_analyzer.fork(), core_analyzer.fork()
    assert first.detector.model is second.detector.model is core_analyzer.detector.model
    assert first.detector.analyzer is not second.detector.analyzer
    assert first.header is core_analyzer.header  # the checkpoint digest is computed once


def test_progress_is_reported_frame_by_frame(sample_media, core_analyzer, tmp_path):
    from mfrn.inference import Detector

    analyzer = core_analyzer.fork()
    analyzer.detector.protocol = type(analyzer.detector.protocol)(n_frames=6, batch_size=4)
    video = sample_media.single_face_video
    total = analyzer.frames_to_score("video", 72)
    assert total == 6 and analyzer.frames_to_score("image", 1) == 1
    seen = []
    analysis = analyzer.analyze(video, _request(tmp_path, frames_to_score=total), lambda *report: seen.append(report))
    stages = [stage for stage, _ in seen]
    assert stages[0] == "decoding" and stages.count("faces") == 6 and "scoring" in stages and "overlay" in stages
    fractions = [value for _, value in seen]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] < 1
    assert analysis.ok and analysis.overlay.suffix == ".mp4" and analysis.overlay.is_file()
    # the record is the core's own for this file (path and overlay as the request says)
    plain = Detector(analyzer.detector.model, analyzer.detector.crop, analyzer.detector.protocol,
                     analyzer.detector.preprocessing, analyzer.detector.calibration)
    expected = plain.detect_path(video).to_json()
    assert analysis.record["path"] == "clip.mp4" and analysis.record["overlay"] == "/x/overlay"
    assert {k: v for k, v in analysis.record.items() if k not in ("path", "overlay")} == \
           {k: v for k, v in expected.items() if k not in ("path", "overlay")}


def test_thumbnails_are_the_scored_crops_and_bounded(sample_media, core_analyzer, tmp_path):
    from mfrn.io_utils import read_image_rgb

    photo = sample_media.multi_face_images[0]
    analysis = core_analyzer.fork().analyze(photo, _request(tmp_path, name="group.jpg", max_thumbnails=2,
                                                            run_name="abc"), lambda *_: None)
    faces = analysis.record["frames"][0]["faces"]
    assert len(faces) > 2 and len(analysis.faces) == 2  # bounded, spread over the faces found
    for thumbnail in analysis.faces:
        assert thumbnail["file"].startswith("abc-")
        image = read_image_rgb(tmp_path / "faces" / thumbnail["file"])
        assert max(image.shape[:2]) <= 160 and thumbnail["score"] in [face["score"] for face in faces]
