"""The training Dataset over prepared real faces: pairs, reproducibility, the RBI cache, previews."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mfrn.data.manifest import Manifest
from mfrn.synth.dataset import PairDataset, collate_pairs, split_faces
from mfrn.synth.rbi import RBIConfig, ReconstructionCache, build_cache
from mfrn.synth.reconstructors.builtin import BuiltinGeneratorConfig, BuiltinReconstructor
from mfrn.synth.sbi import SBIConfig

pytestmark = pytest.mark.slow


def small_sbi() -> SBIConfig:
    cfg = SBIConfig()
    cfg.crop.size = 64
    return cfg


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return BuiltinReconstructor(BuiltinGeneratorConfig(crop_size=32, base_channels=8, max_channels=16, n_downsample=2,
                                                       n_blocks=1, identity_dim=32, identity_channels=4,
                                                       identity_input_size=32))


@pytest.fixture(scope="module")
def cache(prepared_faces, generator, tmp_path_factory):
    faces = Manifest(prepared_faces).faces()[:6]
    folder = tmp_path_factory.mktemp("rbi_cache")
    build_cache(faces, generator, folder, variants=2, batch_size=4, progress=False)
    return folder, faces


def test_split_keeps_videos_whole_and_subsamples_frames(prepared_faces):
    manifest = Manifest(prepared_faces)
    train, val = split_faces(manifest, "train"), split_faces(manifest, "val")
    assert train and val
    assert not {s.record.key for s in train} & {s.record.key for s in val}
    few = split_faces(manifest, "train", frames_per_video=2)
    per_video = {}
    for sample in few:
        per_video.setdefault(sample.record.key, set()).add(sample.frame.index)
    assert max(len(v) for v in per_video.values()) <= 2
    assert split_faces(manifest, "test") == []  # no record of this manifest is in a test split
    with pytest.raises(ValueError):
        split_faces(manifest, "holdout")


def test_pairs_are_reproducible_and_annotated(prepared_faces):
    faces = split_faces(Manifest(prepared_faces), "train")[:4]
    dataset = PairDataset(faces, small_sbi(), seed=3)
    item = dataset[1]
    assert item["image"].shape == (2, 3, 64, 64) and item["image"].dtype == torch.float32
    assert item["label"].tolist() == [0, 1] and item["kind"] == "sbi"
    assert float(item["region_map"][0].abs().sum()) == 0.0 and float(item["boundary_map"][0].abs().sum()) == 0.0
    assert float(item["region_map"][1].max()) > 0.2 and 0.0 <= float(item["boundary_map"][1].min())
    again = PairDataset(faces, small_sbi(), seed=3)[1]
    assert torch.equal(again["image"], item["image"]) and torch.equal(again["region_map"], item["region_map"])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[1]["image"], item["image"])  # a new epoch draws new fakes
    batch = collate_pairs([dataset[0], dataset[1]])
    assert batch["image"].shape == (4, 3, 64, 64) and batch["label"].tolist() == [0, 1, 0, 1]


def test_cache_is_complete_and_resumable(cache, generator):
    folder, faces = cache
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    assert len(index["entries"]) == len(faces) and all(len(v) == 2 for v in index["entries"].values())
    image, *_ = faces[0].load()
    variant = ReconstructionCache(folder).sample(faces[0].face.crop_path, np.random.default_rng(0))
    assert variant.shape == image.shape and not np.array_equal(variant, image)
    before = {p: p.stat().st_mtime_ns for p in folder.glob("*.png")}
    build_cache(faces, generator, folder, variants=2, batch_size=4, progress=False)  # nothing left to do
    assert before == {p: p.stat().st_mtime_ns for p in folder.glob("*.png")}


def test_rbi_pairs_come_from_the_cache(cache):
    folder, faces = cache
    dataset = PairDataset(faces, small_sbi(), RBIConfig(probability=1.0, source="cache"), seed=0,
                          cache=ReconstructionCache(folder))
    kinds = {dataset[i]["kind"] for i in range(len(faces))}
    assert kinds == {"rbi"}
    with pytest.raises(ValueError, match="cache"):
        PairDataset(faces, small_sbi(), RBIConfig(probability=1.0, source="cache"))
    with pytest.raises(FileNotFoundError, match="synth cache"):
        ReconstructionCache(folder / "nowhere")


def test_preview_grid_has_six_labelled_columns(cache, generator, tmp_path):
    from mfrn.io_utils import read_image_rgb
    from mfrn.synth.preview import write_previews
    from mfrn.synth.sbi import SelfBlender

    _, faces = cache
    paths = write_previews(faces[:2], tmp_path, SelfBlender(small_sbi()), generator)
    assert len(paths) == 2
    grid = read_image_rgb(paths[0])
    assert grid.shape == (256, 6 * 256, 3)
    assert grid[:22].mean() < 60  # the label bar


def test_rbi_on_the_fly_inside_the_dataset(cache, generator):
    _, faces = cache
    dataset = PairDataset(faces[:2], small_sbi(), RBIConfig(probability=1.0, source="on_the_fly"), seed=0,
                          reconstructor=generator)
    assert {dataset[i]["kind"] for i in range(2)} == {"rbi"}
    assert dataset.stats["rbi"] == 2


def test_builtin_reconstructor_without_checkpoint_is_refused():
    from mfrn.synth.rbi import build_reconstructor_from_config

    with pytest.raises(ValueError, match="mfrn generator train"):
        build_reconstructor_from_config(RBIConfig(reconstructor="builtin"))


def test_unusable_faces_are_skipped_up_front_with_the_reason(prepared_faces):
    import copy

    faces = split_faces(Manifest(prepared_faces), "train")[:3]
    tiny_face = copy.deepcopy(faces[1])
    lm = np.asarray(tiny_face.face.landmarks, np.float32)
    centre = lm.mean(axis=0)
    tiny_face.face.landmarks = ((lm - centre) * 0.05 + centre).tolist()  # a face a few pixels wide
    dataset = PairDataset([faces[0], tiny_face, faces[2]], small_sbi())
    assert len(dataset) == 2 and [s.key for s in dataset.faces] == [faces[0].key, faces[2].key]
    assert dataset.skipped and "too small" in dataset.skipped[0][1]


def test_training_faces_are_the_largest_face_of_each_frame(prepared_faces):
    """SBI trains on the largest face of a frame; "all" keeps every face that prepare kept."""
    from mfrn.synth.dataset import DataConfig

    manifest = Manifest(prepared_faces)
    every = split_faces(manifest, "train", faces_per_frame="all")
    largest = split_faces(manifest, "train", faces_per_frame="largest")
    assert DataConfig().faces_per_frame == "largest"

    def area(sample):
        x1, y1, x2, y2 = sample.face.box
        return (x2 - x1) * (y2 - y1)

    frames: dict[tuple[str, int], list] = {}
    for sample in every:
        frames.setdefault((sample.record.key, sample.frame.index), []).append(sample)
    assert any(len(faces) > 1 for faces in frames.values()), "the sample media hold group photos"
    assert len(largest) == len(frames) < len(every)
    for sample in largest:
        assert area(sample) == max(area(s) for s in frames[(sample.record.key, sample.frame.index)])
    with pytest.raises(ValueError, match="faces_per_frame"):
        split_faces(manifest, "train", faces_per_frame="biggest")
    # the faces left out are counted with the reason, as every stage prints them
    from mfrn.synth.dataset import select_faces

    selection = select_faces(manifest, ("train",), faces_per_frame="largest")
    assert selection.left_out["of smaller faces in a frame (data.faces_per_frame: largest)"] == len(every) - len(largest)


def test_validation_dataset_makes_pairs_without_augmentation(prepared_faces):
    from mfrn.synth.sbi import SelfBlender

    faces = split_faces(Manifest(prepared_faces), "val", faces_per_frame="largest")[:3]
    dataset = PairDataset(faces, small_sbi(), seed=5, fixed_epoch=0, augment=False)
    blender = SelfBlender(small_sbi())
    for index in range(len(faces)):
        image, box, _, landmarks = faces[index].load()
        pair = blender(image, landmarks, box, np.random.default_rng((5, 0, index)), augment=False)
        expected = torch.from_numpy(np.stack([pair.real, pair.fake]).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        assert torch.equal(dataset[index]["image"], expected)


def _record(key: str, split: str | None, label: int = 0, n_faces: int = 1):
    from mfrn.data.manifest import STATUS_OK, FaceRecord, FrameRecord, MediaRecord

    face = FaceRecord(crop_path=f"crops/{key}.png", crop_box=[0, 0, 10, 10], box=[1, 1, 9, 9], score=1.0,
                      keypoints=[[0, 0]] * 5, landmarks=[[0, 0]] * 81)
    return MediaRecord(key=key, source=f"{key}.mp4", status=STATUS_OK, label=label, split=split,
                       frames=[FrameRecord(index=i, width=10, height=10, faces=[face]) for i in range(n_faces)])


@pytest.mark.parametrize("records, expected", [
    ([("ffpp/a", "train", 0), ("ffpp/b", "train", 0)], "no real faces in the 'val' split: the manifest's items are in split(s) train"),
    ([("ffpp/a", "val", 0)], "no real faces in the 'train' split"),
    ([("ffpp/fake", "train", 1)], "come from fake videos (label 1), and training uses real faces only"),
    ([("media/one", None, 0)], "each item goes to train or val whole (data.val_fraction=0.2)"),
])
def test_empty_split_messages_say_what_is_missing(tmp_path, records, expected):
    from mfrn.synth.dataset import check_training_faces

    manifest = Manifest(tmp_path)
    for key, split, label in records:
        manifest.write(_record(key, split, label, n_faces=3))
    train = split_faces(manifest, "train", 0.2, 0)
    val = split_faces(manifest, "val", 0.2, 0)
    with pytest.raises(ValueError) as caught:
        check_training_faces(manifest, train, val, 0.2)
    assert expected in str(caught.value) and "no validation faces" not in str(caught.value)
