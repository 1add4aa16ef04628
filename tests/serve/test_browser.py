"""The page in a real browser: headless Chromium (Debian's package, driven by Playwright) against the real
server on a loopback port. Upload a real face photo, wait for the verdict, check it, the overlay, the timeline
and the faces, and save a screenshot (``artifacts/serve-page.png`` in the repository, ignored by git)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.serve.conftest import ARTIFACTS
from tests.serve.helpers import live_server

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    """``$MFRN_CHROMIUM``, else Debian's /usr/bin/chromium, else a chromium on PATH."""
    for candidate in (os.environ.get("MFRN_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium here (Debian: apt-get install -y chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the Python package) is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _artifact(request, name: str) -> Path:
    folder = Path(os.environ.get("MFRN_TEST_ARTIFACTS") or request.config.rootpath / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def test_page_uploads_a_photo_and_shows_the_verdict(browser, sample_media, core_analyzer, tmp_path, request):
    from mfrn.serve.app import create_app
    from mfrn.serve.config import ServeConfig
    from mfrn.serve.service import DetectionService

    photo = sample_media.single_face_images[0]
    app = create_app(DetectionService(ServeConfig(data_dir=tmp_path / "data"), core_analyzer), grace_s=2.0)
    with live_server(app) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        problems, foreign = [], []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith((base, "blob:", "data:")) else None)
        page.goto(base + "/")
        page.wait_for_selector("#model b")  # the model description arrived
        assert "test_efficientnet" in page.inner_text("#model")
        assert "MiB" in page.inner_text("#limits")

        page.set_input_files("#file-input", str(photo))
        page.wait_for_selector("#jobs li.job", timeout=30_000)
        page.wait_for_selector("#result[data-status='done'], #result[data-status='failed']", timeout=120_000)
        job_id = page.get_attribute("#result", "data-job-id")
        job = page.request.get(f"{base}/api/v1/jobs/{job_id}").json()
        assert job["status"] == "done"

        # the verdict and the probability, as the API says
        label = job["result"]["label"]
        assert page.get_attribute("#verdict", "data-label") == label
        assert page.inner_text("#verdict") == {"real": "REAL", "fake": "FAKE"}[label]
        assert page.inner_text("#probability") == f"P(fake) = {job['result']['score']:.3f}"
        assert page.inner_text("#result-name") == photo.name
        # the overlay image, decoded by the browser at the photo's size
        page.wait_for_function("() => { const i = document.getElementById('overlay-media');"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
        size = page.evaluate("() => { const i = document.getElementById('overlay-media');"
                             " return [i.naturalWidth, i.naturalHeight]; }")
        assert size == [job["media"]["width"], job["media"]["height"]]
        # the timeline (one point: a photo is one frame) and the face thumbnails
        assert page.get_attribute("#timeline", "data-points") == "1"
        page.wait_for_function("() => [...document.querySelectorAll('#faces img')].some(i => i.complete && i.naturalWidth > 0)",
                               timeout=30_000)
        assert page.locator("#faces figure").count() == len(job["faces"]) >= 1
        assert page.locator(f"#jobs li[data-id='{job_id}'] .badge").inner_text().lower() == label
        # the JSON download is detect's document for this file
        with page.expect_download() as download:
            page.click("#download-json")
        saved = tmp_path / "downloaded.json"
        download.value.save_as(saved)
        import json

        assert json.loads(saved.read_text(encoding="utf-8"))["results"] == [job["result"]]

        screenshot = _artifact(request, "serve-page.png")
        page.screenshot(path=str(screenshot), full_page=True)
        ARTIFACTS.append(screenshot)
        page.close()
    assert screenshot.stat().st_size > 10_000
    assert problems == [], problems  # no script error, no blocked (Content-Security-Policy) request
    assert foreign == [], foreign  # the page loads nothing from anywhere else


def test_page_plays_a_video_overlay_and_draws_its_timeline(browser, sample_media, core_analyzer, tmp_path):
    from mfrn.serve.app import create_app
    from mfrn.serve.config import ServeConfig
    from mfrn.serve.service import DetectionService

    video = sample_media.single_face_video
    app = create_app(DetectionService(ServeConfig(data_dir=tmp_path / "data"), core_analyzer), grace_s=2.0)
    with live_server(app) as base:
        page = browser.new_page()
        problems = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(base + "/")
        page.set_input_files("#file-input", str(video))
        page.wait_for_selector("#result[data-status='done']", timeout=120_000)
        job = page.request.get(f"{base}/api/v1/jobs/{page.get_attribute('#result', 'data-job-id')}").json()
        with_face = sum(frame["score"] is not None for frame in job["result"]["frames"])
        assert with_face == 2 and page.get_attribute("#timeline", "data-points") == str(with_face)
        # the MP4 overlay decodes in Chromium (H.264) and shows the video's size
        page.wait_for_function("() => { const v = document.getElementById('overlay-media');"
                               " return v && v.tagName === 'VIDEO' && v.readyState >= 2; }", timeout=30_000)
        assert page.evaluate("() => document.getElementById('overlay-media').videoWidth") == job["media"]["width"]
        assert "2.4 s" in page.inner_text("#result-meta") and "72 frames" in page.inner_text("#result-meta")
        page.close()
    assert problems == [], problems
