"""The service's settings: where it keeps its data, how many workers, the token, and the limits."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from pathlib import Path

MIB = 1 << 20
DAY_S = 86_400.0


@dataclass
class ServeLimits:
    """What an upload may be; each refusal names the limit and the value it exceeded."""

    max_upload_bytes: int = 200 * MIB  # 413 once the body passes it (counted while streaming)
    max_pixels: int = 40_000_000  # of an image, or of one video frame (413)
    max_duration_s: float = 600.0  # of a video (413)
    max_frames: int = 36_000  # frames of a video, counted from its packets (413)
    max_queued: int = 32  # jobs waiting (running ones not counted); a full queue answers 429

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_frames", "max_queued"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.max_duration_s > 0:
            raise ValueError(f"max_duration_s must be > 0, got {self.max_duration_s}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ServeConfig:
    data_dir: Path
    workers: int = 1
    token: str | None = None  # when set, every /api/ request needs "Authorization: Bearer <token>"
    limits: ServeLimits = field(default_factory=ServeLimits)
    retention_s: float = 7 * DAY_S  # finished jobs older than this are deleted with their files; 0 = keep
    max_attempts: int = 2  # runs a job may start; one interrupted more often is failed, not retried again
    keep_uploads: bool = False  # False: an upload is deleted once its job has finished (results stay)
    max_thumbnails: int = 32  # face thumbnails kept per job
    sweep_interval_s: float = 600.0  # how often retention runs (at most)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.retention_s < 0:
            raise ValueError(f"retention must be >= 0 (0 keeps jobs forever), got {self.retention_s}")
        if self.token is not None and not self.token.strip():
            raise ValueError("the token is empty")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); every other name or address
    may be reachable from other machines."""
    if host.strip().lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
