"""The ``mfrn`` command. Thin: it parses arguments and calls the stages; imports are lazy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="detect faces and landmarks in videos/images; write crops + manifest")
    p.add_argument("inputs", nargs="*", type=Path, help="videos, images, folders or .txt lists of paths")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder (manifest + crops)")
    p.add_argument("--dataset", help="read a benchmark with this reader (e.g. ffpp, celebdf_v2) from --root")
    p.add_argument("--root", type=Path, help="dataset root for --dataset")
    p.add_argument("--split", help="only this split of --dataset (train/val/test)")
    p.add_argument("--reader-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option for the dataset reader, e.g. compression=c23 (repeatable)")
    p.add_argument("--frames", type=int, default=32, help="evenly spaced frames per video (default 32)")
    p.add_argument("--detector", default="dlib", help="face detector backend: dlib | mtcnn | retinaface")
    p.add_argument("--landmarker", default="dlib", help="landmark backend: dlib | dlib81")
    p.add_argument("--detector-weights", type=Path, help="weights file for the detector (retinaface: Resnet50_Final.pth)")
    p.add_argument("--landmarker-weights", type=Path, help="shape predictor file (dlib81: shape_predictor_81_face_landmarks.dat)")
    p.add_argument("--device", help="device for GPU-capable detectors (cpu, cuda)")
    p.add_argument("-j", "--workers", type=int, default=1, help="worker processes (each loads the models once)")
    p.add_argument("--shard", help="i/n: process only shard i of n (split the work across machines)")
    p.add_argument("--retry-failed", action="store_true", help="process again items recorded as failed")
    p.add_argument("--crop-format", choices=("png", "jpg"), default="png")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_prepare)


def _parse_options(items: list[str]) -> dict:
    import yaml

    options = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: option {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        options[key] = yaml.safe_load(value)
    return options


def _run_prepare(args) -> int:
    from mfrn.data.prepare import PrepareConfig, items_from_paths, items_from_reader, parse_shard, run_prepare

    if args.dataset:
        if args.root is None:
            raise SystemExit("error: --dataset needs --root")
        from mfrn.data.readers import build_reader

        reader = build_reader(args.dataset, args.root, **_parse_options(args.reader_option))
        items = items_from_reader(reader.records(args.split))
    else:
        if not args.inputs:
            raise SystemExit("error: give media paths, or --dataset NAME --root ROOT")
        items = items_from_paths(args.inputs)
    detector_kwargs, landmarker_kwargs = {}, {}
    if args.detector_weights:
        detector_kwargs["weights_path"] = str(args.detector_weights)
    if args.device:
        detector_kwargs["device"] = args.device
    if args.landmarker_weights:
        landmarker_kwargs["model_path"] = str(args.landmarker_weights)
    config = PrepareConfig(
        n_frames=args.frames, detector=args.detector, landmarker=args.landmarker,
        detector_kwargs=detector_kwargs, landmarker_kwargs=landmarker_kwargs, crop_format=args.crop_format,
    )
    shard = parse_shard(args.shard) if args.shard else None
    summary = run_prepare(items, args.out, config, workers=args.workers, shard=shard,
                          retry_failed=args.retry_failed, progress=not args.no_progress)
    print(summary.format())
    if summary.interrupted:
        return 130
    return 0


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


_EXTRA_COMMANDS: list = []


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
