"""Scoring many files: media -> faces in a background thread, faces of several files in one batch.

``score_media`` is what ``eval``, ``detect`` and the server run: the next files are decoded and
searched for faces (``prefetch``) while the model scores the current batch; crops of several files
share a batch of ``protocol.batch_size``; results come out in input order, one per file, a file
that cannot be read as a failed result with its reason. Memory stays flat: only the files in
flight are held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfrn.data.frames import Frame
from mfrn.data.media import MediaError
from mfrn.inference.results import MediaResult


def prefetch(iterable: Iterable, depth: int = 2) -> Iterator:
    """Iterate ``iterable`` in a background thread, ``depth`` items ahead; errors are re-raised here."""
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        items.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(("done", None))
        except BaseException as error:  # handed to the consumer
            items.put(("error", error))

    thread = threading.Thread(target=produce, name="mfrn-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


@dataclass
class ScoredMedia:
    """One file's result; ``frames`` are its decoded frames when the caller asked to keep them."""

    item: Any
    result: MediaResult
    frames: list[Frame] | None = None


@dataclass
class _InFlight:
    item: Any
    path: str
    kind: str | None = None
    frames: list[Frame] | None = None
    pending: Any = None  # PendingFaces
    clips: Any = None  # PendingClips of a temporal detector
    warning: str | None = None
    error: str | None = None


def score_media(
    detector,
    items: Iterable,
    path_of: Callable[[Any], Path | str] = lambda item: item,
    transform: Callable[[list[Frame]], list[Frame]] | None = None,
    keep_frames: Callable[[Any], bool] | bool = False,
    depth: int = 2,
) -> Iterator[ScoredMedia]:
    """Score every item's media file (``path_of(item)``) with ``detector``; yields in input order.

    ``transform`` changes the decoded frames before faces are searched (a perturbation in ``eval``).
    Where ``keep_frames`` is true (for all items, or per item), the decoded frames and the region
    and boundary maps are kept for overlays or localisation; otherwise both are dropped at once.
    """
    from mfrn.inference.media import decode_media

    keep = keep_frames if callable(keep_frames) else (lambda item: bool(keep_frames))

    def prepare(item) -> _InFlight:
        path = path_of(item)
        video = _InFlight(item, str(path))
        try:
            media = decode_media(Path(path), detector.protocol.n_frames)
        except MediaError as error:
            video.error = error.reason
            return video
        frames = media.frames
        if transform is not None:
            frames = transform(frames)
        video.kind, video.warning = media.kind, media.warning
        video.pending = detector.collect_faces((f.index, f.image, f.time) for f in frames)
        video.frames = frames if keep(item) else None
        if detector.temporal_model is not None:
            video.clips = detector.collect_clips(path, transform)
        return video

    def flush(batch: list[_InFlight]) -> Iterator[ScoredMedia]:
        crops = [crop for video in batch if video.error is None for crop in video.pending.crops]
        keep_maps = any(video.frames is not None for video in batch)
        scores, regions, boundaries = detector.score_crops(crops)
        offset = 0
        for video in batch:
            if video.error is not None:
                yield ScoredMedia(video.item, detector.failure(video.path, video.error))
                continue
            n = len(video.pending.crops)
            maps = [m[offset:offset + n] if (m is not None and keep_maps) else None for m in (regions, boundaries)]
            frames = detector.assign_scores(video.pending, scores[offset:offset + n], *maps,
                                            keep_maps=video.frames is not None)
            offset += n
            result = detector.aggregate(video.path, video.kind, frames, video.warning)
            if video.clips is not None:
                result.temporal = detector.score_clips(video.clips)
            yield ScoredMedia(video.item, result, video.frames)

    batch: list[_InFlight] = []
    n_crops = 0
    for video in prefetch((prepare(item) for item in items), depth):
        batch.append(video)
        n_crops += len(video.pending.crops) if video.pending is not None else 0
        if n_crops >= detector.protocol.batch_size:
            yield from flush(batch)
            batch, n_crops = [], 0
    if batch:
        yield from flush(batch)
