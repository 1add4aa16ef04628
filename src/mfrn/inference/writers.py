"""Result writers shared by ``mfrn detect`` and the server: a stream that loses nothing, and the
final ``results.json`` / ``results.csv``.

``ResultStream`` appends one durable JSON line per finished file to ``results.jsonl`` as results are
made (the first line records the settings: checkpoint digest, protocol, calibration). A rerun into
the same folder reads it back and can skip what is done; a different checkpoint or protocol is
refused. ``write_results`` turns the records into ``results.json`` (schema ``mfrn-detect-results``)
and ``results.csv``, each written atomically, so a Ctrl-C leaves complete files of what was done.
Every per-file record is ``mfrn.inference.results.result_record``'s output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from mfrn.inference.results import FAILED, OK, LABELS
from mfrn.io_utils import append_durably, atomic_write_json, atomic_write_text, cut_torn_tail

STREAM_NAME = "results.jsonl"
DOCUMENT_SCHEMA = "mfrn-detect-results"
DOCUMENT_SCHEMA_VERSION = 1
CSV_COLUMNS = ("path", "kind", "status", "frame", "face", "box", "score", "label", "no_face", "n_frames",
               "n_frames_with_face", "note")
_SETTINGS = ("checkpoint_sha256", "protocol", "calibration")


def file_digest(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_header(detector, checkpoint: Path | str | None) -> dict[str, Any]:
    """What a results folder records about how its results were made."""
    calibration = detector.calibration.to_dict() if detector.calibration is not None else None
    info = detector.model_info()
    return {
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "checkpoint_sha256": None if checkpoint is None else file_digest(checkpoint),
        "protocol": detector.protocol.describe(),
        "calibration": calibration,
        "threshold": detector.threshold,
        "threshold_rule": detector.threshold_rule,
        "calibration_line": detector.describe_calibration(),
        "model": {key: info[key] for key in ("model", "backbone", "input_size", "mfrn_version")},
    }


class ResultStream:
    """``results.jsonl`` in ``out_dir``: a header line, then ``{"key", "result"}`` per finished file."""

    def __init__(self, out_dir: Path, header: dict[str, Any]) -> None:
        self.path = Path(out_dir) / STREAM_NAME
        self.header = header
        self._records: dict[str, dict[str, Any]] = {}
        if cut_torn_tail(self.path) > 0:  # a torn last line (a kill mid-write) is dropped
            self._read_back()
            self._file = open(self.path, "a", encoding="utf-8")
        else:
            self._file = open(self.path, "w", encoding="utf-8")
            append_durably(self._file, json.dumps({"header": header}, ensure_ascii=False) + "\n")

    def _read_back(self) -> None:
        with open(self.path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        try:
            stored = json.loads(lines[0])["header"]
            entries = [json.loads(line) for line in lines[1:] if line.strip()]
        except (json.JSONDecodeError, KeyError, TypeError, IndexError):
            raise ValueError(f"{self.path}: not an mfrn results stream; use another output folder") from None
        changed = [name for name in _SETTINGS if stored.get(name) != self.header.get(name)]
        if changed:
            raise ValueError(
                f"{self.path} holds results made with another {' and '.join(n.replace('_sha256', '') for n in changed)} "
                f"(then: {stored.get('checkpoint')}, {stored.get('protocol')}); write to another output folder, "
                "or delete the folder's results to start again")
        for entry in entries:
            self._records.pop(entry["key"], None)  # the latest line of a key wins, in its place
            self._records[entry["key"]] = entry["result"]

    def done(self, key: str) -> dict[str, Any] | None:
        """The record already written for ``key`` (the latest), or None."""
        return self._records.get(key)

    def write(self, key: str, record: dict[str, Any]) -> None:
        append_durably(self._file, json.dumps({"key": key, "result": record}, ensure_ascii=False) + "\n")
        self._records.pop(key, None)
        self._records[key] = record

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> "ResultStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def results_document(header: dict[str, Any], records: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    """``results.json``: the run's settings, counts, then every file's record (failed ones under "skipped")."""
    ok = [r for r in records if r["status"] == OK]
    counts = {label: sum(r["label"] == label for r in ok) for label in LABELS}
    counts.update(files=len(records), failed=sum(r["status"] == FAILED for r in records))
    return {
        "schema": DOCUMENT_SCHEMA,
        "schema_version": DOCUMENT_SCHEMA_VERSION,
        "complete": complete,
        **{key: value for key, value in header.items() if key != "calibration_line"},
        "counts": counts,
        "results": ok,
        "skipped": [r for r in records if r["status"] != OK],
    }


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def results_csv(records: list[dict[str, Any]]) -> str:
    """One row per file (frame and face empty), then one per face; ``no_face`` has its own column."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        note = r.get("error") or r.get("warning") or ""
        writer.writerow([r["path"], r["kind"] or "", r["status"], "", "", "", _cell(r["score"]), r["label"] or "",
                         int(bool(r["no_face"])), r["n_frames"], r["n_frames_with_face"], note])
        for frame in r["frames"]:
            for number, face in enumerate(frame["faces"]):
                writer.writerow([r["path"], r["kind"], r["status"], frame["index"], number,
                                 " ".join(f"{v:.1f}" for v in face["box"]), _cell(face["score"]), face["label"],
                                 0, "", "", ""])
    return text.getvalue()


def write_results(out_dir: Path, header: dict[str, Any], records: list[dict[str, Any]],
                  complete: bool = True) -> tuple[Path, Path]:
    """``results.json`` and ``results.csv`` in ``out_dir``, each written atomically."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "results.json", results_document(header, records, complete))
    atomic_write_text(out_dir / "results.csv", results_csv(records))
    return out_dir / "results.json", out_dir / "results.csv"
