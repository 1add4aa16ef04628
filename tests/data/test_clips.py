"""Clips from a prepared folder: faces tracked by box overlap, runs of consecutive frames, clip cuts."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfrn.data.clips import box_iou, clips_from_faces, track_boxes
from mfrn.data.manifest import FaceRecord, FaceSample, FrameRecord, MediaRecord

LEFT, RIGHT = [0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]


def test_box_iou():
    assert box_iou(LEFT, LEFT) == 1.0 and box_iou(LEFT, RIGHT) == 0.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)


def test_tracks_follow_overlap_not_order():
    nudged = [1.0, 0.0, 11.0, 10.0]
    tracks = track_boxes([[LEFT, RIGHT], [RIGHT, nudged], [nudged], [], [LEFT]])
    # the person on the left is box 0, then box 1 (listed second), then box 0; lost in frame 3 for good
    assert tracks == [[0, 1, 0, None, None], [1, 0, None, None, None], [None, None, None, None, 0]]
    far = [[LEFT], [[8.0, 0.0, 18.0, 10.0]]]  # IoU 2/18 < 0.3: another face, not the same one moved
    assert track_boxes(far) == [[0, None], [None, 0]]
    assert track_boxes(far, min_iou=0.1) == [[0, 0]]


def _record(key: str, frames: dict[int, list[list[float]]], clips: dict[int, int] | None = None) -> MediaRecord:
    record = MediaRecord(key=key, source=f"{key}.mp4", status="ok", label=0, split="train")
    for index, boxes in sorted(frames.items()):
        frame = FrameRecord(index, 64, 64, [FaceRecord(f"crops/{key}/{index}_{j}.png", [0, 0, 64, 64], box, 1.0, [], [])
                                            for j, box in enumerate(boxes)])
        if clips is not None:
            frame.clip = clips[index]
        record.frames.append(frame)
    return record


def _faces(*records: MediaRecord) -> list[FaceSample]:
    return [FaceSample(Path("."), r, frame, face) for r in records for frame in r.frames for face in frame.faces]


def test_clips_are_cut_from_tracks_within_runs_of_frames():
    # frames 0..6 consecutive (two people), then 10..12 (one person); a 4-frame clip fits only the first run
    frames = {i: [LEFT, RIGHT] for i in range(7)} | {i: [LEFT] for i in (10, 11, 12)}
    clips = clips_from_faces(_faces(_record("v", frames)), length=3)
    spans = sorted((c.frame_indices, c.faces[0].face.box[0]) for c in clips)
    assert spans == [([0, 1, 2], 0.0), ([0, 1, 2], 20.0), ([3, 4, 5], 0.0), ([3, 4, 5], 20.0), ([10, 11, 12], 0.0)]
    for clip in clips:  # the same person throughout
        assert len({tuple(face.face.box) for face in clip.faces}) == 1 and len(clip) == 3
    assert clips[0].key == "v#0-2"
    assert len(clips_from_faces(_faces(_record("v", frames)), length=4)) == 2
    assert len(clips_from_faces(_faces(_record("v", frames)), length=3, clips_per_video=2)) == 2


def test_stored_clips_split_runs_and_old_folders_use_consecutive_indices():
    frames = {i: [LEFT] for i in range(6)}
    stored = _record("s", frames, clips={0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 1})
    assert [c.frame_indices for c in clips_from_faces(_faces(stored), length=2)] == [[0, 1], [3, 4]]
    assert [c.frame_indices for c in clips_from_faces(_faces(_record("o", frames)), length=2)] == [[0, 1], [2, 3], [4, 5]]
    strided = _record("t", {0: [LEFT], 2: [LEFT], 4: [LEFT]}, clips={0: 0, 2: 0, 4: 0})
    assert [c.frame_indices for c in clips_from_faces(_faces(strided), length=3)] == [[0, 2, 4]]
    with pytest.raises(ValueError, match="length"):
        clips_from_faces([], 0)


def test_clip_frame_indices_are_evenly_spaced_and_never_overlap():
    from mfrn.data.clips import clip_frame_indices

    assert clip_frame_indices(100, 4, 3) == [[0, 1, 2, 3], [48, 49, 50, 51], [96, 97, 98, 99]]
    assert clip_frame_indices(100, 3, 2, stride=2) == [[0, 2, 4], [95, 97, 99]]
    few = clip_frame_indices(10, 4, 5)
    assert len(few) == 2 and not set(few[0]) & set(few[1]) and few[-1][-1] == 9
    assert clip_frame_indices(3, 4, 2) == [[0, 1, 2]]  # shorter than a clip: the frames it has
    assert clip_frame_indices(0, 4, 2) == []
    with pytest.raises(ValueError, match="stride"):
        clip_frame_indices(10, 4, 2, stride=0)
