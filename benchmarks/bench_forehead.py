"""How far mfrn's extrapolated forehead points fall from dlib's 81-point model's, on real faces.

SBI takes the 13 forehead points from ``shape_predictor_81_face_landmarks.dat``; mfrn's offline
default (``--landmarker dlib``) extrapolates them from the 68 points. Give the 81-point predictor
file you have (it is not shipped and not fetched) and, optionally, your own photos or videos:

    python benchmarks/bench_forehead.py --predictor shape_predictor_81_face_landmarks.dat [MEDIA ...] [--frames 4]

On each face (dlib HOG boxes, as SBI's landmark pass), the 81-point model predicts all 81 points;
its 68 points are then extended by the extrapolation, and the 13 forehead points of both are compared
(distance / inter-ocular distance), together with the IoU of the jaw + brows + forehead hull.
Without MEDIA it uses the real sample photos and videos (fetched from the registries on first use)
and scikit-image's astronaut.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from mfrn.faces.forehead import ForeheadGapReport, forehead_gap, summarize_gaps
from mfrn.provenance import commit, machine


def default_media() -> list[Path]:
    from mfrn.data.samples import fetch_sample_media

    media = fetch_sample_media()
    return [*media.single_face_images, *media.multi_face_images, media.single_face_video_long]


def frames_of(paths: Sequence[Path], frames: int) -> Iterator[tuple[str, np.ndarray]]:
    from mfrn.data.frames import read_media_frames

    for path in paths:
        _, decoded = read_media_frames(Path(path), frames)
        for frame in decoded:
            yield f"{Path(path).name}#{frame.index}", frame.image


def measure(images: Iterable[tuple[str, np.ndarray]], landmarker, detector=None) -> ForeheadGapReport:
    """The gap over every face the detector finds; ``landmarker`` gives 81 points in mfrn's order
    (``Dlib81Landmarker`` for the real model)."""
    if detector is None:
        from mfrn.faces.backends.dlib_backend import DlibHogDetector

        detector = DlibHogDetector()
    gaps = []
    for _, image in images:
        for detection in detector.detect(image):
            gaps.append(forehead_gap(landmarker.predict(image, detection)))
    return summarize_gaps(gaps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("media", nargs="*", type=Path, help="photos or videos (default: the sample media)")
    parser.add_argument("--predictor", type=Path, required=True, help="shape_predictor_81_face_landmarks.dat")
    parser.add_argument("--frames", type=int, default=4, help="evenly spaced frames per video")
    args = parser.parse_args(argv)

    from mfrn.faces.backends.dlib_backend import Dlib81Landmarker

    landmarker = Dlib81Landmarker(args.predictor)  # a clear error when the file is not there
    images = list(frames_of(args.media or default_media(), args.frames))
    if not args.media:
        from mfrn.data.samples import skimage_faces

        images += skimage_faces()
    report = measure(images, landmarker)
    print(f"media: {len(images)} frames/photos; predictor {args.predictor.name}")
    print(f"machine: {machine()}; commit {commit()}")
    print(report.format())


if __name__ == "__main__":
    main()
