"""SimSwap generator: exact state-dict layout, safe strict loading, ArcFace encoders."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mfrn.synth.reconstructors.arcface import ArcFaceEncoder, IRSE50, load_identity_encoder
from mfrn.synth.reconstructors.checkpoints import CheckpointError, load_state_dict_file
from mfrn.synth.reconstructors.simswap import load_simswap_generator, random_simswap, simswap_generator

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _conv(prefix: str, c_out: int, c_in: int, k: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c_out, c_in, k, k), f"{prefix}.bias": (c_out,)}


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{name}": (() if name == "num_batches_tracked" else (c,)) for name in BN}


def expected_simswap_table(variant: str) -> dict[str, tuple[int, ...]]:
    """reference/simswap.md's key table, written out."""
    table: dict[str, tuple[int, ...]] = {}
    first = 64 if variant == "224" else 32
    table |= _conv("first_layer.1", first, 3, 7) | _bn("first_layer.2", first)
    if variant == "512":
        table |= _conv("down0.0", 64, 32, 3) | _bn("down0.1", 64)
    table |= _conv("down1.0", 128, 64, 3) | _bn("down1.1", 128)
    table |= _conv("down2.0", 256, 128, 3) | _bn("down2.1", 256)
    table |= _conv("down3.0", 512, 256, 3) | _bn("down3.1", 512)
    for i in range(9):
        table |= _conv(f"BottleNeck.{i}.conv1.1", 512, 512, 3) | _conv(f"BottleNeck.{i}.conv2.1", 512, 512, 3)
        for style in ("style1", "style2"):
            table |= {f"BottleNeck.{i}.{style}.linear.weight": (1024, 512), f"BottleNeck.{i}.{style}.linear.bias": (1024,)}
    table |= _conv("up3.1", 256, 512, 3) | _bn("up3.2", 256)
    table |= _conv("up2.1", 128, 256, 3) | _bn("up2.2", 128)
    table |= _conv("up1.1", 64, 128, 3) | _bn("up1.2", 64)
    if variant == "512":
        table |= _conv("up0.1", 32, 64, 3) | _bn("up0.2", 32)
    table |= _conv("last_layer.1", 3, first, 7)
    return table


@pytest.mark.parametrize("variant", ["224", "512"])
def test_state_dict_matches_reference_table(variant):
    with torch.device("meta"):
        generator = simswap_generator(variant)
    actual = {k: tuple(v.shape) for k, v in generator.state_dict().items()}
    assert actual == expected_simswap_table(variant)


@pytest.fixture(scope="module")
def generator224():
    torch.manual_seed(0)
    return simswap_generator("224").eval()


def test_random_weights_save_load_strict_round_trip(tmp_path, generator224):
    generator = generator224
    path = tmp_path / "latest_net_G.pth"
    # as DataParallel would save it: the loader strips "module."
    torch.save({f"module.{k}": v for k, v in generator.state_dict().items()}, path)
    loaded = load_simswap_generator(path, "224")
    loaded_state = loaded.state_dict()
    for key, value in generator.state_dict().items():
        assert loaded_state[key].device.type == "cpu"
        assert torch.equal(loaded_state[key], value), key


def test_pickled_whole_module_is_refused_with_conversion_hint(tmp_path):
    path = tmp_path / "arcface_checkpoint.tar"
    torch.save(nn.Sequential(nn.Linear(2, 2)), path)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_file(path)
    message = str(info.value)
    assert "arcface_checkpoint.tar" in message
    assert "torch.save(model.state_dict()" in message and "weights_only=False" in message


