"""``mfrn serve``: a web page and an HTTP API for detection, on the inference core ``mfrn detect`` uses.

One stage per module, data flowing one way:

- ``config``: the service's settings and limits (``ServeConfig``, ``ServeLimits``);
- ``uploads``: a multipart upload streamed to disk under a size limit, then sniffed from its bytes
  (Pillow for images, the project's FFmpeg reader for videos) and held against the limits;
- ``store``: jobs and results in SQLite (WAL, one transaction per change), files beside it;
- ``analysis``: the ``Analyzer`` interface and ``CoreAnalyzer``, which runs ``mfrn.inference`` (the same
  scoring, result record and overlays as ``mfrn detect``);
- ``service``: workers, restart recovery, retention, the orphan sweep;
- ``app``: the FastAPI application (API, token, page, OpenAPI without a CDN);
- ``static/``: the page (plain HTML, CSS, JS).

Only ``app`` (and ``run``) import FastAPI/uvicorn, the ``[serve]`` extra; nothing below ``mfrn.serve``
imports this package.
"""

from mfrn.serve.config import ServeConfig, ServeLimits

__all__ = ["ServeConfig", "ServeLimits"]
