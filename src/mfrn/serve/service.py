"""The detection service without HTTP: the data folder, the workers, restarts, retention.

``DetectionService.start()`` opens ``DATA/jobs.sqlite3``, applies the crash rules of
``mfrn.serve.store`` (interrupted runs re-queued, or failed after ``max_attempts`` runs), removes files
no job refers to (a kill between writing a file and committing its row leaves such files; rows are
committed after their files and deleted before them, so the opposite never happens), and starts the
worker threads and the retention sweep. ``stop()`` hands running jobs back to the queue.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

from mfrn.serve.analysis import Analysis, AnalysisRequest, Analyzer
from mfrn.serve.config import ServeConfig
from mfrn.serve.store import DONE, FAILED, FINISHED, Job, JobStore, NewJob, new_job_id
from mfrn.serve.uploads import MediaFacts, ReceivedFile

API_PREFIX = "/api/v1"
log = logging.getLogger("mfrn.serve")


def job_url(job_id: str, part: str = "") -> str:
    return f"{API_PREFIX}/jobs/{job_id}{'/' + part if part else ''}"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class DetectionService:
    def __init__(self, config: ServeConfig, analyzer: Analyzer) -> None:
        self.config = config
        self.analyzer = analyzer
        root = config.data_dir
        self.uploads, self.overlays, self.faces, self.tmp = (root / "uploads", root / "overlays", root / "faces",
                                                             root / "tmp")
        self.store: JobStore | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._workers: list[threading.Thread] = []
        self._janitor: threading.Thread | None = None
        self._busy: dict[str, str] = {}  # worker name -> job id it runs
        self.started_at: float | None = None

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> None:
        from mfrn.io_utils import ensure_output_dir

        ensure_output_dir(self.config.data_dir, "data folder")
        for folder in (self.uploads, self.overlays, self.faces, self.tmp):
            folder.mkdir(exist_ok=True)
        self.store = JobStore(self.config.data_dir)
        requeued, failed = self.store.recover(self.config.max_attempts)
        for job_id in requeued:
            log.warning("job %s was interrupted (the server stopped while it ran): queued again", job_id)
        for job_id in failed:
            log.warning("job %s was interrupted %d times: failed, not retried", job_id, self.config.max_attempts)
        removed = self.sweep_files()
        if removed:
            log.info("removed %d file(s) that no job refers to", removed)
        self.purge_expired()
        self._stop.clear()
        self._workers = [threading.Thread(target=self._work, args=(self.analyzer.fork(),), name=f"mfrn-worker-{i}",
                                          daemon=True) for i in range(self.config.workers)]
        for worker in self._workers:
            worker.start()
        if self.config.retention_s > 0:
            self._janitor = threading.Thread(target=self._sweep_loop, name="mfrn-retention", daemon=True)
            self._janitor.start()
        self.started_at = time.time()
        self._wake.set()

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking jobs; wait ``grace_s`` for running ones, then hand what still runs back to the queue."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + grace_s
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        if self.store is None:
            return
        released = self.store.release()
        for job_id in released:
            log.info("job %s handed back to the queue (shutdown); it runs again at the next start", job_id)
        if not any(worker.is_alive() for worker in self._workers):
            self.store.close()  # a worker still inside an analysis keeps the connection; its writes are no-ops

    @property
    def healthy(self) -> bool:
        return self.store is not None and bool(self._workers) and all(w.is_alive() for w in self._workers)

    # -- jobs --------------------------------------------------------------------------------------
    def submit(self, received: ReceivedFile, facts: MediaFacts) -> Job:
        """Move an accepted upload into place and queue its job (``QueueFull`` when the queue is full)."""
        job_id = new_job_id()
        name = f"{job_id}{facts.suffix}"
        target = self.uploads / name
        os.replace(received.path, target)
        _fsync_dir(self.uploads)
        job = NewJob(id=job_id, filename=received.filename, kind=facts.kind, media_format=facts.media_format,
                     size=received.size, sha256=received.sha256, upload=name, width=facts.width, height=facts.height,
                     n_frames=facts.n_frames, duration=facts.duration,
                     frames_to_score=self.analyzer.frames_to_score(facts.kind, facts.n_frames))
        try:
            created = self.store.create(job, self.config.limits.max_queued)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        self._wake.set()
        log.info("job %s queued: %s (%s, %d bytes)", job_id, received.filename, facts.media_format, received.size)
        return created

    def get(self, job_id: str) -> Job | None:
        return self.store.get(job_id)

    def delete(self, job_id: str) -> Job | None:
        """Delete a job and its files (a running job's worker keeps nothing of its run)."""
        job = self.store.delete(job_id)
        if job is not None:
            self._remove_files(job.id, job.upload)
        return job

    def _remove_files(self, job_id: str, upload: str | None) -> None:
        if upload:
            (self.uploads / upload).unlink(missing_ok=True)
        for pattern in (f"{job_id}.*", f"{job_id}-*"):
            for overlay in self.overlays.glob(pattern):
                overlay.unlink(missing_ok=True)
        shutil.rmtree(self.faces / job_id, ignore_errors=True)

    def _remove_run_files(self, job_id: str, token: str) -> None:
        for overlay in self.overlays.glob(f"{job_id}-{token}.*"):
            overlay.unlink(missing_ok=True)
        for face in (self.faces / job_id).glob(f"{token}-*.jpg"):
            face.unlink(missing_ok=True)

    def overlay_path(self, job: Job) -> Path | None:
        return self.overlays / job.overlay if job.overlay else None

    def face_path(self, job: Job, number: int) -> Path | None:
        """Face thumbnail ``number`` of the job's list (a name the service made), or None."""
        faces = job.faces or []
        return self.faces / job.id / faces[number]["file"] if 0 <= number < len(faces) else None

    # -- retention and orphans -----------------------------------------------------------------------
    def purge_expired(self, now: float | None = None) -> list[str]:
        """Delete finished jobs older than the retention period, with their files."""
        if self.config.retention_s <= 0 or self.store is None:
            return []
        cutoff = (time.time() if now is None else now) - self.config.retention_s
        removed = [job.id for job in self.store.expired(cutoff) if self.delete(job.id) is not None]
        if removed:
            log.info("retention: deleted %d job(s) finished more than %.0f s ago", len(removed), self.config.retention_s)
        return removed

    def _sweep_loop(self) -> None:
        interval = max(1.0, min(self.config.sweep_interval_s, self.config.retention_s / 4))
        while not self._stop.wait(interval):
            try:
                self.purge_expired()
            except Exception:  # the next sweep tries again
                log.exception("retention sweep failed")

    def sweep_files(self) -> int:
        """Remove temporary uploads, files no job refers to, and finished jobs' uploads (unless kept)."""
        removed = 0
        for leftover in self.tmp.iterdir():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
                removed += 1
        jobs = self.store.all()
        if not self.config.keep_uploads:
            for job in jobs:
                if job.status in FINISHED and job.upload:
                    (self.uploads / job.upload).unlink(missing_ok=True)
                    self.store.clear_upload(job.id)
                    job.upload = None
        wanted = {name for job in jobs for name in job.files()}
        for folder in (self.uploads, self.overlays):
            for path in folder.iterdir():
                if path.is_file() and f"{folder.name}/{path.name}" not in wanted:
                    path.unlink(missing_ok=True)
                    removed += 1
        for folder in self.faces.iterdir():
            if not folder.is_dir():
                folder.unlink(missing_ok=True)
                continue
            for path in folder.iterdir():
                if f"faces/{folder.name}/{path.name}" not in wanted:
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                    removed += 1
            if not any(folder.iterdir()):
                folder.rmdir()
        return removed

    # -- workers -----------------------------------------------------------------------------------
    def _work(self, analyzer: Analyzer) -> None:
        name = threading.current_thread().name
        while not self._stop.is_set():
            try:
                job = self.store.claim()
            except Exception:
                log.exception("%s: could not read the queue", name)
                self._stop.wait(1.0)
                continue
            if job is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            self._busy[name] = job.id
            try:
                self._run(job, analyzer)
            except Exception:  # the store itself failed; the job stays running and is recovered at restart
                log.exception("%s: job %s could not be recorded", name, job.id)
            finally:
                self._busy.pop(name, None)

    def _run(self, job: Job, analyzer: Analyzer) -> None:
        started = time.monotonic()
        token = job.run_token
        # this run's files carry its token: a run that is discarded removes its own files, never a later run's
        request = AnalysisRequest(name=job.filename, overlay_stem=self.overlays / f"{job.id}-{token}",
                                  overlay_ref=job_url(job.id, "overlay"), faces_dir=self.faces / job.id,
                                  run_name=token, frames_to_score=job.frames_to_score or 1,
                                  max_thumbnails=self.config.max_thumbnails)

        def progress(stage: str, value: float) -> None:
            self.store.set_progress(job.id, token, stage, value)

        analysis: Analysis | None = None
        try:
            analysis = analyzer.analyze(self.uploads / job.upload, request, progress)
        except Exception as error:  # a bug or an unforeseen failure: recorded, and the worker goes on
            log.exception("job %s: analysis failed", job.id)
            reason = f"analysis failed: {type(error).__name__}: {error}"
            self._remove_run_files(job.id, token)  # what it wrote before it failed
        if analysis is not None and analysis.ok:
            status, reason = DONE, None
        elif analysis is not None:
            status, reason = FAILED, analysis.record.get("error") or "the file could not be analysed"
        else:
            status = FAILED
        overlay = analysis.overlay.name if analysis is not None and analysis.overlay is not None else None
        kept = self.store.finish(job.id, token, status, analysis.record if analysis else None,
                                 analysis.header if analysis else None, overlay,
                                 analysis.faces if analysis else None, reason)
        if not kept:  # deleted (or handed back at shutdown) while it ran: its outputs go
            self._remove_run_files(job.id, token)
            log.info("job %s: run discarded (the job was deleted or handed back meanwhile)", job.id)
            return
        if not self.config.keep_uploads:
            self.store.clear_upload(job.id)
            (self.uploads / job.upload).unlink(missing_ok=True)
        log.info("job %s %s in %.1f s%s", job.id, status, time.monotonic() - started, f": {reason}" if reason else "")

    def status(self) -> dict:
        counts = self.store.counts()
        return {"workers": len(self._workers), "workers_alive": sum(w.is_alive() for w in self._workers),
                "busy": len(self._busy), "jobs": counts}
