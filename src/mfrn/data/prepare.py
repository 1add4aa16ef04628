"""``mfrn prepare``: videos or images -> kept faces, boxes, keypoints, 81 landmarks and loose crops.

Parallel over media items with N worker processes (each loads its face models once), resumable
(items that already have a record are skipped), sharded (``--shard i/n``), and crash-safe: every
crop and record is written atomically, so a kill loses at most the items in progress.
"""

from __future__ import annotations

import hashlib
import signal
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from mfrn import __version__
from mfrn.data.manifest import (
    STATUS_FAILED,
    STATUS_NO_FACE,
    STATUS_OK,
    FaceRecord,
    FrameRecord,
    Manifest,
    MediaRecord,
)
from mfrn.data.parallel import spawn_imap
from mfrn.io_utils import atomic_write_image, atomic_write_json


@dataclass
class PrepareConfig:
    n_frames: int = 32  # evenly spaced frames per video (SBI extracts 32)
    # clips for the temporal head instead: clips_per_video clips of clip_length consecutive frames (clip_stride
    # apart), evenly spaced over each video, faces tracked through each clip; 0 = single frames (n_frames)
    clip_length: int = 0
    clips_per_video: int = 4
    clip_stride: int = 1
    detector: str = "dlib"
    landmarker: str = "dlib"
    detector_kwargs: dict = field(default_factory=dict)
    landmarker_kwargs: dict = field(default_factory=dict)
    min_face_area_ratio: float = 0.5  # keep faces with area >= this x the largest (SBI)
    min_face_size: int = 0  # drop faces whose box side is below this many pixels (0 = keep all)
    crop_format: str = "png"  # "png" (lossless) or "jpg"
    crop_slack: float = 0.1  # extra margin around the union of SBI's crop windows
    max_pixels: int = 100_000_000  # larger images are refused before decoding

    def __post_init__(self) -> None:
        """Bad settings are refused here, before anything is written (a bad prepare.json blocks the rerun)."""
        problems = []
        if not isinstance(self.n_frames, int) or self.n_frames < 1:
            problems.append(f"n_frames (--frames) must be a whole number >= 1, got {self.n_frames!r}")
        if not 0.0 < self.min_face_area_ratio <= 1.0:
            problems.append(f"min_face_area_ratio must be in (0, 1], got {self.min_face_area_ratio!r}")
        if self.min_face_size < 0:
            problems.append(f"min_face_size must be >= 0, got {self.min_face_size!r}")
        if self.crop_format not in ("png", "jpg"):
            problems.append(f"crop_format must be png or jpg, got {self.crop_format!r}")
        if self.crop_slack < 0:
            problems.append(f"crop_slack must be >= 0, got {self.crop_slack!r}")
        if not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            problems.append(f"max_pixels (--max-pixels) must be a whole number >= 1, got {self.max_pixels!r}")
        if not isinstance(self.clip_length, int) or self.clip_length < 0:
            problems.append(f"clip_length (--clip-length) must be a whole number >= 0, got {self.clip_length!r}")
        for name in ("clips_per_video", "clip_stride"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} (--{name.replace('_', '-')}) must be a whole number >= 1, "
                                f"got {getattr(self, name)!r}")
        if problems:
            raise ValueError("prepare: " + "; ".join(problems))


@dataclass
class PrepareSection(PrepareConfig):
    """The ``prepare:`` section of a training config: what ``mfrn prepare -c CONFIG`` does, so that the
    config that trains a model also names how its faces were found. Command-line options win."""

    dataset: str = ""  # a reader (ffpp, celebdf_v2, ...) over --root; "" = media paths on the command line
    reader_options: dict = field(default_factory=dict)  # e.g. {compression: raw}
    splits: list[str] = field(default_factory=list)  # the dataset's splits to prepare; [] = all
    real_only: bool = False  # only the real videos (the detector's training needs no fake video)

    def prepare_config(self) -> PrepareConfig:
        return PrepareConfig(**{f.name: getattr(self, f.name) for f in fields(PrepareConfig)})


# backends that need a file the user gives: (kwarg, command-line option, the file's usual name)
BACKEND_FILES = {
    ("detector", "retinaface"): ("weights_path", "--detector-weights", "Resnet50_Final.pth"),
    ("landmarker", "dlib81"): ("model_path", "--landmarker-weights", "shape_predictor_81_face_landmarks.dat"),
}


def check_backend_files(config: PrepareConfig) -> None:
    """Fail before any work (and before worker processes start) when a backend's file is not given."""
    for role, name, kwargs in (("detector", config.detector, config.detector_kwargs),
                               ("landmarker", config.landmarker, config.landmarker_kwargs)):
        need = BACKEND_FILES.get((role, name))
        if need is None:
            continue
        key, option, filename = need
        if not kwargs.get(key):
            raise ValueError(f"the {role} {name!r} needs its weights file: give {option} PATH ({filename})")
        if not Path(kwargs[key]).is_file():
            raise FileNotFoundError(f"{kwargs[key]}: {role} weights file not found ({option}; expected {filename})")


