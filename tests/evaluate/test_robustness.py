from __future__ import annotations

import numpy as np
import pytest

from mfrn.evaluate.robustness import (
    PERTURBATIONS, plot_auc_vs_level, reencode_frames, reencode_video_file,
)


def _frames(rng, n=4, h=48, w=64):
    """A smooth moving gradient with texture: compressible, but not trivially."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for t in range(n):
        base = 128 + 60 * np.sin((xx + 3 * t) / 6.0) * np.cos(yy / 5.0)
        texture = rng.normal(0, 12, (h, w))
        channel = np.clip(base + texture, 0, 255)
        out.append(np.stack([channel, channel[::-1], 255 - channel], axis=2).astype(np.uint8))
    return out


def _mad(a, b):
    return float(np.mean([np.abs(x.astype(np.int16) - y.astype(np.int16)).mean() for x, y in zip(a, b)]))


def test_families_have_five_levels():
    assert set(PERTURBATIONS) == {"jpeg", "h264", "blur", "noise", "downscale"}
    for perturbation in PERTURBATIONS.values():
        assert len(perturbation.levels) == 5
    assert PERTURBATIONS["h264"].video_level and not PERTURBATIONS["jpeg"].video_level


@pytest.mark.parametrize("name", ["jpeg", "blur", "noise", "downscale"])
def test_framewise_families_keep_shape_and_get_worse(name, rng):
    frames = _frames(rng, n=2, h=47, w=63)  # odd sizes on purpose
    perturbation = PERTURBATIONS[name]
    clean = perturbation.apply(frames, 0)
    assert all(np.array_equal(a, b) for a, b in zip(clean, frames))
    mild, severe = perturbation.apply(frames, 1, seed=3), perturbation.apply(frames, 5, seed=3)
    for out in (mild, severe):
        assert len(out) == 2 and all(f.shape == (47, 63, 3) and f.dtype == np.uint8 for f in out)
    assert 0 < _mad(mild, frames) < _mad(severe, frames)
    again = perturbation.apply(frames, 5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(again, severe))


def test_noise_depends_on_seed(rng):
    frames = _frames(rng, n=1)
    a = PERTURBATIONS["noise"].apply(frames, 3, seed=0)[0]
    b = PERTURBATIONS["noise"].apply(frames, 3, seed=1)[0]
    assert not np.array_equal(a, b)


def test_h264_keeps_shape_and_differs_more_at_high_crf(rng):
    frames = _frames(rng, n=4, h=47, w=63)
    mild = PERTURBATIONS["h264"].apply(frames, 1)
    severe = PERTURBATIONS["h264"].apply(frames, 5)
    assert len(mild) == len(severe) == 4
    assert all(f.shape == (47, 63, 3) and f.dtype == np.uint8 for f in mild + severe)
    assert 0 < _mad(mild, frames) < _mad(severe, frames)
    near_lossless = reencode_frames(frames, crf=0)
    assert _mad(near_lossless, frames) < _mad(mild, frames)


def test_mpeg4_fallback_keeps_shape(rng):
    frames = _frames(rng, n=3)
    with pytest.warns(UserWarning, match="mpeg4"):
        mild = reencode_frames(frames, crf=30, codec="mpeg4")
        severe = reencode_frames(frames, crf=40, codec="mpeg4")
    assert len(severe) == 3 and severe[0].shape == frames[0].shape
    assert 0 < _mad(mild, frames) < _mad(severe, frames)  # the quantiser sweep takes effect


def test_reencode_video_file(tmp_path, rng):
    frames = _frames(rng, n=5)
    src = tmp_path / "src.mp4"
    import av

    with av.open(str(src), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    dst = reencode_video_file(src, tmp_path / "out" / "dst.mp4", crf=35)
    with av.open(str(dst)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 5 and decoded[0].shape == (48, 64, 3)
    with pytest.raises(ValueError, match="nothing.mp4"):
        reencode_video_file(tmp_path / "nothing.mp4", tmp_path / "x.mp4", crf=30)


def test_bad_level_and_bad_frames(rng):
    frames = _frames(rng, n=1)
    with pytest.raises(ValueError, match="level"):
        PERTURBATIONS["jpeg"].apply(frames, 6)
    with pytest.raises(ValueError, match="uint8"):
        PERTURBATIONS["jpeg"].apply([frames[0].astype(np.float32)], 1)
    assert PERTURBATIONS["jpeg"].describe(2) == "jpeg level 2 (quality=70)"


def test_plot_auc_vs_level(tmp_path):
    path = plot_auc_vs_level({"jpeg": [0.95, 0.9, 0.85, 0.7, 0.6], "blur": [0.9, 0.8, 0.7, 0.6, 0.55]},
                             tmp_path / "plots" / "robust.png", clean_auc=0.97)
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_family_takes_its_own_levels_on_the_command_line():
    from mfrn.evaluate.robustness import level_folder, parse_perturbation

    assert parse_perturbation("h264") is PERTURBATIONS["h264"]
    custom = parse_perturbation("h264:23,30,40")
    assert custom.levels == [23.0, 30.0, 40.0] and custom.video_level and PERTURBATIONS["h264"].levels[0] == 30
    assert custom.describe(1) == "h264 level 1 (crf=23)" and level_folder(custom, 3) == "h264_crf40"
    for bad, match in (("gif", "known families"), ("h264:high", "numbers"), ("h264:", None)):
        if match is None:
            assert parse_perturbation(bad) is PERTURBATIONS["h264"]
        else:
            with pytest.raises(ValueError, match=match):
                parse_perturbation(bad)


def test_the_plot_can_use_the_parameter_values(tmp_path):
    from mfrn.evaluate.robustness import plot_auc_vs_level

    path = plot_auc_vs_level({"h264": [0.9, 0.8, 0.7]}, tmp_path / "crf.png", clean_auc=0.95, x_values=[23, 30, 40],
                             x_label="H.264 CRF")
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="x values"):
        plot_auc_vs_level({"h264": [0.9, 0.8]}, tmp_path / "bad.png", x_values=[23, 30, 40])
