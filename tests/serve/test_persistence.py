"""Storage that loses nothing: jobs survive restarts; a run cut off by a kill is queued again, and failed with
the reason once it used its attempts; a clean shutdown hands running jobs back; retention deletes old jobs."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.serve.helpers import serve_app, upload, wait_for

pytestmark = pytest.mark.slow


def _leave_interrupted_job(data: Path, media: Path, core_analyzer, runs: int) -> str:
    """What a server killed during a job leaves behind: the upload, and the row ``running`` after ``runs`` runs."""
    from mfrn.serve.config import ServeConfig
    from mfrn.serve.service import DetectionService
    from mfrn.serve.store import JobStore
    from mfrn.serve.uploads import ReceivedFile, sniff_media

    service = DetectionService(ServeConfig(data_dir=data), core_analyzer)
    for folder in (data, service.uploads, service.overlays, service.faces, service.tmp):
        folder.mkdir(parents=True, exist_ok=True)
    service.store = JobStore(data)
    copy = service.tmp / "upload.part"
    copy.write_bytes(media.read_bytes())
    job = service.submit(ReceivedFile(copy, media.name, copy.stat().st_size, "0" * 64),
                         sniff_media(copy, service.config.limits))
    for run in range(runs):
        claimed = service.store.claim()
        assert claimed.id == job.id and claimed.attempts == run + 1
        if run < runs - 1:
            service.store.recover(max_attempts=99)  # the restart between two killed runs
    service.store.close()  # no release(): the process died
    return job.id


def test_jobs_survive_a_restart(sample_media, core_analyzer, tmp_path):
    data = tmp_path / "data"
    with serve_app(data, core_analyzer) as client:
        first = wait_for(client, upload(client, sample_media.single_face_images[0]).json()["id"])
        second = wait_for(client, upload(client, sample_media.single_face_video).json()["id"])
        overlay = client.get(first["links"]["overlay"]).content
    with serve_app(data, core_analyzer) as client:
        assert [j["id"] for j in client.get("/api/v1/jobs").json()["jobs"]] == [second["id"], first["id"]]
        again = client.get(f"/api/v1/jobs/{first['id']}").json()
        assert again == first
        assert client.get(first["links"]["overlay"]).content == overlay
        assert client.get(f"/api/v1/jobs/{second['id']}").json()["result"] == second["result"]
    with sqlite3.connect(data / "jobs.sqlite3") as db:  # a real database file, in WAL mode
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0] == 2


def test_a_killed_run_is_queued_again(sample_media, core_analyzer, tmp_path):
    data = tmp_path / "data"
    job_id = _leave_interrupted_job(data, sample_media.single_face_images[0], core_analyzer, runs=1)
    with serve_app(data, core_analyzer, max_attempts=2) as client:
        job = wait_for(client, job_id)
    assert job["status"] == "done" and job["attempts"] == 2 and job["error"] is None
    assert job["result"]["label"] in ("real", "fake")


def test_a_job_killed_in_every_run_is_failed_not_retried(sample_media, core_analyzer, tmp_path):
    data = tmp_path / "data"
    job_id = _leave_interrupted_job(data, sample_media.single_face_images[0], core_analyzer, runs=2)
    with serve_app(data, core_analyzer, max_attempts=2) as client:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        assert job["status"] == "failed" and job["attempts"] == 2
        assert "interrupted" in job["error"] and "not retried" in job["error"]
        assert client.get(f"/api/v1/jobs/{job_id}/overlay").status_code == 404
    assert list((data / "uploads").iterdir()) == []  # a finished job's upload is not kept


def test_a_clean_shutdown_hands_the_running_job_back(sample_media, gated, core_analyzer, tmp_path):
    data = tmp_path / "data"
    with serve_app(data, gated) as client:
        job_id = upload(client, sample_media.single_face_images[0]).json()["id"]
        assert gated.started.wait(30)
        assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "running"
    # the worker is still inside its (held) run: the shutdown gave the job back without counting the run
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        assert db.execute("SELECT status, attempts FROM jobs WHERE id = ?", (job_id,)).fetchone() == ("queued", 0)
    gated.gate.set()  # the old run ends: it must not write into the job it no longer owns
    time.sleep(0.5)
    with serve_app(data, core_analyzer) as client:
        job = wait_for(client, job_id)
    assert job["status"] == "done" and job["attempts"] == 1


def test_files_no_job_refers_to_are_removed_at_start(sample_media, core_analyzer, tmp_path):
    data = tmp_path / "data"
    with serve_app(data, core_analyzer) as client:
        job = wait_for(client, upload(client, sample_media.single_face_images[0]).json()["id"])
    strays = [data / "uploads" / "0123.jpg", data / "overlays" / "dead.png", data / "tmp" / "half.part",
              data / "faces" / "gone" / "0.jpg"]
    for stray in strays:
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"x")
    with serve_app(data, core_analyzer) as client:
        assert client.get(job["links"]["overlay"]).status_code == 200
        assert client.get(job["faces"][0]["url"]).status_code == 200
    assert not any(stray.exists() for stray in strays)


def test_uploads_are_kept_only_when_asked(sample_media, core_analyzer, tmp_path):
    photo = sample_media.single_face_images[0]
    with serve_app(tmp_path / "a", core_analyzer) as client:
        wait_for(client, upload(client, photo).json()["id"])
    assert list((tmp_path / "a" / "uploads").iterdir()) == []
    with serve_app(tmp_path / "b", core_analyzer, keep_uploads=True) as client:
        job = wait_for(client, upload(client, photo).json()["id"])
    kept = list((tmp_path / "b" / "uploads").iterdir())
    assert [p.name for p in kept] == [f"{job['id']}.jpg"] and kept[0].read_bytes() == photo.read_bytes()


def test_retention_deletes_old_jobs_and_their_files(sample_media, core_analyzer, tmp_path):
    data = tmp_path / "data"
    with serve_app(data, core_analyzer, retention_s=3600) as client:
        old = wait_for(client, upload(client, sample_media.single_face_images[0]).json()["id"])
        service = client.service
        assert service.purge_expired() == []  # not old yet
        assert service.purge_expired(now=time.time() + 3601) == [old["id"]]
        assert client.get(f"/api/v1/jobs/{old['id']}").status_code == 404
    assert not [p for p in data.rglob("*") if old["id"] in str(p)]


def test_retention_runs_by_itself(sample_media, core_analyzer, tmp_path):
    data = tmp_path / "data"
    with serve_app(data, core_analyzer, retention_s=1.0, sweep_interval_s=0.2) as client:
        job_id = upload(client, sample_media.single_face_images[0]).json()["id"]
        wait_for(client, job_id)
        deadline = time.monotonic() + 30
        while client.get(f"/api/v1/jobs/{job_id}").status_code != 404:
            assert time.monotonic() < deadline, "the retention sweep never deleted the finished job"
            time.sleep(0.2)


def test_a_database_of_another_schema_is_refused(tmp_path):
    from mfrn.serve.store import JobStore, StoreError

    JobStore(tmp_path).close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema 99"):
        JobStore(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "jobs.sqlite3").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a usable job database"):
        JobStore(tmp_path / "other")
