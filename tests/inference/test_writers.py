"""The result stream (results.jsonl) and the final results.json / results.csv."""

from __future__ import annotations

import csv
import io
import json

import pytest

from mfrn.inference.results import FaceScore, FrameResult, MediaResult
from mfrn.inference.writers import CSV_COLUMNS, ResultStream, results_csv, write_results

HEADER = {"checkpoint": "a.pt", "checkpoint_sha256": "abc", "protocol": "protocol: p", "calibration": None,
          "threshold": 0.5, "threshold_rule": "uncalibrated", "calibration_line": "no calibration"}


def _record(path: str, score: float | None, status: str = "ok") -> dict:
    if status != "ok":
        return MediaResult.failed(path, "cannot decode", 0.5, "protocol: p").to_json()
    frames = [FrameResult(0, [FaceScore([0, 0, 10, 10], score)] if score is not None else [], score=score)]
    return MediaResult(path, "image", score, frames, 1, int(score is not None), 0.5, "protocol: p").to_json()


def test_a_stream_is_read_back_by_a_rerun_and_a_torn_line_dropped(tmp_path):
    with ResultStream(tmp_path, HEADER) as stream:
        stream.write("/a", _record("a.png", 0.9))
        stream.write("/b", _record("b.png", None, status="failed"))
    with open(tmp_path / "results.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"key": "/c", "result": {"path": "c.pn')  # killed mid-write
    with ResultStream(tmp_path, HEADER) as stream:
        assert stream.done("/a")["score"] == 0.9 and stream.done("/b")["status"] == "failed"
        assert stream.done("/c") is None
        stream.write("/b", _record("b.png", 0.1))  # a retried failure: the latest line wins, in its place
        assert [r["path"] for r in stream.records()] == ["a.png", "b.png"]
    lines = (tmp_path / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)


def test_a_stream_of_other_settings_is_refused(tmp_path):
    ResultStream(tmp_path, HEADER).close()
    with pytest.raises(ValueError, match="another checkpoint"):
        ResultStream(tmp_path, {**HEADER, "checkpoint_sha256": "def"})
    with pytest.raises(ValueError, match="another protocol"):
        ResultStream(tmp_path, {**HEADER, "protocol": "protocol: q"})


def test_results_json_and_csv(tmp_path):
    records = [_record("a.png", 0.9), _record("b.png", None), _record("c.png", None, status="failed")]
    json_path, csv_path = write_results(tmp_path, HEADER, records, complete=False)
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["schema"] == "mfrn-detect-results" and document["schema_version"] == 1
    assert document["complete"] is False and document["checkpoint"] == "a.pt"
    assert document["counts"] == {"real": 0, "fake": 1, "no_face": 1, "files": 3, "failed": 1}
    assert [r["path"] for r in document["results"]] == ["a.png", "b.png"]
    assert [r["path"] for r in document["skipped"]] == ["c.png"]
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    by_file = {r["path"]: r for r in rows if r["face"] == ""}
    assert by_file["b.png"]["label"] == "no_face" and by_file["b.png"]["no_face"] == "1" and by_file["b.png"]["score"] == ""
    assert by_file["a.png"]["label"] == "fake" and by_file["a.png"]["no_face"] == "0"
    assert by_file["c.png"]["status"] == "failed" and by_file["c.png"]["note"] == "cannot decode"
    face = next(r for r in rows if r["face"] == "0")
    assert face["path"] == "a.png" and face["label"] == "fake" and face["box"] == "0.0 0.0 10.0 10.0"
    assert results_csv([]) == ",".join(CSV_COLUMNS) + "\n"