@dataclass
class WorkItem:
    key: str
    path: str
    label: int | None = None
    split: str | None = None
    dataset: str | None = None
    method: str | None = None


@dataclass
class PrepareSummary:
    total: int = 0
    skipped_existing: int = 0
    skipped_other_shard: int = 0
    processed: int = 0
    ok: int = 0
    no_face: int = 0
    failed: int = 0
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)
    input_problems: list[tuple[str, str]] = field(default_factory=list)  # inputs that gave no media item

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def nothing_succeeded(self) -> bool:
        """Items were processed and every one failed (none prepared, now or by an earlier run)."""
        return self.processed > 0 and self.ok + self.no_face + self.skipped_existing == 0

    def format(self) -> str:
        lines = [f"  input skipped: {path}: {reason}" for path, reason in self.input_problems]
        lines += [
            f"prepare: {self.processed} processed ({self.ok} ok, {self.no_face} without a face, "
            f"{self.failed} failed), {self.skipped_existing} already done, {self.skipped_other_shard} in other shards; "
            f"{self.frames} frames, {self.faces} faces in {self.seconds:.1f} s ({self.frames_per_second:.2f} frames/s)"
        ]
        if self.interrupted:
            lines.append("interrupted: finished items are saved; run the same command again to resume")
        for key, reason in self.failures[:20]:
            lines.append(f"  failed: {key}: {reason}")
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more (see the manifest)")
        return "\n".join(lines)


def loose_crop_window(
    box: np.ndarray, landmarks: np.ndarray, width: int, height: int, slack: float = 0.1
) -> list[int]:
    """A window holding every crop SBI may take later, clipped to the frame.

    The union of the landmark crop (68-point box with margins w/2 left/right, h top, 0.4h bottom),
    the 81-point hull and the detector box with its largest margin (w/4, h/4), plus ``slack``.
    """
    lm68 = landmarks[:68]
    x0, y0 = lm68.min(axis=0)
    x1, y1 = lm68.max(axis=0)
    w, h = x1 - x0, y1 - y0
    bx0, by0, bx1, by1 = (float(v) for v in box)
    bw, bh = bx1 - bx0, by1 - by0
    left = min(x0 - w / 2, bx0 - bw / 4, float(landmarks[:, 0].min()))
    right = max(x1 + w / 2, bx1 + bw / 4, float(landmarks[:, 0].max()))
    top = min(y0 - h, by0 - bh / 4, float(landmarks[:, 1].min()))
    bottom = max(y1 + 0.4 * h, by1 + bh / 4, float(landmarks[:, 1].max()))
    pad_x, pad_y = slack * (right - left), slack * (bottom - top)
    return [
        int(max(0, np.floor(left - pad_x))),
        int(max(0, np.floor(top - pad_y))),
        int(min(width, np.ceil(right + pad_x))),
        int(min(height, np.ceil(bottom + pad_y))),
    ]


def detector_kwargs_from_options(detector: str, options: dict, weights_path: Path | str | None = None,
                                 detect_size: int | None = None, device: str | None = None) -> dict:
    """The detector's keyword options from the command line's: ``--detect-size`` is its working size (the
    option its class names, dlib's ``max_side``), ``--device`` is checked here and passed to backends that take one."""
    import sys

    from mfrn.faces.base import DETECTORS, detector_options
    from mfrn.weights import check_device

    kwargs = dict(options)
    if weights_path:
        kwargs["weights_path"] = str(weights_path)
    if detect_size is not None:
        option = getattr(DETECTORS.get(detector), "working_size_option", None)
        if option is None:
            raise ValueError(f"--detect-size: the {detector} detector has no working size "
                             "(it scans the whole image; see its options with --detector-option)")
        kwargs[option] = int(detect_size)
    if device:
        check_device(device)
        if "device" in detector_options(detector):
            kwargs["device"] = device
        elif device != "cpu":
            print(f"note: --device {device} is ignored: the {detector} detector runs on the CPU", file=sys.stderr)
    return kwargs


def items_from_paths(paths: Sequence[str | Path]) -> list[WorkItem]:
    """Media files from files, folders and list files; keys are unique and readable. An input that gives
    no media (missing, or "no media found in ...") raises :class:`~mfrn.data.media.MediaError`."""
    from mfrn.data.media import MediaError

    items, problems = media_items(paths)
    if problems:
        raise MediaError(*problems[0])
    return items


