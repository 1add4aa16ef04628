"""The ``mfrn`` command. Thin: it parses arguments and calls the stages; imports are lazy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Exit codes of every `mfrn` command (the README lists them):
EXIT_OK = 0  # done; some inputs may have failed, each recorded with its reason
EXIT_USAGE = 2  # bad arguments, bad config, unusable input or output path: nothing was done
EXIT_NOTHING_SUCCEEDED = 3  # the run went through but no input succeeded (all failed, or none found)
EXIT_INTERRUPTED = 130  # Ctrl-C; what was finished is kept and a rerun resumes


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="detect faces and landmarks in videos/images; write crops + manifest")
    p.add_argument("inputs", nargs="*", type=Path, help="videos, images, folders or .txt lists of paths")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder (manifest + crops)")
    p.add_argument("-c", "--config", type=Path,
                   help="a training config whose prepare: section gives the settings below (options given here win)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. prepare.n_frames=8 (repeatable)")
    p.add_argument("--dataset", help="read a benchmark with this reader (e.g. ffpp, celebdf_v2) from --root")
    p.add_argument("--root", type=Path, help="dataset root for --dataset")
    p.add_argument("--split", help="only these splits of --dataset, comma-separated (e.g. train,val)")
    p.add_argument("--real-only", action=argparse.BooleanOptionalAction, default=None,
                   help="prepare only the real videos of --dataset (training needs no fake video)")
    p.add_argument("--reader-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option for the dataset reader, e.g. compression=raw (repeatable)")
    p.add_argument("--frames", type=int, default=None, help="evenly spaced frames per video (default 32)")
    p.add_argument("--clip-length", type=int, default=None, metavar="T",
                   help="clips of T consecutive frames instead (for the temporal head), faces tracked through each "
                        "clip; 0 = single frames (the default)")
    p.add_argument("--clips-per-video", type=int, default=None, metavar="K",
                   help="with --clip-length: K clips evenly spaced over each video (default 4)")
    p.add_argument("--clip-stride", type=int, default=None, help="with --clip-length: frames between clip frames "
                   "(default 1: consecutive)")
    p.add_argument("--detector", default=None, help="face detector backend: dlib (default) | mtcnn | retinaface")
    p.add_argument("--landmarker", default=None, help="landmark backend: dlib (default) | dlib81")
    p.add_argument("--detector-weights", type=Path, help="weights file for the detector (retinaface: Resnet50_Final.pth)")
    p.add_argument("--landmarker-weights", type=Path, help="shape predictor file (dlib81: shape_predictor_81_face_landmarks.dat)")
    p.add_argument("--detect-size", type=int, metavar="PX",
                   help="the detector's working size: the long side of the copy it looks at (dlib: 640, then "
                        "larger scales when it finds no face; retinaface: 2048, as SBI)")
    p.add_argument("--detector-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option for the detector backend, e.g. search_side=2560 (dlib) or min_face_size=40 (mtcnn)")
    _add_max_pixels(p)
    p.add_argument("--device", help="device for GPU-capable detectors (cpu, cuda)")
    p.add_argument("-j", "--workers", type=int, default=1, help="worker processes (each loads the models once)")
    p.add_argument("--shard", help="i/n: process only shard i of n (split the work across machines)")
    p.add_argument("--retry-failed", action="store_true", help="process again items recorded as failed")
    p.add_argument("--crop-format", choices=("png", "jpg"), default=None, help="png (default, lossless) or jpg")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_prepare)


def _parse_options(items: list[str]) -> dict:
    import yaml

    options = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"option {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        options[key] = yaml.safe_load(value)
    return options


def _add_max_pixels(p) -> None:
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse images of more than N pixels before decoding them (default 100000000)")


def _run_prepare(args) -> int:
    from dataclasses import replace

    from mfrn.data.prepare import (PrepareSection, dataset_items, detector_kwargs_from_options, media_items,
                                   parse_shard, parse_splits, run_prepare)

    section = _load_config(args).prepare if (args.config or args.overrides) else PrepareSection()
    given = {"dataset": args.dataset, "real_only": args.real_only, "n_frames": args.frames, "detector": args.detector,
             "landmarker": args.landmarker, "crop_format": args.crop_format, "max_pixels": args.max_pixels,
             "clip_length": args.clip_length, "clips_per_video": args.clips_per_video, "clip_stride": args.clip_stride}
    # replace() checks the settings (PrepareConfig.__post_init__) before anything is read or written
    section = replace(section, **{key: value for key, value in given.items() if value is not None})
    section.splits = parse_splits(args.split if args.split is not None else section.splits)
    section.reader_options = {**section.reader_options, **_parse_options(args.reader_option)}
    section.detector_kwargs = detector_kwargs_from_options(
        section.detector, {**section.detector_kwargs, **_parse_options(args.detector_option)},
        args.detector_weights, args.detect_size, args.device)
    section.landmarker_kwargs = dict(section.landmarker_kwargs)
    if args.landmarker_weights:
        section.landmarker_kwargs["model_path"] = str(args.landmarker_weights)
    shard = parse_shard(args.shard) if args.shard else None
    if section.dataset and not args.inputs:
        if args.root is None:
            raise ValueError("--dataset needs --root")
        from mfrn.data.readers import build_reader

        reader = build_reader(section.dataset, args.root, **section.reader_options)
        items, chosen = dataset_items(reader, section.splits, section.real_only)
        print(chosen)
        problems = [] if items else [(str(args.root), f"no media found in {args.root}: {chosen}")]
    else:
        if not args.inputs:
            raise ValueError("give media paths, or --dataset NAME --root ROOT")
        items, problems = media_items(args.inputs)
    if not items:
        for path, reason in problems:
            print(f"error: {path}: {reason}" if not reason.startswith("no media found") else f"error: {reason}",
                  file=sys.stderr)
        return EXIT_NOTHING_SUCCEEDED
    summary = run_prepare(items, args.out, section.prepare_config(), workers=args.workers, shard=shard,
                          retry_failed=args.retry_failed, progress=not args.no_progress)
    summary.input_problems = problems
    print(summary.format())
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_NOTHING_SUCCEEDED if summary.nothing_succeeded else EXIT_OK


def _add_datasets(sub) -> None:
    p = sub.add_parser("datasets", help="inspect benchmark datasets")
    dsub = p.add_subparsers(dest="datasets_command", required=True)
    from mfrn.data.verify import add_cli

    add_cli(dsub)


def build_parser() -> argparse.ArgumentParser:
    from mfrn import __version__

    parser = argparse.ArgumentParser(
        prog="mfrn",
        description="Generalizable deepfake detection: RBI training fakes + the MFRN detector.",
    )
    parser.add_argument("--version", action="version", version=f"mfrn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_prepare(sub)
    _add_datasets(sub)
    for add in _EXTRA_COMMANDS:
        add(sub)
    return parser



def _add_config_args(p) -> None:
    p.add_argument("-c", "--config", type=Path, help="YAML config (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. train.epochs=5 (repeatable)")


def _load_config(args):
    from mfrn.config import load_config

    return load_config(args.config, args.overrides)


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="training fakes: preview grids, reconstruction cache")
    ssub = p.add_subparsers(dest="synth_command", required=True)
    prev = ssub.add_parser("preview", help="PNG grids: real | SBI | RBI | reconstruction | region | boundary")
    prev.add_argument("prepared", type=Path, help="folder written by `mfrn prepare`")
    prev.add_argument("-o", "--out", type=Path, required=True)
    prev.add_argument("-n", "--num", type=int, default=8, help="number of samples")
    prev.add_argument("--clip", action="store_true", help="temporally consistent clips of clip.length frames: a "
                      "strip PNG each (rows real | fake | maps | difference, one column per frame)")
    prev.add_argument("--gif", action="store_true", help="with --clip: an animated GIF per clip instead of a strip")
    _add_config_args(prev)
    prev.set_defaults(func=_run_synth_preview)
    cache = ssub.add_parser("cache", help="precompute K noisy reconstructions of the faces training reads (RBI): real "
                                          "faces of train + val, data.frames_per_video per video")
    cache.add_argument("prepared", type=Path)
    cache.add_argument("-o", "--out", type=Path, help="cache folder (default <prepared>/rbi_cache)")
    cache.add_argument("--batch-size", type=int, default=16)
    cache.add_argument("--device", default=None, help="cpu or cuda (default: cuda when there is one)")
    _add_config_args(cache)
    cache.set_defaults(func=_run_synth_cache)


def _reconstructor(config, device=None):
    from mfrn.synth.rbi import build_reconstructor_from_config

    return build_reconstructor_from_config(config.rbi, device=device)


def _prepared_faces(prepared: Path) -> list:
    """The prepared folder's faces, or one line that says what is missing and what to run."""
    from mfrn.data.manifest import Manifest

    manifest = Manifest(prepared)
    faces = manifest.faces()
    if not faces:
        raise ValueError(manifest.why_no_faces())
    return faces


