from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mfrn.inference.protocol import ProtocolConfig
from mfrn.evaluate.scores import FrameScoreWriter, ScoreWriter, VideoResult
from mfrn.evaluate.tables import ALL, SBI_ALL, cross_dataset_table, cross_manipulation_table, evaluate_scores

METHODS = ("Deepfakes", "Face2Face", "FaceSwap")


FIVE = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")


def _write_ffpp(path, rng, frame_path=None, methods=METHODS, compression="c23"):
    """Reals around 0.3; Deepfakes perfectly separated, the others overlapping more and more."""
    shift = {"Deepfakes": 0.6, "Face2Face": 0.2, "FaceSwap": 0.05, "NeuralTextures": 0.1, "FaceShifter": -0.1}
    truth: dict[str, list[tuple[int, float]]] = {m: [] for m in methods}
    reals = []
    frames = FrameScoreWriter(frame_path) if frame_path else None
    with ScoreWriter(path, protocol=ProtocolConfig()) as writer:
        for i in range(12):
            score = 0.3 + 0.2 * rng.random()
            reals.append(score)
            writer.write(VideoResult(f"ffpp/youtube/{compression}/{i:03d}", "ffpp", "youtube", 0, score, 2, 2,
                                     frame_scores=[score - 0.01, score + 0.01]))
            if frames:
                frames.write_video(f"ffpp/youtube/{compression}/{i:03d}", [0, 5], [score - 0.01, score + 0.01])
        for method in methods:
            for i in range(10):
                score = 0.3 + shift[method] + 0.2 * rng.random()
                truth[method].append(score)
                # the same id under several methods: keys must stay distinct
                writer.write(VideoResult(f"ffpp/{method}/{compression}/{i:03d}_{i + 1:03d}", "ffpp", method, 1, score,
                                         2, 2, frame_scores=[score, score]))
                if frames:
                    frames.write_video(f"ffpp/{method}/{compression}/{i:03d}_{i + 1:03d}", [0, 5], [score, score])
        writer.write(VideoResult(f"ffpp/youtube/{compression}/900", "ffpp", "youtube", 0, 0.5, 2, 0, no_face=True,
                                 frame_scores=[None, None]))
        writer.write(VideoResult(f"ffpp/Deepfakes/{compression}/901_902", "ffpp", "Deepfakes", 1, float("nan"),
                                 status="failed", reason="cannot decode"))
    if frames:
        frames.close()
    reals.append(0.5)
    return reals, truth


def test_per_method_breakdown_pairs_each_method_with_reals_only(tmp_path, rng):
    path = tmp_path / "ffpp.csv"
    reals, truth = _write_ffpp(path, rng)
    summary = evaluate_scores(path, bootstrap=50)
    assert (summary.n_videos, summary.n_scored, summary.n_failed, summary.n_no_face) == (44, 43, 1, 1)
    assert summary.failed_reasons == {"cannot decode": 1}
    assert summary.protocol == ProtocolConfig().describe()
    assert [m.method for m in summary.methods] == [ALL, *sorted(METHODS)]
    for method in METHODS:
        row = summary.method(method).video
        assert (row.n_real, row.n_fake) == (13, 10)
        expected = roc_auc_score([0] * 13 + [1] * 10, reals + truth[method])
        assert row.auc == pytest.approx(expected)
    assert summary.method("Deepfakes").video.auc == 1.0
    overall = summary.overall.video
    assert (overall.n_real, overall.n_fake) == (13, 30)
    all_fakes = [s for m in METHODS for s in truth[m]]
    assert overall.auc == pytest.approx(roc_auc_score([0] * 13 + [1] * 30, reals + all_fakes))
    # frame level from the per-frame column: 2 frames per video, the no-face video has none
    assert (summary.overall.frame.n_real, summary.overall.frame.n_fake) == (24, 60)


def test_frame_file_is_used_when_given(tmp_path, rng):
    reals, truth = _write_ffpp(tmp_path / "v.csv", rng, frame_path=tmp_path / "f.csv")
    summary = evaluate_scores(tmp_path / "v.csv", tmp_path / "f.csv", bootstrap=0)
    frame = summary.method("Face2Face").frame
    assert (frame.n_real, frame.n_fake) == (24, 20)
    assert 0.5 < frame.auc <= 1.0


