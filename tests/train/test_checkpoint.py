"""Which checkpoint a run starts from: --resume needs something to resume, a fresh run never overwrites silently."""

from __future__ import annotations

import pytest

from mfrn.train.checkpoint import CheckpointError, clear_run, resolve_resume


def test_resume_auto_needs_a_last_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="nothing to resume: .*last.pt does not exist; run without --resume"):
        resolve_resume(tmp_path, "auto")
    (tmp_path / "best.pt").write_bytes(b"best")
    with pytest.raises(ValueError, match=r"it holds only best.pt"):
        resolve_resume(tmp_path, "auto")
    (tmp_path / "last.pt").write_bytes(b"last")
    assert resolve_resume(tmp_path, "auto") == tmp_path / "last.pt"
    assert resolve_resume(tmp_path, tmp_path / "last.pt") == tmp_path / "last.pt"


def test_a_fresh_run_into_an_earlier_runs_folder_needs_overwrite(tmp_path):
    assert resolve_resume(tmp_path / "new", None) is None
    assert resolve_resume(tmp_path, None) is None  # an existing folder without checkpoints is fine
    (tmp_path / "best.pt").write_bytes(b"the 25-epoch model")
    with pytest.raises(ValueError, match=r"already holds the checkpoints of an earlier run \(best.pt\)"):
        resolve_resume(tmp_path, None)
    assert resolve_resume(tmp_path, None, overwrite=True) is None
    with pytest.raises(ValueError, match="give one of them"):
        resolve_resume(tmp_path, "auto", overwrite=True)
    assert (tmp_path / "best.pt").read_bytes() == b"the 25-epoch model"
    assert clear_run(tmp_path) == [tmp_path / "best.pt"] and not (tmp_path / "best.pt").exists()


def test_resume_from_elsewhere_never_overwrites_another_run(tmp_path):
    other = tmp_path / "other.pt"
    with pytest.raises(CheckpointError, match="not found"):
        resolve_resume(tmp_path / "run", other)
    other.write_bytes(b"x")
    assert resolve_resume(tmp_path / "run", other) == other
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"y")
    with pytest.raises(ValueError, match="holds another run's checkpoints"):
        resolve_resume(tmp_path / "run", other)
