"""Permission-denied inputs and outputs, run as an unprivileged process (root ignores chmod).

As root, the command runs as the user ``nobody`` where that user can run this interpreter and read the
code; otherwise as root with the capabilities that bypass file permissions dropped (``setpriv``); where
neither is possible the tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import mfrn

SRC = Path(mfrn.__file__).resolve().parents[1]
DROP_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def _works(prefix: list[str], user: str | None) -> bool:
    try:
        probe = subprocess.run([*prefix, sys.executable, "-c", "import mfrn.cli"], env=_env(), user=user,
                               capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


@pytest.fixture(scope="module")
def unprivileged():
    """(command prefix, user, work folder): how to run a command that chmod can deny."""
    if os.geteuid() != 0:
        folder = Path(tempfile.mkdtemp(prefix="mfrn-perm-"))
        yield [], None, folder
    else:
        # a world-traversable folder, so that 'nobody' can reach what the test writes
        folder = Path(tempfile.mkdtemp(prefix="mfrn-perm-", dir="/tmp"))
        folder.chmod(0o755)
        if _works([], "nobody"):
            shutil.chown(folder, "nobody")
            yield [], "nobody", folder
        elif shutil.which("setpriv") and _works(DROP_DAC, None):
            yield DROP_DAC, None, folder
        else:
            shutil.rmtree(folder, ignore_errors=True)
            pytest.skip("running as root, and neither user 'nobody' (cannot run this interpreter or read the code) "
                        "nor setpriv (dropping CAP_DAC_OVERRIDE) can make a process that file permissions apply to")
    for path in folder.rglob("*"):  # give back what the test locked, so the folder can be removed
        if not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder, ignore_errors=True)


def _mfrn(unprivileged, *argv) -> subprocess.CompletedProcess:
    prefix, user, _ = unprivileged
    return subprocess.run([*prefix, sys.executable, "-m", "mfrn.cli", *map(str, argv)], env=_env(), user=user,
                          capture_output=True, text=True, timeout=300)


def _place(unprivileged, source: Path, name: str) -> Path:
    _, user, folder = unprivileged
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, path)
    if user:
        shutil.chown(path.parent, user)
        shutil.chown(path, user)
    return path


def test_unreadable_input_file_is_a_failed_item_with_the_reason(unprivileged, sample_media):
    readable = _place(unprivileged, sample_media.single_face_images[0], "in/a_face.jpg")
    locked = _place(unprivileged, sample_media.single_face_images[0], "in/b_locked.jpg")
    locked.chmod(0o000)
    out = unprivileged[2] / "out"
    result = _mfrn(unprivileged, "prepare", readable.parent, "-o", out, "--frames", "1", "--no-progress")
    assert result.returncode == 0, result.stderr  # one item succeeded
    assert "Traceback" not in result.stderr
    assert "failed: media/in/b_locked: permission denied (the file is not readable by this user)" in result.stdout
    assert "1 ok" in result.stdout and "1 failed" in result.stdout


def test_unreadable_input_folder_says_so(unprivileged, sample_media):
    photo = _place(unprivileged, sample_media.single_face_images[0], "locked_folder/a.jpg")
    photo.parent.chmod(0o000)
    result = _mfrn(unprivileged, "prepare", photo.parent, "-o", unprivileged[2] / "out2", "--no-progress")
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert "cannot list the folder (Permission denied)" in result.stderr


@pytest.mark.parametrize("target", ["locked_out", "locked_out/sub"])
def test_unwritable_output_folder_is_one_line(unprivileged, sample_media, target):
    photo = _place(unprivileged, sample_media.single_face_images[0], "in3/a.jpg")
    locked = unprivileged[2] / "locked_out"
    locked.mkdir(exist_ok=True)
    if unprivileged[1]:
        shutil.chown(locked, unprivileged[1])
    locked.chmod(0o555)
    result = _mfrn(unprivileged, "prepare", photo, "-o", unprivileged[2] / target, "--no-progress")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "permission denied" in lines[0], result.stderr
    assert list(locked.iterdir()) == []
