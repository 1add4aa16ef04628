"""``mfrn synth preview``: one PNG grid per sample so a person can see what the model learns from:

    real | SBI fake | RBI fake | reconstruction | region map | boundary map
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mfrn.io_utils import atomic_write_image

COLUMNS = ("real", "SBI", "RBI", "reconstruction", "region map (RBI)", "boundary map (RBI)")
SBI_COLUMNS = ("real", "SBI", "region map (SBI)", "boundary map (SBI)")  # when no generator is at hand


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    out = tile.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _map_tile(values: np.ndarray) -> np.ndarray:
    gray = np.clip(values * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def preview_grid(sample, blender, reconstructor=None, noise=None, seed: int = 0, tile: int = 256) -> np.ndarray:
    """The six-column grid of one ``FaceSample``; without a generator, the SBI pair and its maps (four columns)."""
    image, box, keypoints, landmarks = sample.load()
    sbi = blender(image, landmarks, box, np.random.default_rng((seed, 0)))
    tiles = [sbi.real, sbi.fake]
    if reconstructor is not None:
        recon = reconstructor.reconstruct_batch([image], [keypoints], noise, np.random.default_rng((seed, 1)))[0]
        rbi = blender(image, landmarks, box, np.random.default_rng((seed, 0)), source=recon.image)
        # the reconstruction, seen through the RBI pair's own flip and crop
        tiles += [rbi.fake, rbi.view(recon.image), _map_tile(rbi.region_map), _map_tile(rbi.boundary_map)]
    else:
        tiles += [_map_tile(sbi.region_map), _map_tile(sbi.boundary_map)]
    names = COLUMNS if reconstructor is not None else SBI_COLUMNS
    labelled = [_label(cv2.resize(t, (tile, tile), interpolation=cv2.INTER_AREA), name) for t, name in zip(tiles, names)]
    return np.hstack(labelled)


def write_previews(samples: Sequence, out_dir: Path, blender, reconstructor=None, noise=None, seed: int = 0) -> list[Path]:
    out_dir = Path(out_dir)
    paths = []
    for number, sample in enumerate(samples):
        grid = preview_grid(sample, blender, reconstructor, noise, seed=seed + number)
        path = out_dir / f"preview_{number:03d}.png"
        atomic_write_image(path, grid)
        paths.append(path)
    return paths


CLIP_ROWS = ("real", "fake", "region map", "boundary map", "|fake-real| x4")


def clip_frames(clip, clip_blender, reconstructor=None, noise=None, seed: int = 0, tile: int = 128) -> list[np.ndarray]:
    """One labelled column per frame of a ``ClipSample``: real, fake (RBI with a generator, else SBI), region
    map, boundary map and the fake's difference from the real (what moves from frame to frame)."""
    images, boxes, keypoints, landmarks = zip(*clip.load())
    sources = None
    if reconstructor is not None:  # one reconstruction per frame, each with its own latent noise
        sources = [r.image for r in reconstructor.reconstruct_batch(list(images), list(keypoints), noise,
                                                                    np.random.default_rng((seed, 1)))]
    pair = clip_blender(images, landmarks, boxes, np.random.default_rng((seed, 0)), sources=sources)
    kind = "RBI" if sources is not None else "SBI"
    columns = []
    for t, frame in enumerate(pair.frames):
        difference = np.clip(np.abs(frame.fake.astype(np.int16) - frame.real.astype(np.int16)) * 4, 0, 255)
        tiles = [frame.real, frame.fake, _map_tile(frame.region_map), _map_tile(frame.boundary_map),
                 difference.astype(np.uint8)]
        names = [f"real t={t}", f"{kind} t={t}", *CLIP_ROWS[2:]]
        columns.append(np.vstack([_label(cv2.resize(x, (tile, tile), interpolation=cv2.INTER_AREA), name)
                                  for x, name in zip(tiles, names)]))
    return columns


def write_clip_previews(clips: Sequence, out_dir: Path, clip_blender, reconstructor=None, noise=None, seed: int = 0,
                        gif: bool = False) -> list[Path]:
    """A strip PNG per clip (rows: real, fake, maps, difference; one column per frame), or an animated GIF."""
    import io

    from PIL import Image

    from mfrn.io_utils import atomic_write_bytes

    out_dir = Path(out_dir)
    paths = []
    for number, clip in enumerate(clips):
        columns = clip_frames(clip, clip_blender, reconstructor, noise, seed=seed + number)
        if gif:
            frames = [Image.fromarray(np.hstack(np.split(column, len(CLIP_ROWS)))) for column in columns]
            buffer = io.BytesIO()
            frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=120, loop=0)
            path = out_dir / f"clip_{number:03d}.gif"
            atomic_write_bytes(path, buffer.getvalue())
        else:
            path = out_dir / f"clip_{number:03d}.png"
            atomic_write_image(path, np.hstack(columns))
        paths.append(path)
    return paths