def media_items(paths: Sequence[str | Path]) -> tuple[list[WorkItem], list[tuple[str, str]]]:
    """Work items of :func:`items_from_paths`, and ``(input, reason)`` for each input that gave none."""
    from mfrn.data.media import list_media, path_identity

    items: list[WorkItem] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    files_seen: set[str] = set()  # a file reached through two inputs is one item
    for given in paths:
        given = Path(given)
        base = given if given.is_dir() else None
        listing = list_media([given])
        problems.extend((str(path), reason) for path, reason in listing.problems)
        for path in listing.files:
            if path_identity(path) in files_seen:
                continue
            files_seen.add(path_identity(path))
            if base is not None:
                rel = path.relative_to(base).with_suffix("")
                key = f"media/{base.resolve().name}/{rel.as_posix()}"
            else:
                key = f"media/{path.stem}"
            if key in seen:
                key = f"{key}-{hashlib.sha1(path_identity(path).encode()).hexdigest()[:6]}"
            seen.add(key)
            items.append(WorkItem(key=key, path=str(path)))
    return items, problems


def items_from_reader(records: Iterable) -> list[WorkItem]:
    """Work items from a dataset reader's ``VideoRecord``s."""
    return [
        WorkItem(key=r.key, path=str(r.path), label=r.label, split=r.split, dataset=r.dataset, method=r.method)
        for r in records
    ]


def parse_splits(text: str | Sequence[str] | None) -> list[str]:
    """``"train,val"`` (or a list) -> ``["train", "val"]``; None or "" -> [] (every split)."""
    from mfrn.data.readers.base import check_split

    if not text:
        return []
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else [str(p).strip() for p in text]
    for part in parts:
        check_split(part)
    return list(dict.fromkeys(p for p in parts if p))


def dataset_items(reader, splits: Sequence[str] = (), real_only: bool = False) -> tuple[list[WorkItem], str]:
    """Work items of a reader's videos in ``splits`` (all when empty), real videos only if asked;
    with a line saying what was chosen and what was left out."""
    from mfrn.data.records import REAL

    records = [r for split in (splits or [None]) for r in reader.records(split)]
    kept = [r for r in records if r.label == REAL] if real_only else records
    where = f"split{'s' if len(splits) > 1 else ''} {', '.join(splits)}" if splits else "every split"
    line = f"{reader.name}: {len(kept)} videos to prepare ({where}"
    if real_only:
        line += f"; real only: {len(records) - len(kept)} fake videos left out"
    return items_from_reader(kept), line + ")"


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    index, count = shard
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) % count == index


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: need 0 <= i < n")
    return index, count


class FacePreparer:
    """Does the work for one item; one per process, so models load once."""

    def __init__(self, config: PrepareConfig, out_dir: Path) -> None:
        from mfrn.faces.base import FaceAnalyzer

        self.config = config
        self.manifest = Manifest(out_dir)
        self.analyzer = FaceAnalyzer.from_names(
            config.detector,
            config.landmarker,
            config.min_face_area_ratio,
            config.detector_kwargs,
            config.landmarker_kwargs,
        )

    def __call__(self, item: WorkItem) -> MediaRecord:
        from mfrn.data.clips import assign_clips, clip_frame_indices
        from mfrn.data.frames import FrameSamplingConfig, read_media_frames
        from mfrn.data.media import MediaError

        record = MediaRecord(
            key=item.key, source=item.path, status=STATUS_OK, label=item.label, split=item.split,
            dataset=item.dataset, method=item.method,
        )
        crop_dir = self.manifest.crop_dir(item.key)
        clips: list[list[int]] = []
        try:
            sampling = FrameSamplingConfig(n_frames=self.config.n_frames, max_image_pixels=self.config.max_pixels)
            pick = None
            if self.config.clip_length:
                def pick(n_frames: int) -> list[int]:
                    clips.extend(clip_frame_indices(n_frames, self.config.clip_length, self.config.clips_per_video,
                                                    self.config.clip_stride))
                    return sorted({index for clip in clips for index in clip})
            info, frames = read_media_frames(Path(item.path), self.config.n_frames, config=sampling, pick=pick)
            record.kind = "image" if getattr(info, "is_image", False) else "video"
            record.n_frames_total = int(getattr(info, "n_frames", 0) or 0)
            for frame in frames:
                record.frames.append(self._frame(frame.index, frame.image, crop_dir))
        except MediaError as exc:
            if not record.frames:
                record.status, record.reason = STATUS_FAILED, exc.reason
                return record
            record.warnings.append(f"stopped after {len(record.frames)} frames: {exc.reason}")
        except Exception as exc:  # a broken item must not end a long run: record it and go on
            record.status = STATUS_FAILED
            record.reason = f"{type(exc).__name__}: {exc}"
            record.warnings.append(traceback.format_exc(limit=3))
            record.frames = []
            return record
        if clips:
            assign_clips(record.frames, clips)
        if not record.frames:
            record.status, record.reason = STATUS_FAILED, "no frame could be decoded"
        elif record.n_faces == 0:
            record.status, record.reason = STATUS_NO_FACE, f"no face in {len(record.frames)} sampled frames"
        return record

    def _frame(self, index: int, image: np.ndarray, crop_dir: Path) -> FrameRecord:
        height, width = image.shape[:2]
        frame = FrameRecord(index=index, width=width, height=height)
        faces = self.analyzer(image)
        for number, face in enumerate(faces):
            if self.config.min_face_size and min(face.detection.width, face.detection.height) < self.config.min_face_size:
                continue
            window = loose_crop_window(face.box, face.landmarks, width, height, self.config.crop_slack)
            x1, y1, x2, y2 = window
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            crop_path = crop_dir / f"{index:06d}_{number}.{self.config.crop_format}"
            atomic_write_image(crop_path, np.ascontiguousarray(image[y1:y2, x1:x2]))
            frame.faces.append(
                FaceRecord(
                    crop_path=crop_path.relative_to(self.manifest.root).as_posix(),
                    crop_box=window,
                    box=[float(v) for v in face.box],
                    score=float(face.detection.score),
                    keypoints=face.keypoints.round(2).tolist(),
                    landmarks=face.landmarks.round(2).tolist(),
                    forehead_source=face.forehead_source,
                )
            )
        return frame


