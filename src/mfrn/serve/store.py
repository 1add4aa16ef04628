"""Jobs and their results in SQLite: ``DATA/jobs.sqlite3`` in WAL mode, every change one transaction.

The database is the queue: a job is a row, ``claim`` moves the oldest ``queued`` row to ``running``
under a fresh run token (and counts the attempt) in one ``BEGIN IMMEDIATE`` transaction, and a
worker's result is written only while its token is still the row's (a job deleted or handed back in
the meantime keeps nothing of that run). Files live beside the database under names made from the
job id: ``uploads/ID.EXT``, ``overlays/ID.png|mp4``, ``faces/ID/N.jpg``; a client's file name is
stored as text only and never reaches the file system.

Crash rules (``recover``, at start-up): a ``running`` row is a run that was cut off (the process was
killed). It is queued again while it has attempts left, else failed with the reason, so a file that
kills the worker cannot loop for ever. ``release`` (a clean shutdown) hands running jobs back without
counting the attempt.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
DATABASE_NAME = "jobs.sqlite3"
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
STATUSES = (QUEUED, RUNNING, DONE, FAILED)
FINISHED = (DONE, FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    stage TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    filename TEXT NOT NULL,
    kind TEXT NOT NULL,
    media_format TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    n_frames INTEGER,
    duration REAL,
    frames_to_score INTEGER,
    upload TEXT,
    overlay TEXT,
    faces TEXT,
    result TEXT,
    header TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_token TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
"""


class StoreError(ValueError):
    """A data folder that cannot be used (another schema version, a damaged database)."""


@dataclass
class Job:
    """One row of ``jobs``; JSON columns are decoded."""

    seq: int
    id: str
    status: str
    stage: str
    progress: float
    filename: str
    kind: str
    media_format: str
    size: int
    sha256: str
    width: int | None
    height: int | None
    n_frames: int | None
    duration: float | None
    frames_to_score: int | None
    upload: str | None
    overlay: str | None
    faces: list[dict] | None
    result: dict | None
    header: dict | None
    error: str | None
    attempts: int
    run_token: str | None
    created: float
    started: float | None
    finished: float | None
    updated: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Job":
        values = dict(row)
        for name in ("faces", "result", "header"):
            values[name] = None if values[name] is None else json.loads(values[name])
        return cls(**values)

    @property
    def finished_ok(self) -> bool:
        return self.status == DONE

    def files(self) -> list[str]:
        """This job's files, relative to the data folder."""
        names = [f"uploads/{self.upload}" if self.upload else None, f"overlays/{self.overlay}" if self.overlay else None]
        names += [f"faces/{self.id}/{face['file']}" for face in (self.faces or [])]
        return [name for name in names if name]


@dataclass
class NewJob:
    """What an accepted upload knows before any analysis."""

    id: str
    filename: str
    kind: str  # "image" | "video"
    media_format: str  # what the bytes are: "JPEG", "PNG", "mov,mp4,m4a,3gp,3g2,mj2 (h264)", ...
    size: int
    sha256: str
    upload: str  # the file's name under uploads/
    width: int | None = None
    height: int | None = None
    n_frames: int | None = None
    duration: float | None = None
    frames_to_score: int | None = None  # how many frames the protocol samples (progress is counted in them)


def new_job_id() -> str:
    return secrets.token_hex(16)


def is_job_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


class QueueFull(Exception):
    def __init__(self, queued: int, limit: int) -> None:
        self.queued, self.limit = queued, limit
        super().__init__(f"the queue is full ({queued} jobs waiting, limit {limit}); try again later")


