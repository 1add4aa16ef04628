"""``verify_dataset``: how much of a benchmark is on disk, against what its publisher lists.

Streams the reader's entries once (never decodes a video): counts per subset, files a label or
split file names but the disk lacks, zero-byte files, duplicate keys, unknown labels."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_LISTED = 20


@dataclass
class SubsetCount:
    subset: str
    found: int
    expected: int | None  # None: nothing published for this subset
    optional: bool = False
    absent: bool = False  # the reader found no folder/file for this subset at all

    @property
    def complete(self) -> bool:
        if self.absent and self.optional:
            return True  # a missing optional subset is reported, never counted against the dataset
        return self.expected is None or self.found >= self.expected

    @property
    def shortfall(self) -> int:
        return 0 if self.expected is None else max(0, self.expected - self.found)


@dataclass
class VerifyReport:
    dataset: str
    root: Path
    subsets: list[SubsetCount] = field(default_factory=list)
    split_counts: dict[str, int] = field(default_factory=dict)
    missing_files: list[Path] = field(default_factory=list)  # the first max_listed of them
    missing_files_total: int = 0
    missing_optional: list[str] = field(default_factory=list)
    missing_required: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # zero-byte files, unknown labels, duplicates
    problems_total: int = 0
    warnings: list[str] = field(default_factory=list)
    total_found: int = 0

    @property
    def incomplete(self) -> list[SubsetCount]:
        return [s for s in self.subsets if not s.complete]

    @property
    def complete(self) -> bool:
        return not self.incomplete and not self.missing_required and self.missing_files_total == 0

    @property
    def ok(self) -> bool:
        """True when every published subset is complete and nothing is broken."""
        return self.complete and self.problems_total == 0

    def format(self) -> str:
        lines = [f"dataset {self.dataset} at {self.root}: {self.total_found} videos found"]
        if self.subsets:
            width = max(len("subset"), *(len(s.subset) for s in self.subsets))
            lines.append(f"  {'subset':<{width}}  {'found':>8}  {'expected':>8}  status")
            for s in self.subsets:
                expected = "-" if s.expected is None else str(s.expected)
                if s.absent and s.optional:
                    status = "absent (optional)"
                elif s.complete:
                    status = "ok"
                else:
                    status = f"INCOMPLETE: {s.shortfall} missing"
                lines.append(f"  {s.subset:<{width}}  {s.found:>8}  {expected:>8}  {status}")
        if self.split_counts:
            lines.append("  splits: " + ", ".join(f"{k} {v}" for k, v in sorted(self.split_counts.items())))
        if self.missing_files_total:
            lines.append(f"missing files ({self.missing_files_total}, named by a label or split file):")
            lines += [f"  {p}" for p in self.missing_files]
            if self.missing_files_total > len(self.missing_files):
                lines.append(f"  ... and {self.missing_files_total - len(self.missing_files)} more")
        if self.missing_required:
            lines.append("missing subsets: " + ", ".join(self.missing_required))
        if self.missing_optional:
            lines.append("missing optional subsets (not fatal): " + ", ".join(self.missing_optional))
        if self.problems_total:
            lines.append(f"problems ({self.problems_total}):")
            lines += [f"  {p}" for p in self.problems]
            if self.problems_total > len(self.problems):
                lines.append(f"  ... and {self.problems_total - len(self.problems)} more")
        if self.warnings:
            lines.append("warnings:")
            lines += [f"  {w}" for w in self.warnings]
        if self.ok:
            lines.append("result: OK")
        else:
            reasons = []
            if self.incomplete or self.missing_required or self.missing_files_total:
                names = ", ".join(s.subset for s in self.incomplete) or "files missing"
                reasons.append(f"incomplete against the published totals ({names})")
            if self.problems_total:
                reasons.append(f"{self.problems_total} problems")
            lines.append("result: NOT OK: " + "; ".join(reasons))
        return "\n".join(lines)


def verify_dataset(
    root: Path | str, name: str | None = None, max_listed: int = DEFAULT_MAX_LISTED, **options
) -> VerifyReport:
    """Checks the dataset at ``root`` (layout ``name``, guessed when None) against the counts its
    publisher lists; ``options`` go to the reader (see ``mfrn.data.readers.build_reader``)."""
    from mfrn.data.readers import READERS, build_reader, detect_dataset
    from mfrn.data.records import LabelError

    root = Path(root)
    if not root.is_dir():
        report = VerifyReport(dataset=name or "unknown", root=root)
        _add_problem(report, f"{root}: not a folder", max_listed)
        return report
    name = name or detect_dataset(root)
    if name is None:
        report = VerifyReport(dataset="unknown", root=root)
        known = ", ".join(READERS.names())
        _add_problem(report, f"{root}: no known dataset layout found; pass --dataset, one of {known}", max_listed)
        return report
    report = VerifyReport(dataset=name, root=root)
    try:
        reader = build_reader(name, root, **options)
    except (FileNotFoundError, ValueError, OSError, KeyError, TypeError) as error:
        _add_problem(report, str(error), max_listed)
        return report

    found: dict[str, int] = {}
    keys: set[str] = set()
    try:
        for record in reader.entries():
            if record.key in keys:
                _add_problem(report, f"{record.path}: duplicate key {record.key}", max_listed)
                continue
            keys.add(record.key)
            if not record.path.is_file():
                report.missing_files_total += 1
                if len(report.missing_files) < max_listed:
                    report.missing_files.append(record.path)
                continue
            if record.path.stat().st_size == 0:
                _add_problem(report, f"{record.path}: zero-byte file", max_listed)
                continue
            if record.mask_path is not None and record.mask_path.stat().st_size == 0:
                _add_problem(report, f"{record.mask_path}: zero-byte mask file", max_listed)
            report.total_found += 1
            report.split_counts[record.split] = report.split_counts.get(record.split, 0) + 1
            for subset in reader.subsets_of(record):
                found[subset] = found.get(subset, 0) + 1
    except (LabelError, ValueError, OSError) as error:
        _add_problem(report, f"reading stopped: {error}", max_listed)

    for message in reader.problems:
        _add_problem(report, message, max_listed)
    report.warnings = list(reader.warnings)
    expected = reader.expected_counts()
    optional = reader.optional_subsets()
    absent = set(reader.missing)
    for subset in [*expected, *sorted(set(found) - set(expected))]:
        report.subsets.append(
            SubsetCount(subset, found.get(subset, 0), expected.get(subset), subset in optional, subset in absent)
        )
    for subset in reader.missing:
        (report.missing_optional if subset in optional else report.missing_required).append(subset)
    return report


def _add_problem(report: VerifyReport, message: str, max_listed: int) -> None:
    report.problems_total += 1
    if len(report.problems) < max_listed:
        report.problems.append(message)


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers ``verify ROOT [--dataset NAME]`` on ``subparsers``; the parsed namespace's
    ``func(args)`` prints the report and returns the exit code (0 if ok, else 1)."""
    from mfrn.data.readers import READERS

    parser = subparsers.add_parser(
        "verify", help="check a benchmark's files against its published counts",
        description="Check a benchmark as distributed: counts per subset, missing and broken files, labels.",
    )
    parser.add_argument("root", type=Path, help="the dataset's root folder, as its publisher ships it")
    parser.add_argument("--dataset", choices=READERS.names(), default=None, help="layout (guessed when omitted)")
    parser.add_argument("--compression", default=None, help="ffpp/dfd: raw (c0), c23 or c40")
    parser.add_argument("--methods", nargs="+", default=None, help="ffpp: methods to check (default all)")
    parser.add_argument("--splits-dir", type=Path, default=None, help="ffpp: folder with train/val/test.json")
    parser.add_argument("--csv-file", type=Path, default=None, help="folder: path,label[,split] CSV")
    parser.add_argument("--max-listed", type=int, default=DEFAULT_MAX_LISTED, help="how many missing files to name")
    parser.set_defaults(func=run_verify_cli)
    return parser


def run_verify_cli(args: argparse.Namespace) -> int:
    options = {
        key: value
        for key, value in (
            ("compression", args.compression),
            ("methods", args.methods),
            ("splits_dir", args.splits_dir),
            ("csv_file", args.csv_file),
        )
        if value is not None
    }
    # The report lists the readers' warnings itself; keep them off stderr here.
    reader_log = logging.getLogger("mfrn.data.readers")
    level = reader_log.level
    reader_log.setLevel(logging.ERROR)
    try:
        report = verify_dataset(args.root, args.dataset, max_listed=args.max_listed, **options)
    finally:
        reader_log.setLevel(level)
    print(report.format())
    return 0 if report.ok else 1