_WORKER: FacePreparer | None = None


def _init_worker(config: PrepareConfig, out_dir: str) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    _WORKER = FacePreparer(config, Path(out_dir))


def _work(item: WorkItem) -> tuple[str, str, str, int, int]:
    assert _WORKER is not None
    record = _WORKER(item)
    _WORKER.manifest.write(record)
    return record.key, record.status, record.reason, len(record.frames), record.n_faces


def _check_settings(out_dir: Path, config: PrepareConfig) -> None:
    settings_path = out_dir / "prepare.json"
    settings = {"mfrn_version": __version__, "config": asdict(config)}
    if settings_path.is_file():
        import json

        old = {**asdict(PrepareConfig()), **json.loads(settings_path.read_text(encoding="utf-8")).get("config", {})}
        keys = ("n_frames", "detector", "landmarker", "min_face_area_ratio", "crop_slack", "clip_length",
                "clips_per_video", "clip_stride")
        differ = {k for k in keys if old.get(k) != asdict(config)[k]}
        if differ:
            raise ValueError(
                f"{settings_path}: this folder was prepared with other settings ({', '.join(sorted(differ))}); "
                "use another output folder"
            )
        return
    atomic_write_json(settings_path, settings)


def run_prepare(
    items: Sequence[WorkItem],
    out_dir: Path,
    config: PrepareConfig | None = None,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> PrepareSummary:
    """Prepare ``items`` into ``out_dir``; returns the run's summary (also printed by the CLI)."""
    from tqdm import tqdm

    from mfrn.io_utils import check_output_dir, ensure_output_dir

    config = config or PrepareConfig()
    check_backend_files(config)
    out_dir = check_output_dir(out_dir)
    # the face models are built before anything is written: a bad backend name, option or weights file
    # stops here, and the folder is not marked with settings that never ran
    first_worker = FacePreparer(config, out_dir)
    ensure_output_dir(out_dir)
    _check_settings(out_dir, config)
    manifest = Manifest(out_dir)
    summary = PrepareSummary(total=len(items))
    todo = []
    for item in items:
        if not in_shard(item.key, shard):
            summary.skipped_other_shard += 1
        elif manifest.has(item.key) and not (retry_failed and manifest.read(item.key).status == STATUS_FAILED):
            summary.skipped_existing += 1
        else:
            todo.append(item)

    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="prepare", unit="item", disable=not progress, dynamic_ncols=True)

    def account(result: tuple[str, str, str, int, int]) -> None:
        key, status, reason, n_frames, n_faces = result
        summary.processed += 1
        summary.frames += n_frames
        summary.faces += n_faces
        if status == STATUS_OK:
            summary.ok += 1
        elif status == STATUS_NO_FACE:
            summary.no_face += 1
        else:
            summary.failed += 1
            summary.failures.append((key, reason))
        bar.update(1)
        bar.set_postfix(ok=summary.ok, failed=summary.failed, fps=f"{summary.frames / max(time.perf_counter() - start, 1e-9):.1f}")

    try:
        if workers <= 1:
            global _WORKER
            _WORKER = first_worker
            for item in todo:
                account(_work(item))
        elif todo:
            del first_worker  # each worker process builds its own
            for result in spawn_imap(_work, todo, workers, _init_worker, (config, str(out_dir))):
                account(result)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
        manifest.consolidate()
    return summary