def test_cross_manipulation_table(tmp_path, rng):
    _write_ffpp(tmp_path / "ffpp.csv", rng)
    table = cross_manipulation_table(evaluate_scores(tmp_path / "ffpp.csv", bootstrap=20))
    md = table.markdown
    assert ProtocolConfig().describe() in md and "failed and excluded" in md and "1 without any face" in md
    assert "1 x cannot decode" in md
    rows = list(csv.DictReader(io.StringIO(table.csv)))
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == {"all (DF+F2F+FS)", *METHODS}
    assert by_method["Deepfakes"]["video AUC"] == "100.00"
    assert by_method["Deepfakes"]["paper video AUC"] == "100.00"
    # three methods are not SBI's four-method "all": the paper's FF++ number does not belong beside them
    assert by_method["all (DF+F2F+FS)"]["paper video AUC"] == "n/a"
    assert by_method["Face2Face"]["paper video AUC"] == "n/a"
    assert all(r["SBI video AUC"] == "n/a" for r in rows)
    md_path, csv_path = table.save(tmp_path / "out" / "cross_manip")
    assert md_path.read_text() == md and csv_path.read_text() == table.csv


def test_cross_manipulation_reports_sbi_all_faceshifter_and_all_five(tmp_path, rng):
    """SBI's "all" is DF, F2F, FS, NT: its own row (with the paper's FF++ number), FaceShifter on its
    own, and all five together, each labelled; the c23 videos are named in the title and the notes."""
    reals, truth = _write_ffpp(tmp_path / "ffpp.csv", rng, methods=FIVE)
    summary = evaluate_scores(tmp_path / "ffpp.csv", bootstrap=0)
    assert [m.method for m in summary.methods] == [ALL, SBI_ALL, *sorted(FIVE)]
    assert summary.compression == "c23"
    table = cross_manipulation_table(summary)
    by_method = {r["method"]: r for r in csv.DictReader(io.StringIO(table.csv))}
    assert list(by_method) == ["all (DF+F2F+FS+NT+FSh)", "all (DF+F2F+FS+NT)", *sorted(FIVE)]
    four = [s for m in FIVE[:4] for s in truth[m]]
    expected_four = roc_auc_score([0] * 13 + [1] * 40, reals + four)
    assert by_method["all (DF+F2F+FS+NT)"]["video AUC"] == f"{100 * expected_four:.2f}"
    assert (by_method["all (DF+F2F+FS+NT)"]["n_real"], by_method["all (DF+F2F+FS+NT)"]["n_fake"]) == ("13", "40")
    expected_five = roc_auc_score([0] * 13 + [1] * 50, reals + four + truth["FaceShifter"])
    assert by_method["all (DF+F2F+FS+NT+FSh)"]["video AUC"] == f"{100 * expected_five:.2f}"
    assert by_method["all (DF+F2F+FS+NT)"]["paper video AUC"] == "99.92"
    assert by_method["all (DF+F2F+FS+NT+FSh)"]["paper video AUC"] == "n/a"
    assert by_method["FaceShifter"]["paper video AUC"] == "n/a" and by_method["FaceShifter"]["n_fake"] == "10"
    assert by_method["Deepfakes"]["paper video AUC"] == "100.00"
    assert table.title == "Cross-manipulation (ffpp, c23)"
    assert any("c23 videos; SBI trains and tests on raw (c0)" in note for note in table.notes)
    assert any("SBI's 'all'" in note and "adds FaceShifter" in note for note in table.notes)

    # the cross-dataset table shows both FF++ groups, each beside its own number, and the compression
    cdf = tmp_path / "cdf.csv"
    with ScoreWriter(cdf, protocol=ProtocolConfig()) as writer:
        for i in range(6):
            writer.write(VideoResult(f"celebdf_v2/x/raw/{i}", "celebdf_v2", "x" if i % 2 else "original", i % 2,
                                     0.2 + 0.5 * (i % 2)))
    rows = {r["dataset"]: r for r in csv.DictReader(io.StringIO(
        cross_dataset_table({"ffpp": summary, "celebdf_v2": evaluate_scores(cdf, bootstrap=0)}).csv))}
    assert set(rows) == {"ffpp (c23): all (DF+F2F+FS+NT+FSh)", "ffpp (c23): all (DF+F2F+FS+NT)", "celebdf_v2"}
    assert rows["ffpp (c23): all (DF+F2F+FS+NT)"]["paper video AUC"] == "99.92"
    assert rows["ffpp (c23): all (DF+F2F+FS+NT+FSh)"]["paper video AUC"] == "n/a"
    assert rows["celebdf_v2"]["SBI video AUC"] == "93.18"


