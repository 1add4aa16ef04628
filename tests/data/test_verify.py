"""verify_dataset on tiny trees: counts against the published totals, missing and broken files."""

from __future__ import annotations

import argparse

import pytest

from mfrn.data.readers.celebdf import CelebDFV2Reader
from mfrn.data.verify import add_cli, verify_dataset
from tests.data.dataset_trees import (
    build_celebdf,
    build_deeperforensics,
    build_dfd,
    build_dfdc,
    build_dfdcp,
    build_ffiw,
    build_ffpp,
    build_folder,
    touch,
)


@pytest.mark.parametrize(
    ("builder", "name", "found"),
    [
        (build_ffpp, "ffpp", 30 + 4 * 6),  # videos plus masks counted as their own subsets
        (build_dfd, "dfd", 5),
        (build_celebdf, "celebdf_v2", 7 + 3),  # every video plus the 3 test ones
        (build_dfdc, "dfdc", 4),
        (build_dfdcp, "dfdcp", 4 + 2),
        (build_ffiw, "ffiw", 8),
        (build_deeperforensics, "deeperforensics", 8),
    ],
)
def test_tiny_tree_is_incomplete_against_published_totals(tmp_path, builder, name, found):
    report = verify_dataset(builder(tmp_path / "data"))  # the layout is detected
    assert report.dataset == name
    assert not report.ok and not report.complete
    assert report.problems_total == 0, report.problems
    counts = {s.subset: s for s in report.subsets}
    assert sum(s.found for s in report.subsets) == found
    for subset in report.incomplete:
        assert subset.expected is not None and subset.found < subset.expected
        assert subset.shortfall == subset.expected - subset.found
    text = report.format()
    assert "INCOMPLETE" in text and "NOT OK" in text
    for subset in report.incomplete:
        assert f"{subset.shortfall} missing" in text
    assert counts  # a table was produced


def test_ffpp_counts_missing_files_and_optional_subsets(tmp_path):
    root = build_ffpp(tmp_path, skip=["Deepfakes/000_003", "original/005"])
    report = verify_dataset(root, "ffpp")
    counts = {s.subset: s for s in report.subsets}
    assert (counts["original"].found, counts["original"].expected) == (5, 1000)
    assert counts["Deepfakes"].found == 5 and counts["Face2Face"].found == 6
    # Named by the split files but absent on disk: listed by path.
    assert report.missing_files_total == 2
    assert set(report.missing_files) == {
        root / "manipulated_sequences/Deepfakes/raw/videos/000_003.mp4",
        root / "original_sequences/youtube/raw/videos/005.mp4",
    }
    # FaceShifter is optional: reported, not counted against the dataset.
    assert "FaceShifter" in report.missing_optional
    assert counts["FaceShifter"].complete and counts["FaceShifter"] not in report.incomplete
    assert report.split_counts == {"train": 2 + 4 * 2 - 1, "val": 2 + 4 * 2, "test": 2 - 1 + 4 * 2}
    text = report.format()
    assert "000_003.mp4" in text and "absent (optional)" in text and "FaceShifter" in text


def test_missing_file_listing_is_truncated(tmp_path):
    root = build_ffpp(tmp_path, methods=("Deepfakes",), skip=[f"Deepfakes/{i}" for i in ("000_003", "003_000", "001_002")])
    report = verify_dataset(root, "ffpp", max_listed=2)
    assert report.missing_files_total == 3 and len(report.missing_files) == 2
    assert "... and 1 more" in report.format()


def test_zero_byte_files_are_problems(tmp_path):
    root = build_folder(tmp_path)
    touch(root / "fake" / "broken.mp4", size=0)
    report = verify_dataset(root)
    assert report.dataset == "folder" and not report.ok
    assert report.problems_total == 1 and "zero-byte" in report.problems[0] and "broken.mp4" in report.problems[0]
    assert report.total_found == 3


def test_unknown_label_is_a_problem_not_a_crash(tmp_path):
    root = build_dfdc(tmp_path, test_rows=["filename,label", "cccccccccc.mp4,2"])
    report = verify_dataset(root, "dfdc")
    assert not report.ok
    assert any("labels.csv, line 2" in p and "'2'" in p for p in report.problems)


def test_unknown_layout_and_bad_options_are_problems(tmp_path):
    (tmp_path / "nothing").mkdir()
    report = verify_dataset(tmp_path / "nothing")
    assert not report.ok and "no known dataset layout" in report.problems[0]
    assert "not a folder" in verify_dataset(tmp_path / "absent", "ffpp").problems[0]
    report = verify_dataset(build_celebdf(tmp_path / "cdf"), "celebdf_v2", compression="c23")
    assert not report.ok and report.problems_total == 1


def test_complete_dataset_is_ok(tmp_path, monkeypatch):
    # Pretend Celeb-DF published exactly the tiny tree, to see a complete dataset pass.
    monkeypatch.setattr(CelebDFV2Reader, "EXPECTED", {"Celeb-real": 2, "YouTube-real": 2, "Celeb-synthesis": 3, "test": 3})
    report = verify_dataset(build_celebdf(tmp_path), "celebdf_v2")
    assert report.ok, report.format()
    assert report.format().endswith("result: OK")
    assert all(s.complete for s in report.subsets)


def test_cli_prints_report_and_returns_exit_code(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="mfrn datasets")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["verify", str(build_folder(tmp_path / "own")), "--dataset", "folder"])
    assert args.func(args) == 0
    assert "result: OK" in capsys.readouterr().out
    args = parser.parse_args(["verify", str(build_ffpp(tmp_path / "ff")), "--methods", "Deepfakes"])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "dataset ffpp" in out and "INCOMPLETE" in out and "Face2Face" not in out
