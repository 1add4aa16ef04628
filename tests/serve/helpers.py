"""Helpers for the service tests: apps on temporary data folders, uploads, waiting, and analyzers that hold
or break a run around the real one (to test queueing and failures)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path


class GatedAnalyzer:
    """The real analyzer, but each run waits for ``gate`` (so jobs stay running or queued while a test looks)."""

    def __init__(self, inner, gate: threading.Event | None = None, started: threading.Event | None = None) -> None:
        self.inner = inner
        self.gate = gate or threading.Event()
        self.started = started or threading.Event()

    def fork(self):
        return GatedAnalyzer(self.inner.fork(), self.gate, self.started)

    def frames_to_score(self, kind, n_frames):
        return self.inner.frames_to_score(kind, n_frames)

    def model_info(self):
        return self.inner.model_info()

    def analyze(self, media, request, progress):
        self.started.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.inner.analyze(media, request, progress)


class BreakingAnalyzer(GatedAnalyzer):
    """The real analyzer, except that a file whose name contains ``boom`` raises (a bug in a worker)."""

    def fork(self):
        return BreakingAnalyzer(self.inner.fork(), self.gate, self.started)

    def analyze(self, media, request, progress):
        if "boom" in request.name:
            raise RuntimeError("simulated worker bug")
        return self.inner.analyze(media, request, progress)


@contextmanager
def serve_app(data_dir: Path, analyzer, **settings):
    """A started app (TestClient) on ``data_dir``; leaving the block shuts it down cleanly."""
    from fastapi.testclient import TestClient

    from mfrn.serve.app import create_app
    from mfrn.serve.config import ServeConfig, ServeLimits

    limits = settings.pop("limits", None) or ServeLimits()
    service_cls = settings.pop("service_cls", None)
    from mfrn.serve.service import DetectionService

    service = (service_cls or DetectionService)(ServeConfig(data_dir=data_dir, limits=limits, **settings), analyzer)
    with TestClient(create_app(service, grace_s=2.0)) as client:
        client.service = service
        yield client


def upload(client, path: Path, name: str | None = None, headers: dict | None = None, content: bytes | None = None):
    data = Path(path).read_bytes() if content is None else content
    return client.post("/api/v1/jobs", files={"file": (name or Path(path).name, data)}, headers=headers or {})


def wait_for(client, job_id: str, statuses=("done", "failed"), timeout: float = 120.0, headers: dict | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=headers or {}).json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout} s"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def live_server(app):
    """uvicorn serving ``app`` on a free loopback port, in a thread."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
