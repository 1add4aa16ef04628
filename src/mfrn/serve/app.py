"""The HTTP side of ``mfrn serve``: the API under ``/api/v1``, the page at ``/``, the schema at ``/openapi.json``.

FastAPI's ``/docs`` loads Swagger UI from a CDN, so it is off; ``/docs`` is the package's own page that
renders ``/openapi.json``. Every response carries a Content-Security-Policy that allows this origin
only, so the page cannot load anything from elsewhere. With a token, every ``/api/`` route needs
``Authorization: Bearer <token>``; ``/healthz``, the page and the schema are open (they hold no data).
"""

from __future__ import annotations

import hmac
import re
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict

from mfrn import __version__
from mfrn.serve.service import API_PREFIX, DetectionService, job_url
from mfrn.serve.store import DONE, FINISHED, Job, QueueFull, is_job_id
from mfrn.serve.uploads import FILE_FIELD, UploadRefused, receive_upload, sniff_media

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; script-src 'self'; "
                           "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
_SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
RETRY_AFTER_S = 5
MEDIA_TYPES = {".png": "image/png", ".mp4": "video/mp4", ".jpg": "image/jpeg"}


class SecurityHeaders:
    """ASGI middleware: the headers above on every response, and ``no-store`` on the API's."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(_SECURITY_HEADERS)
        if scope.get("path", "").startswith("/api/"):
            extra.append((b"cache-control", b"no-store"))

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- response shapes (for the OpenAPI schema) ------------------------------------------------------
class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    detail: str


class JobCreated(BaseModel):
    id: str
    status: str
    links: dict[str, str]


class JobSummary(BaseModel):
    id: str
    status: str  # queued | running | done | failed
    stage: str
    progress: float
    filename: str
    kind: str
    media_format: str
    size: int
    created: str
    started: str | None
    finished: str | None
    attempts: int
    error: str | None
    label: str | None  # real | fake | no_face once done
    score: float | None
    links: dict[str, str]


class JobDetail(JobSummary):
    media: dict[str, Any]
    faces: list[dict[str, Any]]
    result: dict[str, Any] | None  # the result record of `mfrn detect` (schema mfrn-media-result)


class JobList(BaseModel):
    jobs: list[JobSummary]
    counts: dict[str, int]


class Health(BaseModel):
    status: str
    model: str | None
    workers: int
    workers_alive: int
    busy: int
    jobs: dict[str, int]


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="milliseconds")


def _links(job: Job) -> dict[str, str]:
    links = {"self": job_url(job.id)}
    if job.status == DONE and job.overlay:
        links["overlay"] = job_url(job.id, "overlay")
    if job.status in FINISHED and job.result is not None:  # a failed file has a record too (with its reason)
        links.update(json=job_url(job.id, "results.json"), csv=job_url(job.id, "results.csv"))
    return links


def job_summary(job: Job) -> dict[str, Any]:
    result = job.result or {}
    return {
        "id": job.id, "status": job.status, "stage": job.stage, "progress": round(job.progress, 4),
        "filename": job.filename, "kind": job.kind, "media_format": job.media_format, "size": job.size,
        "created": _iso(job.created), "started": _iso(job.started), "finished": _iso(job.finished),
        "attempts": job.attempts, "error": job.error, "label": result.get("label"), "score": result.get("score"),
        "links": _links(job),
    }


def job_detail(job: Job) -> dict[str, Any]:
    faces = [{**{k: v for k, v in face.items() if k != "file"}, "url": job_url(job.id, f"faces/{n}")}
             for n, face in enumerate(job.faces or [])]
    return {**job_summary(job), "media": {"width": job.width, "height": job.height, "n_frames": job.n_frames,
                                          "duration": job.duration, "sha256": job.sha256,
                                          "frames_to_score": job.frames_to_score},
            "faces": faces, "result": job.result}


def _download_name(job: Job, suffix: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(job.filename).stem).strip("._")[:80] or "upload"
    return f"{stem}.mfrn{suffix}"


_UPLOAD_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": [FILE_FIELD],
        "properties": {FILE_FIELD: {"type": "string", "format": "binary",
                                    "description": "an image or video; what it is is read from its bytes"}},
    }}},
}


def create_app(service: DetectionService, grace_s: float = 5.0) -> FastAPI:
    """The application around a (not yet started) service; starting the app starts the service."""
    config = service.config
    limits = config.limits

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        try:
            yield
        finally:
            await run_in_threadpool(service.stop, grace_s)

    app = FastAPI(
        title="mfrn serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        description="Deepfake detection jobs: upload an image or video, poll the job, read the verdict "
                    "(real | fake | no_face), the per-frame and per-face scores, the overlay with the predicted "
                    "region and boundary maps. The result record is the one `mfrn detect` writes.",
    )
    app.add_middleware(SecurityHeaders)
    bearer = HTTPBearer(auto_error=False, description="the token given to `mfrn serve --token`")

    def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode("utf-8"), config.token.encode("utf-8")):
            raise HTTPException(401, "this server needs a token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(require_token)] if config.token else [],
                    responses={401: {"model": ErrorBody, "description": "missing or wrong bearer token"}})

    @app.exception_handler(UploadRefused)
    async def _refused(request: Request, error: UploadRefused) -> JSONResponse:
        return JSONResponse({"detail": error.reason, **error.facts}, status_code=error.status)

    @app.exception_handler(QueueFull)
    async def _full(request: Request, error: QueueFull) -> JSONResponse:
        return JSONResponse({"detail": str(error), "queued": error.queued, "max_queued": error.limit},
                            status_code=429, headers={"Retry-After": str(RETRY_AFTER_S)})

    def find(job_id: str) -> Job:
        job = service.get(job_id) if is_job_id(job_id) else None
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return job

    def finished(job: Job) -> Job:
        if job.status not in FINISHED:
            raise HTTPException(409, f"job {job.id} is {job.status}; its results exist once it is done")
        return job

    def with_result(job: Job) -> Job:
        if finished(job).result is None:
            raise HTTPException(404, f"job {job.id} failed without a result: {job.error}")
        return job

    # -- open routes -------------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}}, tags=["service"])
    def healthz():
        """200 when the model is loaded and every worker runs; 503 otherwise."""
        body = {"status": "ok" if service.healthy else "unavailable",
                "model": service.analyzer.model_info().get("checkpoint"),
                **(service.status() if service.store is not None else
                   {"workers": 0, "workers_alive": 0, "busy": 0, "jobs": {}})}
        return JSONResponse(body, status_code=200 if service.healthy else 503)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return FileResponse(STATIC / "docs.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # -- API ---------------------------------------------------------------------------------------
    @api.get("/model", tags=["service"])
    def model() -> dict[str, Any]:
        """Checkpoint name and digest, model, backbone, input size, protocol, threshold and its rule."""
        return service.analyzer.model_info()

    @api.get("/limits", tags=["service"])
    def get_limits() -> dict[str, Any]:
        """What an upload may be, the queue size, the retention period, whether a token is needed."""
        return {**limits.to_dict(), "retention_s": config.retention_s, "workers": config.workers,
                "token_required": config.token is not None, "max_attempts": config.max_attempts}

    @api.post("/jobs", status_code=202, response_model=JobCreated, tags=["jobs"], openapi_extra={"requestBody": _UPLOAD_BODY},
              responses={400: {"model": ErrorBody}, 413: {"model": ErrorBody, "description": "over a size, pixel, "
                         "duration or frame limit"}, 415: {"model": ErrorBody, "description": "not an image or video "
                         "FFmpeg or Pillow can read"}, 422: {"model": ErrorBody}, 429: {"model": ErrorBody,
                         "description": "the queue is full; retry after Retry-After seconds"}})
    async def create_job(request: Request):
        """Upload one image or video (multipart field `file`); the job is queued."""
        queued = await run_in_threadpool(service.store.queued_count)
        if queued >= limits.max_queued:  # before a byte of the body is read
            raise QueueFull(queued, limits.max_queued)
        received = await receive_upload(request.stream(), request.headers.get("content-type"),
                                        request.headers.get("content-length"), service.tmp, limits.max_upload_bytes)
        try:
            facts = await run_in_threadpool(sniff_media, received.path, limits)
            job = await run_in_threadpool(service.submit, received, facts)
        finally:
            received.path.unlink(missing_ok=True)  # moved into place by submit, else dropped here
        return JSONResponse({"id": job.id, "status": job.status, "links": _links(job)}, status_code=202,
                            headers={"Location": job_url(job.id)})

    @api.get("/jobs", response_model=JobList, tags=["jobs"])
    def list_jobs(limit: int = Query(100, ge=1, le=1000), status: Literal["queued", "running", "done", "failed"] | None = None):
        """The newest jobs first (without their result records)."""
        return {"jobs": [job_summary(job) for job in service.store.list(limit, status)],
                "counts": service.store.counts()}

    @api.get("/jobs/{job_id}", response_model=JobDetail, tags=["jobs"], responses={404: {"model": ErrorBody}})
    def get_job(job_id: str):
        """Status, progress and, once done, the result record `mfrn detect` writes for the file."""
        return job_detail(find(job_id))

    @api.delete("/jobs/{job_id}", status_code=204, tags=["jobs"], responses={404: {"model": ErrorBody}})
    def delete_job(job_id: str):
        """Delete a job, its result and its files (a running job's run is discarded)."""
        if not is_job_id(job_id) or service.delete(job_id) is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return Response(status_code=204)

    @api.get("/jobs/{job_id}/overlay", tags=["results"], response_class=FileResponse,
             responses={200: {"content": {"image/png": {}, "video/mp4": {}}}, 404: {"model": ErrorBody},
                        409: {"model": ErrorBody, "description": "not done yet"}})
    def get_overlay(job_id: str):
        """The overlay: a PNG for an image, an MP4 of the sampled frames for a video, with the predicted
        region (red, outlined at the calibrated pixel threshold) and boundary (yellow) maps and the verdict."""
        job = finished(find(job_id))
        path = service.overlay_path(job)
        if path is None or not path.is_file():
            raise HTTPException(404, f"job {job.id} has no overlay")
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"))

    @api.get("/jobs/{job_id}/faces/{number}", tags=["results"], response_class=FileResponse,
             responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorBody}})
    def get_face(job_id: str, number: int):
        """Face thumbnail ``number`` (as listed in the job's ``faces``): the crop the model scored."""
        job = finished(find(job_id))
        path = service.face_path(job, number)
        if path is None or not path.is_file():
            raise HTTPException(404, f"job {job.id} has no face {number}")
        return FileResponse(path, media_type="image/jpeg")

    @api.get("/jobs/{job_id}/results.json", tags=["results"], responses={404: {"model": ErrorBody}})
    def get_results_json(job_id: str):
        """The job's results.json, as `mfrn detect` writes it (schema mfrn-detect-results)."""
        from mfrn.inference.writers import results_document

        job = with_result(find(job_id))
        document = results_document(job.header or {}, [job.result], complete=True)
        return JSONResponse(document, headers={
            "Content-Disposition": f'attachment; filename="{_download_name(job, ".json")}"'})

    @api.get("/jobs/{job_id}/results.csv", tags=["results"], response_class=Response,
             responses={200: {"content": {"text/csv": {}}}, 404: {"model": ErrorBody}})
    def get_results_csv(job_id: str):
        """The job's results.csv, as `mfrn detect` writes it (one row for the file, one per face)."""
        from mfrn.inference.writers import results_csv

        job = with_result(find(job_id))
        return Response(results_csv([job.result]), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{_download_name(job, ".csv")}"'})

    app.include_router(api)
    app.state.service = service
    app.state.created = time.time()
    return app
