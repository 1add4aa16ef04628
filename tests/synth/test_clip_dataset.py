"""The clip dataset over prepared real face clips: items, reproducibility, RBI per frame, previews."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfrn.data.manifest import Manifest
from mfrn.synth.clip_dataset import ClipPairDataset, select_clips
from mfrn.synth.clips import ClipBlender, ClipConfig
from mfrn.synth.dataset import collate_pairs
from mfrn.synth.sbi import SBIConfig

pytestmark = pytest.mark.slow

T = 4


def small_sbi() -> SBIConfig:
    cfg = SBIConfig()
    cfg.crop.size = 48
    return cfg


@pytest.fixture(scope="module")
def train_clips(prepared_clips):
    return select_clips(Manifest(prepared_clips), "train", ClipConfig(length=T))


def test_clips_of_one_split_one_person_consecutive_frames(prepared_clips, train_clips):
    manifest = Manifest(prepared_clips)
    val = select_clips(manifest, "val", ClipConfig(length=T))
    assert train_clips and val and not {c.record.key for c in train_clips} & {c.record.key for c in val}
    for clip in train_clips + val:
        assert len(clip) == T and np.diff(clip.frame_indices).tolist() == [1] * (T - 1)
        assert len({face.face.track for face in clip.faces}) == 1
    assert len(select_clips(manifest, "train", ClipConfig(length=T, clips_per_video=2))) <= 4


def test_items_collate_to_clip_batches_and_reproduce(train_clips):
    dataset = ClipPairDataset(train_clips[:3], small_sbi(), ClipConfig(length=T), seed=5)
    item = dataset[1]
    assert item["image"].shape == (2, T, 3, 48, 48) and item["image"].dtype == torch.float32
    assert item["label"].tolist() == [0, 1] and item["region_map"].shape == (2, T, 48, 48)
    assert not item["region_map"][0].any() and item["region_map"][1].amax() > 0
    assert item["key"] == train_clips[1].key and item["kind"] == "sbi"
    torch.testing.assert_close(dataset[1]["image"], item["image"])  # same (seed, epoch, index), same clip
    dataset.set_epoch(1)
    assert not torch.equal(dataset[1]["image"][1], item["image"][1])
    batch = collate_pairs([dataset[0], dataset[2]])
    assert batch["image"].shape == (4, T, 3, 48, 48) and batch["label"].tolist() == [0, 1, 0, 1]
    # the real clip is the prepared frames through the fake's windows: fake == real outside the mask
    region = item["region_map"][1]
    outside = (region == 0)[:, None].expand(-1, 3, -1, -1)
    torch.testing.assert_close(item["image"][1][outside], item["image"][0][outside], atol=0.02, rtol=0)


def test_rbi_clips_take_one_reconstruction_per_frame(train_clips, tmp_path):
    from mfrn.synth.rbi import RBIConfig, ReconstructionCache, build_cache
    from mfrn.synth.reconstructors.builtin import BuiltinGeneratorConfig, BuiltinReconstructor

    torch.manual_seed(0)
    generator = BuiltinReconstructor(BuiltinGeneratorConfig(crop_size=32, base_channels=8, max_channels=16,
                                                            n_downsample=2, n_blocks=1, identity_dim=32,
                                                            identity_channels=4, identity_input_size=32))
    clips = train_clips[:2]
    build_cache([face for clip in clips for face in clip.faces], generator, tmp_path / "cache", variants=2,
                progress=False)
    rbi = RBIConfig(probability=1.0, source="cache")
    dataset = ClipPairDataset(clips, small_sbi(), ClipConfig(length=T), rbi, cache=ReconstructionCache(tmp_path / "cache"))
    assert dataset[0]["kind"] == "rbi" and dataset.stats["rbi"] == 1
    # one frame without a reconstruction makes the whole clip an SBI clip
    cache = ReconstructionCache(tmp_path / "cache")
    del cache.entries[clips[1].faces[2].face.crop_path]
    partial = ClipPairDataset(clips, small_sbi(), ClipConfig(length=T), rbi, cache=cache)
    assert partial[1]["kind"] == "sbi" and partial.stats["rbi_missing_in_cache"] == 1


def test_clip_previews_write_a_strip_and_a_gif(train_clips, tmp_path):
    from PIL import Image

    from mfrn.synth.preview import CLIP_ROWS, write_clip_previews

    blender = ClipBlender(small_sbi(), ClipConfig(length=T))
    strip, = write_clip_previews(train_clips[:1], tmp_path, blender)
    with Image.open(strip) as image:
        assert image.size == (128 * T, 128 * len(CLIP_ROWS))
    gif, = write_clip_previews(train_clips[:1], tmp_path, blender, gif=True)
    with Image.open(gif) as image:
        assert image.n_frames == T and image.size == (128 * len(CLIP_ROWS), 128)