class JobStore:
    """The jobs table, safe to share between threads (one connection, one lock)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DATABASE_NAME
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a committed job survives a power cut too
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS)
            with self._transaction():
                self._check_version()
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path}: not a usable job database ({error})") from None

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row["value"]) != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: job database schema {row['value']}, this mfrn reads {SCHEMA_VERSION}; "
                             "use another --data folder")

    # -- plumbing ----------------------------------------------------------------------------------
    class _Tx:
        def __init__(self, store: "JobStore", mode: str) -> None:
            self.store, self.mode = store, mode

        def __enter__(self):
            self.store._lock.acquire()
            try:
                self.store._db.execute(f"BEGIN {self.mode}")
            except BaseException:
                self.store._lock.release()
                raise
            return self.store._db

        def __exit__(self, kind, value, traceback) -> None:
            try:
                self.store._db.execute("COMMIT" if kind is None else "ROLLBACK")
            finally:
                self.store._lock.release()

    def _transaction(self, mode: str = "IMMEDIATE") -> "_Tx":
        return JobStore._Tx(self, mode)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, sql: str, args: tuple = ()) -> Job | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return None if row is None else Job.from_row(row)

    # -- jobs --------------------------------------------------------------------------------------
    def create(self, job: NewJob, max_queued: int) -> Job:
        """Insert a queued job, or raise :class:`QueueFull` (checked in the same transaction)."""
        now = time.time()
        with self._transaction() as db:
            queued = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
            if queued >= max_queued:
                raise QueueFull(queued, max_queued)
            columns = [f.name for f in fields(NewJob)]
            db.execute(
                f"INSERT INTO jobs ({', '.join(columns)}, status, stage, created, updated) "
                f"VALUES ({', '.join('?' for _ in columns)}, 'queued', 'queued', ?, ?)",
                (*(getattr(job, name) for name in columns), now, now))
        return self.get(job.id)

    def get(self, job_id: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def list(self, limit: int = 100, status: str | None = None) -> list[Job]:
        """The newest jobs first."""
        where, args = ("WHERE status = ?", (status,)) if status else ("", ())
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM jobs {where} ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
        return [Job.from_row(row) for row in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
        found = {row["status"]: row["n"] for row in rows}
        return {status: int(found.get(status, 0)) for status in STATUSES}

    def queued_count(self) -> int:
        return self.counts()[QUEUED]

    def claim(self) -> Job | None:
        """The oldest queued job, now ``running`` under a new run token (its attempt counted)."""
        token = secrets.token_hex(8)
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status = 'running', stage = 'starting', progress = 0, run_token = ?, "
                       "attempts = attempts + 1, started = ?, updated = ?, error = NULL WHERE id = ?",
                       (token, now, now, row["id"]))
        return self.get(row["id"])

    def set_progress(self, job_id: str, token: str, stage: str, progress: float) -> bool:
        with self._transaction() as db:
            changed = db.execute("UPDATE jobs SET stage = ?, progress = ?, updated = ? WHERE id = ? AND run_token = ? "
                                 "AND status = 'running'", (stage, float(progress), time.time(), job_id, token)).rowcount
        return changed == 1

    def finish(self, job_id: str, token: str, status: str, result: dict | None, header: dict | None,
               overlay: str | None, faces: list[dict] | None, error: str | None) -> bool:
        """Store a run's outcome; False when the run no longer owns the job (deleted or handed back)."""
        if status not in FINISHED:
            raise ValueError(f"finish takes done or failed, got {status!r}")
        now = time.time()
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET status = ?, stage = ?, progress = ?, result = ?, header = ?, overlay = ?, faces = ?, "
                "error = ?, finished = ?, updated = ?, run_token = NULL WHERE id = ? AND run_token = ? AND status = 'running'",
                (status, status, 1.0 if status == DONE else 0.0, _json(result), _json(header), overlay, _json(faces),
                 error, now, now, job_id, token)).rowcount
        return changed == 1

    def clear_upload(self, job_id: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE jobs SET upload = NULL WHERE id = ?", (job_id,))

    def delete(self, job_id: str) -> Job | None:
        """Remove the row (the caller removes its files after this commit); None when there was none."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(row)

    def expired(self, finished_before: float) -> list[Job]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE status IN ('done', 'failed') AND finished < ? "
                                    "ORDER BY seq", (finished_before,)).fetchall()
        return [Job.from_row(row) for row in rows]

    def all(self) -> list[Job]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY seq").fetchall()
        return [Job.from_row(row) for row in rows]

    # -- restarts ----------------------------------------------------------------------------------
    def recover(self, max_attempts: int) -> tuple[list[str], list[str]]:
        """After a crash: running jobs are queued again, or failed once they used ``max_attempts`` runs.
        Returns (re-queued ids, failed ids)."""
        now = time.time()
        with self._transaction() as db:
            rows = db.execute("SELECT id, attempts FROM jobs WHERE status = 'running' ORDER BY seq").fetchall()
            requeued, failed = [], []
            for row in rows:
                if row["attempts"] >= max_attempts:
                    reason = (f"interrupted: the server stopped during {row['attempts']} run(s) of this job (killed, or the "
                              f"file crashed the worker); not retried (limit {max_attempts} runs)")
                    db.execute("UPDATE jobs SET status = 'failed', stage = 'failed', error = ?, finished = ?, updated = ?, "
                               "run_token = NULL WHERE id = ?", (reason, now, now, row["id"]))
                    failed.append(row["id"])
                else:
                    db.execute("UPDATE jobs SET status = 'queued', stage = 'queued', progress = 0, run_token = NULL, "
                               "updated = ?, error = ? WHERE id = ?",
                               (now, f"re-queued after an interrupted run (run {row['attempts']} of at most {max_attempts})",
                                row["id"]))
                    requeued.append(row["id"])
        return requeued, failed

    def release(self) -> list[str]:
        """A clean shutdown: running jobs go back to the queue, their attempt not counted."""
        with self._transaction() as db:
            rows = db.execute("SELECT id FROM jobs WHERE status = 'running'").fetchall()
            db.execute("UPDATE jobs SET status = 'queued', stage = 'queued', progress = 0, run_token = NULL, "
                       "attempts = MAX(attempts - 1, 0), updated = ? WHERE status = 'running'", (time.time(),))
        return [row["id"] for row in rows]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)