def _training_reals(prepared: Path, stage: str, purpose: str, val_fraction: float = 0.2,
                    frames_per_video: int = 0, faces_per_frame: str = "all") -> list:
    """The real faces of the train and val splits (``select_faces``), or one line on what is missing."""
    from mfrn.data.manifest import Manifest
    from mfrn.synth.dataset import TRAINING_SPLITS, select_faces

    manifest = Manifest(prepared)
    selection = select_faces(manifest, TRAINING_SPLITS, val_fraction, frames_per_video, faces_per_frame)
    if not selection.faces and not selection.n_left_out:
        raise ValueError(manifest.why_no_faces())
    print(selection.format(stage))
    if not selection.faces:
        raise ValueError(f"{prepared}: no real faces of the train or val split to {purpose}")
    return selection.faces


def _run_synth_preview(args) -> int:
    from mfrn.io_utils import ensure_output_dir
    from mfrn.synth.preview import write_previews
    from mfrn.synth.sbi import SelfBlender

    config = _load_config(args)
    if args.num < 1:
        raise ValueError(f"-n/--num must be >= 1, got {args.num}")
    faces = _prepared_faces(args.prepared)
    ensure_output_dir(args.out)
    if args.clip or args.gif:
        return _synth_preview_clips(args, config, faces)
    step = max(1, len(faces) // args.num)
    chosen = faces[::step][: args.num]
    reconstructor = _preview_reconstructor(args, config)
    paths = write_previews(chosen, args.out, SelfBlender(config.sbi), reconstructor, config.rbi.noise)
    print(f"wrote {len(paths)} preview grids to {args.out}")
    return 0


def _preview_reconstructor(args, config):
    """The generator for the previews' RBI columns, or None (SBI only, and the line that says how to add it)."""
    from mfrn.synth.rbi import missing_generator

    if config.rbi.source == "off":
        return None
    if missing_generator(config.rbi):
        print("SBI columns only: no generator for the RBI ones; add them with --set "
              "\"rbi.reconstructor_kwargs={checkpoint: gen.pt}\" (train gen.pt with `mfrn generator train "
              f"{args.prepared} -o gen.pt`)")
        return None
    return _reconstructor(config)


def _synth_preview_clips(args, config, faces) -> int:
    from mfrn.data.clips import clips_from_faces
    from mfrn.synth.clips import ClipBlender
    from mfrn.synth.preview import write_clip_previews

    clips = clips_from_faces(faces, config.clip.length, config.clip.min_track_iou)
    if not clips:
        raise ValueError(f"{args.prepared}: no clips of {config.clip.length} consecutive frames of one face "
                         f"(prepare with --clip-length {config.clip.length}, or set clip.length)")
    chosen = clips[:: max(1, len(clips) // args.num)][: args.num]
    paths = write_clip_previews(chosen, args.out, ClipBlender(config.sbi, config.clip),
                                _preview_reconstructor(args, config), config.rbi.noise, gif=args.gif)
    print(f"wrote {len(paths)} clip previews ({config.clip.length} frames each) to {args.out}")
    return 0


def _run_synth_cache(args) -> int:
    from mfrn.io_utils import ensure_output_dir
    from mfrn.synth.rbi import build_cache
    from mfrn.weights import check_device

    config = _load_config(args)
    device = str(check_device(args.device))
    # exactly the faces training will read: real faces of train + val, data.frames_per_video of each video,
    # data.faces_per_frame of each frame
    faces = _training_reals(args.prepared, "synth cache", "reconstruct", config.data.val_fraction,
                            config.data.frames_per_video, config.data.faces_per_frame)
    out = ensure_output_dir(args.out or Path(config.rbi.cache_dir or args.prepared / "rbi_cache"), "cache folder")
    index = build_cache(faces, _reconstructor(config, device), out, config.rbi.variants_per_face,
                        config.rbi.noise, batch_size=args.batch_size, seed=config.train.seed)
    print(f"cache {out}: {len(index['entries'])} faces x {config.rbi.variants_per_face} reconstructions; "
          f"{len(index['failures'])} failed")
    return EXIT_OK if index["entries"] else EXIT_NOTHING_SUCCEEDED


def _add_generator(sub) -> None:
    p = sub.add_parser("generator", help="the built-in face generator used by RBI")
    gsub = p.add_subparsers(dest="generator_command", required=True)
    t = gsub.add_parser("train", help="train the built-in generator on the prepared real faces of the train and val "
                                      "splits (self-reconstruction); fake videos and test splits are left out")
    t.add_argument("prepared", type=Path)
    t.add_argument("-o", "--out", type=Path, required=True, help="checkpoint file to write")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--max-minutes", type=float, default=0.0, help="stop after this long (0: run all steps)")
    t.add_argument("--device", default=None)
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="BuiltinGeneratorConfig field, e.g. crop_size=128")
    t.set_defaults(func=_run_generator_train)


def _run_generator_train(args) -> int:
    from mfrn.config_schema import apply_overrides, from_dict
    from mfrn.io_utils import ensure_output_dir
    from mfrn.synth.reconstructors.builtin import BuiltinGeneratorConfig
    from mfrn.synth.reconstructors.train_builtin import BuiltinTrainConfig, train_builtin_generator
    from mfrn.weights import check_device

    cfg = from_dict(BuiltinGeneratorConfig, apply_overrides({}, args.overrides))
    device = str(check_device(args.device))
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.out.is_dir():
        raise ValueError(f"{args.out}: -o is a folder; give the checkpoint file to write, e.g. {args.out / 'gen.pt'}")
    ensure_output_dir(args.out.parent, "folder of the checkpoint")
    selected = _training_reals(args.prepared, "generator train", "train on")  # never a test split or a fake video
    faces = [(image, keypoints) for image, _, keypoints, _ in (s.load() for s in selected)]
    budget = BuiltinTrainConfig(steps=args.steps, max_seconds=60.0 * args.max_minutes)
    report = train_builtin_generator(faces, cfg, args.out, device=device, train_cfg=budget, progress=True)
    print(report.format() if hasattr(report, "format") else report)
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train MFRN or the SBI baseline (torchrun for several GPUs)")
    _add_config_args(p)
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from a checkpoint (default: <out_dir>/last.pt, which must exist)")
    p.add_argument("--overwrite", action="store_true",
                   help="start a fresh run in an out_dir that holds an earlier run's checkpoints, replacing them")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from mfrn.train.loop import train

    config = _load_config(args)
    import os

    result = train(config, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    if int(os.environ.get("RANK", 0)) != 0:  # under torchrun, rank 0 reports
        return 0
    if result.selected_checkpoint and result.selection is not None:
        print(f"selected checkpoint (evaluate this one): {result.selected_checkpoint} = {result.selection.describe()}")
    if result.best_checkpoint and result.best_val_auc is not None:
        print(f"best checkpoint: {result.best_checkpoint} (val AUC {result.best_val_auc:.4f})")
    print(f"last checkpoint: {result.last_checkpoint} (step {result.global_step})")
    return 0


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="choose a checkpoint's verdict threshold (and region outline) on its validation "
                                         "split and store it in the checkpoint (what training does at its end)")
    p.add_argument("checkpoint", type=Path, help="an mfrn checkpoint (selected.pt, best.pt, last.pt, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override its stored config, e.g. data.prepared=FOLDER (moved) or calibration.rule=eer "
                        "(repeatable)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the GPU where there is one)")
    p.set_defaults(func=_run_calibrate)


def _run_calibrate(args) -> int:
    from mfrn.train.calibrate import calibrate_file

    report = calibrate_file(args.checkpoint, args.overrides, device=args.device)
    print(f"{args.checkpoint}:")
    print(report.format())
    return EXIT_OK


def _add_detect(sub) -> None:
    p = sub.add_parser("detect", help="verdict (real | fake | no_face) per face and per file for images, videos, folders")
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("-m", "--checkpoint", type=Path, required=True)
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="folder for results.jsonl (streamed), results.json, results.csv, overlays; a rerun resumes")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the GPU where there is one)")
    p.add_argument("--frames", type=int, default=None, help="frames per video (default: the checkpoint's protocol)")
    p.add_argument("--no-overlay", action="store_true")
    p.add_argument("--retry-failed", action="store_true", help="score again the files an earlier run recorded as failed")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_detect)


