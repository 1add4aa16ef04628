"""``mfrn serve``: check the settings, load the model once, run the app under uvicorn."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mfrn.serve.config import DAY_S, ServeConfig, ServeLimits, is_loopback

TOKEN_ENV = "MFRN_SERVE_TOKEN"


class ServeSetupError(ValueError):
    """A setting the server refuses to start with (one line for the console)."""


@dataclass
class ServeOptions:
    checkpoint: Path
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("mfrn-serve")
    workers: int = 1
    token: str | None = None
    device: str | None = None
    n_frames: int | None = None  # frames per video; None: the checkpoint's protocol
    limits: ServeLimits = field(default_factory=ServeLimits)
    retention_days: float = 7.0
    max_attempts: int = 2
    keep_uploads: bool = False
    allow_no_token: bool = False  # serve beyond loopback without a token (the user insists)
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    grace_s: float = 10.0
    log_level: str = "info"


def check_exposure(host: str, token: str | None, allow_no_token: bool, tls: bool) -> list[str]:
    """Refuse a host other machines can reach without a token (unless insisted on); warnings to print."""
    if is_loopback(host):
        return []
    if token is None and not allow_no_token:
        raise ServeSetupError(
            f"refusing to serve on {host} without a token: anyone who can reach this port could upload files and "
            f"read every result. Give --token (or set {TOKEN_ENV}), or --allow-no-token to insist")
    warnings = []
    if token is None:
        warnings.append(f"warning: serving on {host} WITHOUT a token (--allow-no-token): anyone who can reach the "
                        "port can use the API")
    elif not tls:
        warnings.append(f"warning: serving on {host} over plain HTTP: the token and the media travel unencrypted; "
                        "use --ssl-certfile/--ssl-keyfile or a TLS reverse proxy")
    if token is not None and len(token) < 16:
        warnings.append("warning: the token is shorter than 16 characters; use a long random one "
                        "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return warnings


def check_data_dir(folder: Path) -> None:
    from mfrn.io_utils import ensure_output_dir
    from mfrn.serve.store import JobStore

    ensure_output_dir(folder, "data folder")
    JobStore(folder).close()


def serve(options: ServeOptions) -> int:
    import uvicorn

    from mfrn.serve.analysis import CoreAnalyzer
    from mfrn.serve.app import create_app
    from mfrn.serve.service import DetectionService

    if (options.ssl_certfile is None) != (options.ssl_keyfile is None):
        raise ServeSetupError("give both --ssl-certfile and --ssl-keyfile, or neither")
    for line in check_exposure(options.host, options.token, options.allow_no_token, options.ssl_certfile is not None):
        print(line, file=sys.stderr)
    config = ServeConfig(data_dir=options.data_dir, workers=options.workers, token=options.token,
                         limits=options.limits, retention_s=options.retention_days * DAY_S,
                         max_attempts=options.max_attempts, keep_uploads=options.keep_uploads)
    check_data_dir(config.data_dir)  # before the model loads: a bad --data is one line, not a startup traceback
    if options.n_frames is not None and options.n_frames < 1:
        raise ServeSetupError(f"--frames must be >= 1, got {options.n_frames}")
    analyzer = CoreAnalyzer.from_checkpoint(options.checkpoint, device=options.device)  # loaded once
    if options.n_frames:
        analyzer.detector.protocol.n_frames = options.n_frames
    print(f"model: {options.checkpoint} ({analyzer.detector.device}); {analyzer.detector.describe_calibration()}")
    print(f"data: {config.data_dir.resolve()} (jobs.sqlite3, uploads/, overlays/, faces/); "
          f"retention {'off' if not config.retention_s else f'{options.retention_days:g} days'}; "
          f"{config.workers} worker(s); token {'required' if config.token else 'off'}")
    scheme = "https" if options.ssl_certfile else "http"
    print(f"serving on {scheme}://{options.host if ':' not in options.host else f'[{options.host}]'}:{options.port}/ "
          "(Ctrl-C stops; running jobs are handed back to the queue)", flush=True)
    logging.basicConfig(level=getattr(logging, options.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(DetectionService(config, analyzer), grace_s=options.grace_s)
    uvicorn.run(app, host=options.host, port=options.port, log_level=options.log_level,
                ssl_certfile=options.ssl_certfile and str(options.ssl_certfile),
                ssl_keyfile=options.ssl_keyfile and str(options.ssl_keyfile),
                timeout_graceful_shutdown=int(options.grace_s) + 1)
    return 0