def test_wrong_shape_names_the_key(tmp_path, generator224):
    state = dict(generator224.state_dict())
    state["up2.1.weight"] = torch.zeros(128, 256, 1, 1)
    del state["last_layer.1.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_simswap_generator(path, "224")
    message = str(info.value)
    assert "up2.1.weight" in message and "last_layer.1.bias" in message and "extra.weight" in message
    assert "bad.pth" in message


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_state_dict_file(tmp_path / "nope.pth")


def test_generator_shapes_range_and_instance_norm(generator224):
    generator = generator224
    faces = torch.rand(1, 3, 64, 64)  # fully convolutional: a small input keeps the test cheap
    identity = torch.nn.functional.normalize(torch.randn(1, 512), dim=1)
    with torch.no_grad():
        background = generator.encode(faces)
        assert background.shape == (1, 512, 8, 8)
        block_in = background
        normed = generator.BottleNeck[0].conv1(block_in)
        out = generator.decode(identity, background)
    assert torch.allclose(normed.mean(dim=(2, 3)), torch.zeros(1, 512), atol=1e-4)
    assert torch.allclose(normed.var(dim=(2, 3), unbiased=False), torch.ones(1, 512), atol=1e-2)
    assert out.shape == (1, 3, 64, 64)
    assert out.min() >= 0 and out.max() <= 1
    # the identity is injected: another identity changes the output
    with torch.no_grad():
        other = generator.decode(torch.nn.functional.normalize(torch.randn(1, 512), dim=1), background)
    assert (other - out).abs().max() > 1e-4


def test_simswap_reconstructor_encode_decode_shapes(generator224):
    from mfrn.synth.reconstructors.builtin import LightIdentityEncoder
    from mfrn.synth.reconstructors.simswap import SimSwapReconstructor

    recon = SimSwapReconstructor(generator224, LightIdentityEncoder(dim=512), "224").eval()
    with torch.no_grad():
        identity, background = recon.encode(torch.rand(2, 3, 64, 64))
        out = recon.decode(identity, background)
    assert identity.shape == (2, 512)
    assert torch.allclose(identity.norm(dim=1), torch.ones(2), atol=1e-5)
    assert background.shape == (2, 512, 8, 8)
    assert out.shape == (2, 3, 64, 64)
    assert recon.templates.shape == (5, 5, 2)


def test_simswap_512_templates_and_crop():
    with torch.device("meta"):
        recon = random_simswap("512")
    assert recon.crop_size == 512 and recon.templates.shape == (1, 5, 2)


def test_irse50_layout_and_unit_output(tmp_path):
    torch.manual_seed(0)
    backbone = IRSE50().eval()
    keys = backbone.state_dict()
    assert keys["input_layer.0.weight"].shape == (64, 3, 3, 3)
    assert keys["body.0.res_layer.5.fc1.weight"].shape == (4, 64, 1, 1)
    assert keys["body.3.shortcut_layer.0.weight"].shape == (128, 64, 1, 1)  # first unit of stage 2
    assert "body.0.shortcut_layer.0.weight" not in keys  # 64 -> 64: a parameter-free max-pool
    assert keys["output_layer.3.weight"].shape == (512, 512 * 7 * 7)
    assert len([k for k in keys if k.endswith("res_layer.0.weight")]) == 24  # 3 + 4 + 14 + 3 units
    path = tmp_path / "arcface_state_dict.pth"
    torch.save(backbone.state_dict(), path)
    encoder = load_identity_encoder(path)
    assert isinstance(encoder, ArcFaceEncoder)
    with torch.no_grad():
        identity = encoder(torch.rand(1, 3, 224, 224))
    assert identity.shape == (1, 512)
    assert torch.allclose(identity.norm(dim=1), torch.ones(1), atol=1e-5)
    assert torch.equal(encoder.backbone.state_dict()["output_layer.3.weight"], keys["output_layer.3.weight"])


def test_onnx_arcface_preprocessing_and_unit_output(tmp_path, monkeypatch):
    """The ONNX path with onnxruntime's session replaced by a recorder (no ONNX model file ships)."""
    onnxruntime = pytest.importorskip("onnxruntime")
    import numpy as np

    from mfrn.synth.reconstructors.arcface import OnnxArcFaceEncoder

    seen: list[np.ndarray] = []

    class FakeInput:
        name, shape = "data", ["batch", 3, 112, 112]

    class FakeSession:
        def __init__(self, path, providers=None):
            self.path = path

        def get_inputs(self):
            return [FakeInput()]

        def run(self, outputs, feeds):
            seen.append(feeds["data"])
            return [np.random.default_rng(0).normal(size=(len(feeds["data"]), 512)).astype(np.float32) * 7.0]

    monkeypatch.setattr(onnxruntime, "InferenceSession", FakeSession)
    path = tmp_path / "w600k_r50.onnx"
    path.write_bytes(b"stand-in")
    faces = torch.zeros(2, 3, 224, 224)
    faces[:, 0] = 1.0  # pure red
    identities = {}
    for rgb in (True, False):
        encoder = OnnxArcFaceEncoder(path, rgb=rgb)
        identities[rgb] = encoder(faces)
        fed = seen[-1]
        assert fed.shape == (2, 3, 112, 112) and fed.dtype == np.float32
        red_channel = 0 if rgb else 2
        assert np.allclose(fed[:, red_channel], 1.0) and np.allclose(np.delete(fed, red_channel, axis=1), -1.0)
    for identity in identities.values():
        assert identity.shape == (2, 512)
        assert torch.allclose(identity.norm(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxArcFaceEncoder(tmp_path / "missing.onnx")