def _run_detect(args) -> int:
    from mfrn.detect import run_detect

    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    summary = run_detect(args.inputs, args.checkpoint, args.out, device=args.device, n_frames=args.frames,
                         overlays=not args.no_overlay, retry_failed=args.retry_failed, progress=not args.no_progress)
    print(summary)
    if not summary.complete:
        return EXIT_INTERRUPTED
    if summary.n_ok == 0:
        print(f"error: no input could be scored ({len(summary.failures)} failed)", file=sys.stderr)
        return EXIT_NOTHING_SUCCEEDED
    return EXIT_OK


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on a benchmark with the video protocol")
    p.add_argument("-m", "--checkpoint", type=Path, required=True)
    p.add_argument("--dataset", required=True, action="append",
                   help="reader name (ffpp, celebdf_v2, dfd, dfdc, dfdcp, ffiw, deeperforensics, folder); repeatable")
    p.add_argument("--root", type=Path, required=True, action="append", help="dataset root (one per --dataset)")
    p.add_argument("--split", default="test")
    p.add_argument("--reader-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--device", default=None)
    p.add_argument("--perturb", help="robustness family (jpeg, h264, blur, noise, downscale) swept over its five levels, "
                                     "or over your own: h264:23,30,35,40 (CRFs), jpeg:90,50,10 (qualities)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="protocol override, e.g. eval.n_frames=32")
    p.add_argument("--localisation", action="store_true",
                   help="pixel AUC / IoU of the predicted region maps against the dataset's mask videos (FF++)")
    p.add_argument("--strict", action="store_true",
                   help="refuse to evaluate when a video the dataset lists is not on disk (default: count it as missing)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_eval)


def _run_eval(args) -> int:
    from mfrn.evaluate.runner import run_eval_command

    outcome = run_eval_command(args, _parse_options(args.reader_option))
    if outcome.n_ok == 0:
        print(f"error: no video of {', '.join(outcome.datasets)} could be scored (see the failed and missing counts above)",
              file=sys.stderr)
        return EXIT_NOTHING_SUCCEEDED
    return EXIT_OK


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train a detector on real faces on this CPU and judge it on real face swaps it never saw; "
                                    "writes a report")
    p.add_argument("-o", "--out", type=Path, default=Path("mfrn-demo"))
    p.add_argument("--generator-steps", type=int, default=None,
                   help="training steps of the built-in generator (default 160: about 2 minutes on 2 cores)")
    p.add_argument("--minutes", type=float, default=None,
                   help="the most the built-in generator may train (minutes, default 4): a slower machine stops it "
                        "early, and the report says so")
    p.add_argument("--epochs", type=int, default=None, help="detector training epochs (default: configs/demo.yaml's)")
    p.add_argument("--quick", action="store_true", help="a much shorter run on a few clips (for tests)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override configs/demo.yaml, e.g. train.sam=false (repeatable); the report shows the config")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from mfrn.demo import GENERATOR_MINUTES, GENERATOR_STEPS, run_demo

    if (args.generator_steps is not None and args.generator_steps < 1) or (args.minutes is not None and args.minutes <= 0):
        raise ValueError("--generator-steps must be >= 1 and --minutes > 0")
    return run_demo(args.out, minutes=GENERATOR_MINUTES if args.minutes is None else args.minutes, quick=args.quick,
                    epochs=args.epochs, overrides=args.overrides,
                    generator_steps=GENERATOR_STEPS if args.generator_steps is None else args.generator_steps)


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="a web page and an HTTP API for detection (jobs kept in --data across restarts)")
    p.add_argument("-m", "--checkpoint", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; any other needs --token)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data", type=Path, default=Path("mfrn-serve"),
                   help="folder for jobs.sqlite3, uploads, overlays (default ./mfrn-serve)")
    p.add_argument("--workers", type=int, default=1, help="jobs analysed at once (threads sharing one model)")
    p.add_argument("--token", default=None,
                   help="require 'Authorization: Bearer TOKEN' on the API (or set MFRN_SERVE_TOKEN, which ps does not show)")
    p.add_argument("--allow-no-token", action="store_true", help="serve a non-loopback --host without a token anyway")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the GPU where there is one)")
    p.add_argument("--frames", type=int, default=None, help="frames per video (default: the checkpoint's protocol)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload (413 beyond it; default 200)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image or video frame (default 40 MP)")
    p.add_argument("--max-duration", type=float, default=600.0, help="longest video in seconds (default 600)")
    p.add_argument("--max-frames", type=int, default=36_000, help="most frames in a video (default 36000)")
    p.add_argument("--max-queued", type=int, default=32, help="jobs waiting before uploads get 429 (default 32)")
    p.add_argument("--retention-days", type=float, default=7.0,
                   help="delete finished jobs and their files after this many days (0 keeps them; default 7)")
    p.add_argument("--max-attempts", type=int, default=2,
                   help="runs a job gets when the server is killed during it; then it is failed (default 2)")
    p.add_argument("--keep-uploads", action="store_true", help="keep uploaded files after their job is done")
    p.add_argument("--ssl-certfile", type=Path, help="serve HTTPS with this certificate (with --ssl-keyfile)")
    p.add_argument("--ssl-keyfile", type=Path)
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=_run_serve)


