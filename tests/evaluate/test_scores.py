from __future__ import annotations

import pytest

from mfrn.inference.protocol import ProtocolConfig
from mfrn.evaluate.scores import (
    FrameScoreWriter, ScoreWriter, VideoResult, decode_frame_scores, encode_frame_scores, read_frame_scores,
    read_meta, read_scores,
)


def _result(i: int, label: int = 1, **kw) -> VideoResult:
    base = dict(key=f"ffpp/Deepfakes/c23/{i:03d}_{i + 1:03d}", dataset="ffpp", method="Deepfakes", label=label,
                score=0.1 * i, n_frames=3, n_frames_with_face=2, frame_scores=[0.25, None, 0.75])
    base.update(kw)
    return VideoResult(**base)


def test_roundtrip(tmp_path):
    path = tmp_path / "scores" / "videos.csv"
    with ScoreWriter(path, protocol=ProtocolConfig()) as writer:
        writer.write(_result(1))
        writer.write(_result(2, label=0, method="youtube", reason="a, \"quoted\"\nreason"))
        writer.write(_result(3, status="failed", reason="decode error", score=float("nan"), n_frames=0,
                             n_frames_with_face=0, frame_scores=[]))
    results = read_scores(path)
    assert [r.key for r in results] == [_result(i).key for i in (1, 2, 3)]
    first = results[0]
    assert (first.label, first.method, first.n_frames, first.n_frames_with_face) == (1, "Deepfakes", 3, 2)
    assert first.score == pytest.approx(0.1) and first.frame_scores == [0.25, None, 0.75]
    assert results[1].reason == 'a, "quoted" reason'  # one line per row
    assert results[2].status == "failed" and results[2].frame_scores == []
    assert read_meta(path)["protocol"] == ProtocolConfig().describe()


def test_resume_after_torn_last_line(tmp_path):
    path = tmp_path / "videos.csv"
    with ScoreWriter(path) as writer:
        writer.write(_result(1))
        writer.write(_result(2))
    with open(path, "a", encoding="utf-8") as f:  # a crash in the middle of row 3
        f.write("ffpp/Deepfakes/c23/003_004,ffpp,Deepf")
    assert len(read_scores(path)) == 2  # readers ignore the torn line
    with ScoreWriter(path) as writer:
        assert writer.done_keys() == {_result(1).key, _result(2).key}
        writer.write(_result(3))
    results = read_scores(path)
    assert [r.key for r in results] == [_result(i).key for i in (1, 2, 3)]
    assert path.read_text().count("\n") == 4  # header + 3 rows, the torn text is gone


def test_torn_header_is_rewritten(tmp_path):
    path = tmp_path / "videos.csv"
    path.write_text("key,data")
    with ScoreWriter(path) as writer:
        assert writer.done_keys() == set()
        writer.write(_result(1))
    assert len(read_scores(path)) == 1


def test_retry_failed_and_last_row_wins(tmp_path):
    path = tmp_path / "videos.csv"
    with ScoreWriter(path) as writer:
        writer.write(_result(1, status="failed", reason="timeout"))
        writer.write(_result(2))
    with ScoreWriter(path) as writer:
        assert writer.done_keys(include_failed=False) == {_result(2).key}
        writer.write(_result(1, score=0.9))
    results = {r.key: r for r in read_scores(path)}
    assert len(results) == 2 and results[_result(1).key].status == "ok"
    assert results[_result(1).key].score == pytest.approx(0.9)


def test_protocol_mismatch_and_foreign_file_are_refused(tmp_path):
    path = tmp_path / "videos.csv"
    with ScoreWriter(path, protocol=ProtocolConfig()) as writer:
        writer.write(_result(1))
    with pytest.raises(ValueError, match="different protocol"):
        ScoreWriter(path, protocol=ProtocolConfig(frame_aggregation="max"))
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="other.csv"):
        ScoreWriter(other)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_scores(tmp_path / "missing.csv")


def test_bad_results_are_refused(tmp_path):
    with ScoreWriter(tmp_path / "v.csv") as writer:
        with pytest.raises(ValueError, match="label"):
            writer.write(_result(1, label=2))
        with pytest.raises(ValueError, match="status"):
            writer.write(_result(1, status="maybe"))
        with pytest.raises(ValueError, match="frame scores"):
            writer.write(_result(1, frame_scores=[0.1]))


def test_frame_scores_file(tmp_path):
    path = tmp_path / "frames.csv"
    with FrameScoreWriter(path) as writer:
        writer.write_video("a", [0, 10, 20], [0.5, None, 0.25])
    with FrameScoreWriter(path) as writer:  # a resumed run writes a frame again: last one wins
        writer.write("a", 20, 0.75)
        writer.write("b", 0, 0.1)
    assert read_frame_scores(path) == {"a": {0: 0.5, 20: 0.75}, "b": {0: 0.1}}


def test_compact_frame_scores():
    text = encode_frame_scores([0.5, None, 0.123456789])
    assert text == "0.5;;0.123457"
    assert decode_frame_scores(text, 3) == [0.5, None, 0.123457]
    assert decode_frame_scores("", 1) == [None] and decode_frame_scores("", 0) == []
    with pytest.raises(ValueError, match="n_frames"):
        decode_frame_scores("0.1;0.2", 3)


def test_long_torn_tail_is_cut(tmp_path):
    path = tmp_path / "videos.csv"
    with ScoreWriter(path) as writer:
        writer.write(_result(1))
    with open(path, "a", encoding="utf-8") as f:
        f.write("x" * 200_000)  # longer than one read-back chunk
    with ScoreWriter(path) as writer:
        assert writer.done_keys() == {_result(1).key}
    assert path.read_text().count("\n") == 2 and "xxx" not in path.read_text()
