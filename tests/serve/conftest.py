"""Fixtures for the service tests: the real detector (tiny checkpoint, loaded once), apps on temporary data
folders, and analyzers that hold or break a run (around the real one) to test queueing and failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi, uvicorn, python-multipart) is not installed")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

ARTIFACTS: list[Path] = []  # files the tests leave for people to look at (listed at the end of the run)


def pytest_terminal_summary(terminalreporter) -> None:
    for path in ARTIFACTS:
        terminalreporter.write_line(f"serve test artifact: {path}")


@pytest.fixture(scope="session")
def core_analyzer(tiny_checkpoint):
    """The real inference core on the tiny checkpoint (2 frames per video), loaded once."""
    from mfrn.serve.analysis import CoreAnalyzer

    return CoreAnalyzer.from_checkpoint(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def calibrated_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint with a stored calibration: threshold 0.2 (its untrained scores sit near 0.5)."""
    from mfrn.checkpoint import Calibration, set_calibration

    path = tmp_path_factory.mktemp("calibrated") / "calibrated.pt"
    shutil.copy(tiny_checkpoint, path)
    set_calibration(path, Calibration(threshold=0.2, rule="test: a fixed threshold of 0.2"))
    return path


@pytest.fixture
def gated(core_analyzer):
    from tests.serve.helpers import GatedAnalyzer

    analyzer = GatedAnalyzer(core_analyzer)
    yield analyzer
    analyzer.gate.set()  # never leave a worker waiting