def _run_serve(args) -> int:
    import os

    try:
        from mfrn.serve.run import TOKEN_ENV, ServeOptions, serve
        from mfrn.serve.config import MIB, ServeLimits

        import fastapi  # noqa: F401  (the [serve] extra)
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise ValueError(f"mfrn serve needs the serve extra ({error.name} is missing): pip install 'mfrn[serve]'") from None
    limits = ServeLimits(max_upload_bytes=int(args.max_upload_mb * MIB), max_pixels=args.max_pixels,
                         max_duration_s=args.max_duration, max_frames=args.max_frames, max_queued=args.max_queued)
    options = ServeOptions(
        checkpoint=args.checkpoint, host=args.host, port=args.port, data_dir=args.data, workers=args.workers,
        token=args.token or os.environ.get(TOKEN_ENV) or None, device=args.device, n_frames=args.frames, limits=limits,
        retention_days=args.retention_days, max_attempts=args.max_attempts, keep_uploads=args.keep_uploads,
        allow_no_token=args.allow_no_token, ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
        log_level=args.log_level)
    return serve(options)


_EXTRA_COMMANDS: list = [_add_synth, _add_generator, _add_train, _add_calibrate, _add_eval, _add_detect, _add_demo, _add_serve]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":  # batch jobs: freed memory kept for reuse (mfrn.runtime); a server keeps malloc's way
        from mfrn.runtime import retain_freed_memory

        retain_freed_memory()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a clear one-line message; MFRN_DEBUG=1 shows the traceback
        import os

        from mfrn.data.media import MediaError

        one_line = (FileNotFoundError, PermissionError, ValueError, MediaError)
        if os.environ.get("MFRN_DEBUG") or not isinstance(exc, one_line):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
