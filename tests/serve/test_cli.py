"""`mfrn serve` as a user runs it: refusals before anything loads, and the real process killed mid-job (SIGKILL)
and stopped cleanly (SIGTERM)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serve.helpers import free_port

pytestmark = pytest.mark.slow

TOKEN = "cli-test-token-0123456789abcdef"


def test_serve_refuses_a_public_host_without_a_token(tiny_checkpoint, tmp_path, capsys):
    from mfrn.cli import EXIT_USAGE, main

    started = time.monotonic()
    code = main(["serve", "-m", str(tiny_checkpoint), "--host", "0.0.0.0", "--data", str(tmp_path / "data")])
    assert code == EXIT_USAGE
    error = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without a token" in error and "--allow-no-token" in error
    assert not (tmp_path / "data").exists()  # refused before anything was made or loaded
    assert time.monotonic() - started < 5


def test_serve_refuses_bad_settings_in_one_line(tiny_checkpoint, tmp_path, capsys):
    from mfrn.cli import EXIT_USAGE, main

    assert main(["serve", "-m", str(tmp_path / "missing.pt"), "--data", str(tmp_path / "d")]) == EXIT_USAGE
    assert "checkpoint not found" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["serve", "-m", str(tiny_checkpoint), "--data", str(tmp_path / "file")]) == EXIT_USAGE
    assert "not a folder" in capsys.readouterr().err
    assert main(["serve", "-m", str(tiny_checkpoint), "--data", str(tmp_path / "d"), "--workers", "0"]) == EXIT_USAGE
    assert "workers must be >= 1" in capsys.readouterr().err
    assert main(["serve", "-m", str(tiny_checkpoint), "--data", str(tmp_path / "d"), "--max-queued", "0"]) == EXIT_USAGE
    assert "max_queued" in capsys.readouterr().err


class Server:
    """``mfrn serve`` in a child process on a free loopback port."""

    def __init__(self, checkpoint: Path, data: Path, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "MFRN_SERVE_TOKEN": TOKEN}
        self.log = open(log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mfrn.cli", "serve", "-m", str(checkpoint), "--port", str(self.port),
             "--data", str(data), "--log-level", "warning", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.wait_ready()

    def wait_ready(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"mfrn serve exited with {self.process.returncode}"
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("mfrn serve did not become healthy")

    def client(self):
        import httpx

        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    def stop(self, sig: int) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(60)
        finally:
            self.log.close()


def test_a_server_killed_mid_job_finishes_it_after_the_restart(sample_media, tiny_checkpoint, tmp_path):
    data, log = tmp_path / "data", tmp_path / "serve.log"
    video = sample_media.single_face_video_long  # 472 frames; 16 sampled: several seconds of face search here
    server = Server(tiny_checkpoint, data, log, "--frames", "16")
    try:
        with server.client() as client:
            photo = client.post("/api/v1/jobs", files={"file": ("face.jpg", sample_media.single_face_images[0].read_bytes())})
            assert photo.status_code == 202 and client.get("/api/v1/jobs").status_code == 200
            assert client.get("/api/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
            deadline = time.monotonic() + 60
            while client.get(f"/api/v1/jobs/{photo.json()['id']}").json()["status"] != "done":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            job_id = client.post("/api/v1/jobs", files={"file": (video.name, video.read_bytes())}).json()["id"]
            while (job := client.get(f"/api/v1/jobs/{job_id}").json())["status"] != "running" or job["progress"] < 0.1:
                assert job["status"] in ("queued", "running"), job
                assert time.monotonic() < deadline
                time.sleep(0.02)
    finally:
        server.stop(signal.SIGKILL)  # no shutdown at all: as a crash or an OOM kill leaves it
    restarted = Server(tiny_checkpoint, data, log, "--frames", "16")
    try:
        with restarted.client() as client:
            deadline = time.monotonic() + 180
            while (job := client.get(f"/api/v1/jobs/{job_id}").json())["status"] not in ("done", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert job["status"] == "done" and job["attempts"] == 2, job
            assert job["result"]["n_frames"] == 16
            assert client.get(f"/api/v1/jobs/{photo.json()['id']}").json()["status"] == "done"  # kept
            assert client.get(job["links"]["overlay"]).headers["content-type"] == "video/mp4"
    finally:
        # a clean stop (uvicorn re-raises the signal once it has shut down, so the status is -SIGTERM or 0)
        assert restarted.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert "Traceback" not in log.read_text(errors="replace")
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        assert db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall() == [("done", 2)]
