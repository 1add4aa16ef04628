"""Clips of consecutive frames of one tracked face, from a prepared folder (what the temporal head trains on).

A clip is T consecutive frames of one video with one face per frame, the same person throughout:
faces are linked from frame to frame by detector-box overlap (``track_boxes``). Frames belong to
one clip when ``mfrn prepare`` stored them as one (``FrameRecord.clip``); in a folder prepared
without clips, runs of consecutive frame indices count as clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mfrn.data.frames import evenly_spaced
from mfrn.data.manifest import FaceSample, FrameRecord, MediaRecord

TRACK_MIN_IOU = 0.3  # a face continues a track when its box overlaps the previous frame's by this IoU


def clip_frame_indices(n_frames: int, length: int, count: int, stride: int = 1) -> list[list[int]]:
    """Frame indices of ``count`` clips of ``length`` frames (``stride`` apart) evenly spaced over a video.

    The first clip starts at frame 0 and the last ends at the last frame that fits; clips never
    overlap, so a short video gets fewer (``n_frames // span`` of them); a video shorter than one clip
    gives the frames it has, as one short clip (usable as frames, too short for the temporal head).
    """
    if min(length, count, stride) < 1:
        raise ValueError(f"clip length, count and stride must be >= 1, got {length}, {count}, {stride}")
    if n_frames <= 0:
        return []
    span = (length - 1) * stride + 1
    if n_frames < span:
        return [list(range(0, n_frames, stride))]
    count = min(count, n_frames // span)
    starts = sorted({int(v) for v in np.rint(np.linspace(0, n_frames - span, count))})
    return [[start + i * stride for i in range(length)] for start in starts]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def track_boxes(frames: Sequence[Sequence[Sequence[float]]], min_iou: float = TRACK_MIN_IOU) -> list[list[int | None]]:
    """Tracks through consecutive frames: ``tracks[k][t]`` is the index of track k's box in frame t, or None.

    Greedy by overlap: in each frame the pairs (track, box) are linked in decreasing IoU with the
    track's last box (from the previous frame), each at least ``min_iou``; an unlinked box starts a
    new track; a track with no box in a frame ends there (a face lost for a frame is not bridged:
    a clip must be consecutive frames).
    """
    tracks: list[list[int | None]] = []
    alive: list[int] = []  # tracks with a box in the previous frame
    for t, boxes in enumerate(frames):
        pairs = sorted(((box_iou(frames[t - 1][tracks[k][t - 1]], box), k, j)  # type: ignore[index]
                        for k in alive for j, box in enumerate(boxes)), key=lambda p: (-p[0], p[1], p[2]))
        linked: dict[int, int] = {}
        for iou, k, j in pairs:
            if iou < min_iou:
                break
            if k not in linked and j not in linked.values():
                linked[k] = j
        for k, track in enumerate(tracks):
            track.append(linked.get(k))
        taken = set(linked.values())
        tracks.extend([None] * t + [j] for j in range(len(boxes)) if j not in taken)
        alive = [k for k, track in enumerate(tracks) if track[t] is not None]
    return tracks


def assign_clips(frames: Sequence[FrameRecord], clips: Sequence[Sequence[int]], min_iou: float = TRACK_MIN_IOU) -> None:
    """What ``mfrn prepare`` stores for clips: each frame's clip number, and per clip a track number on every
    face (the same person, by box overlap, ``track_boxes``). Frames that did not decode are simply absent."""
    by_index = {frame.index: frame for frame in frames}
    for number, indices in enumerate(clips):
        members = [by_index[i] for i in indices if i in by_index]
        for frame in members:
            frame.clip = number
        for track_number, track in enumerate(track_boxes([[face.box for face in f.faces] for f in members], min_iou)):
            for frame, j in zip(members, track):
                if j is not None:
                    frame.faces[j].track = track_number


@dataclass
class ClipSample:
    """T consecutive frames of one video with the same person's face in each: a clip to load."""

    record: MediaRecord
    faces: list[FaceSample]  # one per frame, in frame order

    @property
    def key(self) -> str:
        return f"{self.record.key}#{self.faces[0].frame.index}-{self.faces[-1].frame.index}"

    @property
    def frame_indices(self) -> list[int]:
        return [face.frame.index for face in self.faces]

    def __len__(self) -> int:
        return len(self.faces)

    def load(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per frame: (crop RGB uint8, box (4,), keypoints (5, 2), landmarks (81, 2)) in crop coordinates."""
        return [face.load() for face in self.faces]


def _runs(record: MediaRecord, faces: Sequence[FaceSample]) -> list[list[list[FaceSample]]]:
    """The record's frames (as lists of their faces) grouped into runs: a stored clip, or consecutive indices."""
    by_frame: dict[int, list[FaceSample]] = {}
    for face in faces:
        by_frame.setdefault(face.frame.index, []).append(face)
    clip_of = {frame.index: frame.clip for frame in record.frames}
    runs: list[list[list[FaceSample]]] = []
    previous: int | None = None
    for index in sorted(by_frame):
        stored = clip_of.get(index)
        continues = previous is not None and (
            stored == clip_of.get(previous) if stored is not None else index == previous + 1)
        if continues:
            runs[-1].append(by_frame[index])
        else:
            runs.append([by_frame[index]])
        previous = index
    return runs


def _stored_tracks(run: list[list[FaceSample]]) -> list[list[int | None]] | None:
    """The tracks ``mfrn prepare`` stored for a run of frames (``FaceRecord.track``), or None if it stored none."""
    if any(face.face.track is None for frame in run for face in frame):
        return None
    numbers = sorted({face.face.track for frame in run for face in frame})
    return [[next((j for j, face in enumerate(frame) if face.face.track == number), None) for frame in run]
            for number in numbers]


def clips_from_faces(faces: Sequence[FaceSample], length: int, min_iou: float = TRACK_MIN_IOU,
                     clips_per_video: int = 0) -> list[ClipSample]:
    """Clips of ``length`` frames of one tracked face each, from faces of a manifest (any selection).

    Within each run of frames (``FrameRecord.clip``, else consecutive indices) faces follow the
    tracks ``mfrn prepare`` stored, or are tracked here by box overlap, and every track is cut into
    non-overlapping clips of ``length`` consecutive frames (a remainder shorter than ``length`` is
    not used); ``clips_per_video`` > 0 keeps that many per video, evenly spaced. Clips come out
    sorted by video key, then by first frame.
    """
    if length < 1:
        raise ValueError(f"clip length must be >= 1, got {length}")
    by_video: dict[str, list[FaceSample]] = {}
    for face in faces:
        by_video.setdefault(face.record.key, []).append(face)
    out: list[ClipSample] = []
    for key in sorted(by_video):
        record = by_video[key][0].record
        clips = []
        for run in _runs(record, by_video[key]):
            tracks = _stored_tracks(run) or track_boxes([[face.face.box for face in frame] for frame in run], min_iou)
            for track in tracks:
                members = [run[t][j] if j is not None else None for t, j in enumerate(track)]
                segment: list[FaceSample] = []
                for member in members + [None]:
                    if member is None:
                        clips.extend(ClipSample(record, segment[i:i + length])
                                     for i in range(0, len(segment) - length + 1, length))
                        segment = []
                    else:
                        segment.append(member)
        clips.sort(key=lambda clip: (clip.faces[0].frame.index, clip.faces[0].face.crop_path))
        out.extend(evenly_spaced(clips, clips_per_video))
    return out
