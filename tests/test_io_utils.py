"""Output folders and devices are checked before any work starts, with one clear line."""

import os

import pytest
import torch

from mfrn.io_utils import OutputPathError, check_output_dir, ensure_output_dir
from mfrn.weights import check_device


def test_output_dir_is_created_with_parents(tmp_path):
    target = ensure_output_dir(tmp_path / "a" / "b")
    assert target.is_dir()
    assert ensure_output_dir(target) == target  # an existing folder is fine


@pytest.mark.parametrize("check", [ensure_output_dir, check_output_dir])
def test_output_dir_refuses_an_existing_file(tmp_path, check):
    existing = tmp_path / "results.json"
    existing.write_text("{}")
    with pytest.raises(OutputPathError, match="exists and is not a folder"):
        check(existing)
    with pytest.raises(OutputPathError, match="part of the path is a file"):
        check(existing / "sub" / "deeper")
    assert existing.read_text() == "{}"  # nothing was touched


def test_check_output_dir_creates_nothing(tmp_path):
    assert check_output_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions (tests/test_permissions.py drops them)")
def test_output_dir_refuses_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match="not writable"):
            ensure_output_dir(locked)
    finally:
        locked.chmod(0o700)


def test_check_device():
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(None).type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="not a torch device"):
        check_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible"):
            check_device("cuda")
