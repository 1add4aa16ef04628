"""The temporal score of a video: K clips of T consecutive frames, each face tracked through a clip and
scored by the temporal head (``model.temporal``), beside the frame timeline of the same video.

Per video: ``clips_per_video`` clips of the checkpoint's ``clip.length`` consecutive frames, evenly
spaced (``mfrn.data.clips.clip_frame_indices``; only those frames are decoded, by seeking); faces
found on every frame with the detector's face pipeline, linked from frame to frame by box overlap
(``track_boxes``, as ``mfrn prepare`` tracks them); every face tracked through the whole clip is
cropped as at test time on each frame and scored as one clip. The protocol's rules then apply to
clips as to frames: the clip's score is the face aggregation over its tracks (max by default), the
video's the frame aggregation over its scored clips (mean by default); a video without one complete
track gets no temporal score (``None``, counted), the protocol's no-face score for AUCs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mfrn.inference.protocol import aggregate_video


@dataclass
class ClipScore:
    """One clip of a video: its frames and the temporal head's P(fake) for each face tracked through it."""

    frames: list[int]
    track_scores: list[float] = field(default_factory=list)
    score: float | None = None  # the face aggregation over ``track_scores``; None: no complete track
    times: tuple[float | None, float | None] = (None, None)  # seconds of its first and last frame

    def to_json(self) -> dict:
        return {"first_frame": int(self.frames[0]), "last_frame": int(self.frames[-1]), "n_frames": len(self.frames),
                "start_time": self.times[0], "end_time": self.times[1], "score": self.score,
                "track_scores": [float(s) for s in self.track_scores]}


@dataclass
class TemporalResult:
    """The temporal head's verdict material for one video."""

    score: float | None  # aggregated over the scored clips; None when no clip had a complete track
    clips: list[ClipScore]
    clip_length: int
    protocol_score: float | None = None  # what AUCs count (no clip scored -> the protocol's no-face score)
    warning: str | None = None

    @property
    def n_scored(self) -> int:
        return sum(clip.score is not None for clip in self.clips)

    def to_json(self) -> dict:
        return {"score": self.score, "clip_length": self.clip_length, "n_clips": len(self.clips),
                "n_clips_scored": self.n_scored, "warning": self.warning,
                "clips": [clip.to_json() for clip in self.clips]}


@dataclass
class PendingClips:
    """A video's clips with their tracked face crops, found (in a background thread) but not yet scored."""

    clips: list[ClipScore]
    tracks: list[np.ndarray | list]  # per clip: (n_tracks, T, S, S, 3) uint8 crops, or an empty list
    clip_length: int
    warning: str | None = None  # why there are no clips (an image; a video whose clip frames do not decode)


def describe(clip_length: int, clips_per_video: int) -> str:
    return (f"temporal: {clips_per_video} clips of {clip_length} consecutive frames per video, faces tracked by box "
            "overlap through each clip and scored as clips; the protocol's face / frame aggregation over tracks / clips")


def collect_clips(detector, path: Path | str, transform=None) -> PendingClips:
    """Decode the clips' frames of a video (seeking), find and track faces, cut the test crops.

    ``transform`` changes each clip's decoded frames (a list of ``Frame``) first, as ``score_media``'s does."""
    from mfrn.data.clips import clip_frame_indices, track_boxes
    from mfrn.data.frames import VideoReader
    from mfrn.faces.crop import test_crop

    from mfrn.data.media import MediaError, is_image

    length, count = detector.clip_length, detector.protocol.clips_per_video
    if is_image(path):
        return PendingClips([], [], length, "an image has no clips")
    frames, warning = {}, None
    with VideoReader(path) as reader:
        windows = [w for w in clip_frame_indices(reader.info.n_frames, length, count) if len(w) == length]
        try:
            for frame in reader.read(sorted({i for w in windows for i in w})):
                frames[frame.index] = frame
        except MediaError as error:  # a partly readable video: the clips whose frames all decoded
            warning = f"partly readable: {error.reason}"
    if not windows:
        return PendingClips([], [], length, f"shorter than one clip of {length} frames")
    windows = [w for w in windows if all(i in frames for i in w)]
    clips, tracks = [], []
    for window in windows:
        clip = ClipScore(window, times=(frames[window[0]].time, frames[window[-1]].time))
        if transform is not None:
            frames.update((frame.index, frame) for frame in transform([frames[index] for index in window]))
        faces = [detector.analyzer(frames[index].image) for index in window]
        complete = [track for track in track_boxes([[f.box for f in found] for found in faces],
                                                   detector.clip_min_iou) if None not in track]
        crops = [np.stack([test_crop(frames[index].image, faces[t][j].box, faces[t][j].landmarks,
                                     size=detector.image_size, cfg=detector.crop)[0]
                           for t, (index, j) in enumerate(zip(window, track))]) for track in complete]
        clips.append(clip)
        tracks.append(np.stack(crops) if crops else [])
    return PendingClips(clips, tracks, length, warning)


@torch.no_grad()
def score_clips(detector, pending: PendingClips) -> TemporalResult:
    """The temporal head over every complete track, then the protocol's aggregation."""
    from mfrn.models.outputs import fake_probability

    model = detector.temporal_model
    per_batch = max(1, detector.protocol.batch_size // pending.clip_length)  # clips whose frames fill a batch
    for clip, crops in zip(pending.clips, pending.tracks):
        scores = []
        for start in range(0, len(crops), per_batch):
            chunk = np.asarray(crops[start:start + per_batch], dtype=np.float32) / 255.0
            clips = torch.from_numpy(chunk).permute(0, 1, 4, 2, 3).to(detector.device)
            scores.extend(float(s) for s in fake_probability(model(clips)).float().cpu())
        clip.track_scores = scores
    video = aggregate_video([clip.track_scores for clip in pending.clips], detector.protocol)
    for clip, score in zip(pending.clips, video.frame_scores):
        clip.score = score
    return TemporalResult(None if video.no_face else float(video.score), pending.clips, pending.clip_length,
                          protocol_score=float(video.score), warning=pending.warning)