def test_four_methods_without_faceshifter_are_sbis_all(tmp_path, rng):
    _write_ffpp(tmp_path / "ffpp.csv", rng, methods=FIVE[:4], compression="raw")
    summary = evaluate_scores(tmp_path / "ffpp.csv", bootstrap=0)
    assert [m.method for m in summary.methods] == [ALL, *sorted(FIVE[:4])]  # "all" is SBI's four: one row
    table = cross_manipulation_table(summary)
    by_method = {r["method"]: r for r in csv.DictReader(io.StringIO(table.csv))}
    assert by_method["all (DF+F2F+FS+NT)"]["paper video AUC"] == "99.92"
    assert table.title == "Cross-manipulation (ffpp, raw)"
    assert any("raw (c0) videos, as SBI" in note for note in table.notes)
    assert any("FaceShifter was not among the scored videos" in note for note in table.notes)
    rows = list(csv.DictReader(io.StringIO(cross_dataset_table({"ffpp": summary}).csv)))
    assert [r["dataset"] for r in rows] == ["ffpp (raw): all (DF+F2F+FS+NT)"] and rows[0]["paper video AUC"] == "99.92"


def test_cross_dataset_table_with_reference_numbers(tmp_path, rng):
    summaries = {}
    for name in ("celeb_df_v2", "dfdc", "mydata"):
        path = tmp_path / f"{name}.csv"
        with ScoreWriter(path, protocol=ProtocolConfig()) as writer:
            for i in range(8):
                label = i % 2
                writer.write(VideoResult(f"{name}/x/raw/{i}", name, "x" if label else "real", label,
                                         0.2 + 0.5 * label + 0.1 * rng.random(), 1, 1, frame_scores=[0.5]))
        summaries[name] = evaluate_scores(path, bootstrap=0)
    table = cross_dataset_table(summaries)
    rows = {r["dataset"]: r for r in csv.DictReader(io.StringIO(table.csv))}
    assert rows["celeb_df_v2"]["SBI video AUC"] == "93.18"
    assert rows["dfdc"]["SBI video AUC"] == "72.42"
    assert rows["mydata"]["SBI video AUC"] == "n/a" and rows["mydata"]["paper video AUC"] == "n/a"
    assert rows["dfdc"]["video AUC"] == "100.00" and rows["dfdc"]["n_real"] == "4"
    assert ProtocolConfig().describe() in table.markdown


def test_mixed_file_needs_a_dataset(tmp_path):
    path = tmp_path / "mixed.csv"
    with ScoreWriter(path) as writer:
        for i, dataset in enumerate(("a", "a", "b", "b")):
            writer.write(VideoResult(f"{dataset}/{i}", dataset, "m", i % 2, 0.1 + 0.5 * (i % 2)))
    with pytest.raises(ValueError, match="several datasets"):
        evaluate_scores(path)
    summary = evaluate_scores(path, dataset="b", bootstrap=0)
    assert summary.n_scored == 2 and summary.protocol == "protocol: not recorded"
    assert summary.overall.frame is None
    with pytest.raises(ValueError, match="no rows for dataset"):
        evaluate_scores(path, dataset="c")


def test_single_class_dataset_is_reported_not_fatal(tmp_path):
    path = tmp_path / "fakes.csv"
    with ScoreWriter(path) as writer:
        for i in range(3):
            writer.write(VideoResult(f"d/m/{i}", "d", "m", 1, 0.7))
    summary = evaluate_scores(path, bootstrap=10)
    assert np.isnan(summary.overall.video.auc) and "one class" in summary.overall.video.reason
    row = cross_dataset_table({"d": summary}).rows[0]
    assert row[4] == row[5] == row[6] == "n/a (one class)"  # video AUC, its CI, AP: undefined, and why
    assert row[3] == "n/a"  # no frame scores at all
    assert row[8] == "100.00"  # the accuracy at the threshold (0.5 here) is still defined


def test_accuracy_column_uses_the_checkpoints_stored_threshold(tmp_path):
    """acc@thr: verdicts at the threshold the checkpoint stores (not a bare 0.5), named in the notes."""
    path = tmp_path / "videos.csv"
    with ScoreWriter(path) as writer:
        for i, (label, score) in enumerate([(0, 0.1), (0, 0.3), (1, 0.4), (1, 0.9)]):
            writer.write(VideoResult(f"d/{'m' if label else 'original'}/{i}", "d", "m" if label else "original",
                                     label, score))
    plain = evaluate_scores(path, bootstrap=0)
    stored = evaluate_scores(path, bootstrap=0, threshold=0.35, threshold_rule="val_fpr: at most 5% of 8 reals")
    assert plain.overall.video.acc_at_threshold == pytest.approx(0.75)  # 0.4 is called real at 0.5
    assert stored.overall.video.acc_at_threshold == pytest.approx(1.0)
    assert stored.overall.video.acc_at_05 == pytest.approx(0.75)  # still recorded
    table = cross_dataset_table({"d": stored})
    assert table.columns[8] == "acc@thr" and table.rows[0][8] == "100.00"
    assert any("threshold 0.35 (val_fpr: at most 5% of 8 reals)" in note for note in table.notes)
    assert any("0.5 (no stored threshold)" in note for note in cross_dataset_table({"d": plain}).notes)
