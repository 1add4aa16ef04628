"""The HTTP API on a real face photo and a real face video, with the real detector (tiny checkpoint)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.serve.helpers import BreakingAnalyzer, serve_app, upload, wait_for

pytestmark = pytest.mark.slow


def _detect_record(path: Path, checkpoint: Path, out: Path) -> tuple[dict, dict, str]:
    """What `mfrn detect` writes for ``path``: its record, its results.json and its results.csv."""
    from mfrn.detect import run_detect

    run_detect([path], checkpoint, out, device="cpu", progress=False)
    document = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return document["results"][0], document, (out / "results.csv").read_text(encoding="utf-8")


def _without(record: dict, *keys: str) -> dict:
    return {key: value for key, value in record.items() if key not in keys}


def _csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("which", ["photo", "video"])
def test_job_lifecycle_gives_detects_result(which, sample_media, tiny_checkpoint, core_analyzer, tmp_path):
    media = sample_media.single_face_images[0] if which == "photo" else sample_media.single_face_video
    with serve_app(tmp_path / "data", core_analyzer) as client:
        created = upload(client, media)
        assert created.status_code == 202, created.text
        body = created.json()
        assert body["status"] == "queued" and len(body["id"]) == 32
        assert created.headers["location"] == f"/api/v1/jobs/{body['id']}"
        job = wait_for(client, body["id"])
        assert job["status"] == "done", job
        assert job["progress"] == 1.0 and job["attempts"] == 1 and job["filename"] == media.name
        assert job["kind"] == ("image" if which == "photo" else "video")
        record = job["result"]
        assert record["schema"] == "mfrn-media-result" and record["label"] in ("real", "fake")
        assert job["label"] == record["label"] and job["score"] == record["score"]
        assert record["path"] == media.name  # the upload's name, never a server path
        assert record["overlay"] == f"/api/v1/jobs/{job['id']}/overlay"

        # the same record `mfrn detect` writes for the same file (paths, and the files only detect writes, aside)
        expected, document, detect_csv = _detect_record(media, tiny_checkpoint, tmp_path / "detect")
        assert _without(record, "path", "overlay", "timeline") == _without(expected, "path", "overlay", "timeline")

        # downloads: detect's results.json and results.csv for this one file
        downloaded = client.get(job["links"]["json"])
        assert downloaded.status_code == 200 and "attachment" in downloaded.headers["content-disposition"]
        served = downloaded.json()
        assert served.keys() == document.keys()
        assert served["counts"] == document["counts"] and served["results"] == [record]
        for key in ("schema", "schema_version", "checkpoint_sha256", "protocol", "calibration", "threshold", "model"):
            assert served[key] == document[key], key
        assert served["checkpoint"] == tiny_checkpoint.name
        rows, detect_rows = _csv_rows(client.get(job["links"]["csv"]).text), _csv_rows(detect_csv)
        assert [_without(r, "path") for r in rows] == [_without(r, "path") for r in detect_rows]
        assert {r["path"] for r in rows} == {media.name}

        # the overlay and the face thumbnails
        overlay = client.get(job["links"]["overlay"])
        assert overlay.status_code == 200
        assert overlay.headers["content-type"] == ("image/png" if which == "photo" else "video/mp4")
        assert job["faces"] and all(face["label"] in ("real", "fake") for face in job["faces"])
        thumbnail = client.get(job["faces"][0]["url"])
        assert thumbnail.status_code == 200 and thumbnail.content[:3] == b"\xff\xd8\xff"

        listed = client.get("/api/v1/jobs").json()
        assert [j["id"] for j in listed["jobs"]] == [job["id"]] and listed["counts"]["done"] == 1
        assert "result" not in listed["jobs"][0]


def test_overlay_is_the_cores_drawing(sample_media, tiny_checkpoint, core_analyzer, tmp_path):
    """The served overlay PNG is pixel for pixel the one `mfrn detect` draws (one overlay code)."""
    from mfrn.io_utils import read_image_rgb

    photo = sample_media.single_face_images[1]
    with serve_app(tmp_path / "data", core_analyzer) as client:
        job = wait_for(client, upload(client, photo).json()["id"])
        served = tmp_path / "served.png"
        served.write_bytes(client.get(job["links"]["overlay"]).content)
    expected, _, _ = _detect_record(photo, tiny_checkpoint, tmp_path / "detect")
    assert (read_image_rgb(served) == read_image_rgb(Path(expected["overlay"]))).all()


def test_no_face_is_its_own_verdict(sample_media, core_analyzer, tmp_path):
    landscape = sample_media.no_face_images[0]
    with serve_app(tmp_path / "data", core_analyzer) as client:
        job = wait_for(client, upload(client, landscape).json()["id"])
    assert job["status"] == "done" and job["label"] == "no_face" and job["score"] is None
    assert job["result"]["no_face"] is True and job["result"]["n_frames_with_face"] == 0
    assert job["faces"] == []


def test_the_checkpoints_stored_threshold_makes_the_verdict(sample_media, calibrated_checkpoint, tmp_path):
    from mfrn.serve.analysis import CoreAnalyzer

    analyzer = CoreAnalyzer.from_checkpoint(calibrated_checkpoint, device="cpu")
    with serve_app(tmp_path / "data", analyzer) as client:
        model = client.get("/api/v1/model").json()
        assert model["threshold"] == pytest.approx(0.2) and model["threshold_rule"] == "test: a fixed threshold of 0.2"
        assert model["checkpoint"] == "calibrated.pt" and str(calibrated_checkpoint) not in json.dumps(model)
        job = wait_for(client, upload(client, sample_media.single_face_images[0]).json()["id"])
    record = job["result"]
    assert record["threshold"] == pytest.approx(0.2) and record["threshold_rule"] == "test: a fixed threshold of 0.2"
    assert record["score"] >= 0.2 and record["label"] == "fake"  # at the uncalibrated 0.5 this face is "real"


def test_model_and_health_and_limits(core_analyzer, tiny_checkpoint, tmp_path):
    with serve_app(tmp_path / "data", core_analyzer, workers=2) as client:
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.json()["workers_alive"] == 2
        model = client.get("/api/v1/model").json()
        for key in ("checkpoint", "model", "backbone", "input_size", "protocol", "threshold", "threshold_rule"):
            assert key in model, key
        assert model["checkpoint"] == tiny_checkpoint.name and model["input_size"] == 64
        assert model["backbone"] == "test_efficientnet" and model["threshold"] == 0.5
        assert "uncalibrated" in model["threshold_rule"]
        limits = client.get("/api/v1/limits").json()
        assert limits["max_upload_bytes"] > 0 and limits["token_required"] is False and limits["workers"] == 2


def test_a_worker_bug_fails_that_job_and_the_worker_goes_on(sample_media, core_analyzer, tmp_path):
    photo = sample_media.single_face_images[0]
    analyzer = BreakingAnalyzer(core_analyzer)
    analyzer.gate.set()
    with serve_app(tmp_path / "data", analyzer) as client:
        broken = wait_for(client, upload(client, photo, name="boom.jpg").json()["id"])
        fine = wait_for(client, upload(client, photo).json()["id"])
        assert client.get("/healthz").status_code == 200
        assert client.get(f"/api/v1/jobs/{broken['id']}/results.json").status_code == 404
    assert broken["status"] == "failed" and "simulated worker bug" in broken["error"]
    assert fine["status"] == "done"


def _video_with_scrambled_frames(source: Path, target: Path, keep: int = 0) -> Path:
    """A copy of an MP4 (index at the end) whose frame data (``mdat``) is random after ``keep`` bytes: it opens
    and lists its frames, but what is scrambled does not decode."""
    import struct

    import numpy as np

    data = bytearray(source.read_bytes())
    offset = 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"mdat":
            start, stop = offset + 8 + keep, offset + size
            data[start:stop] = np.random.default_rng(0).integers(0, 256, stop - start, dtype=np.uint8).tobytes()
            target.write_bytes(bytes(data))
            return target
        offset += size
    raise AssertionError(f"{source} has no mdat box")


def test_a_video_whose_frames_do_not_decode_fails_with_the_readers_reason(sample_media, core_analyzer, tmp_path):
    broken = _video_with_scrambled_frames(sample_media.single_face_video, tmp_path / "scrambled.mp4")
    with serve_app(tmp_path / "data", core_analyzer) as client:
        response = upload(client, broken)
        assert response.status_code == 202, response.text  # a container FFmpeg opens, with a video stream
        job = wait_for(client, response.json()["id"])
        assert job["status"] == "failed" and "could not decode frames" in job["error"]
        assert str(tmp_path) not in job["error"] and job["id"] not in job["error"]  # no server path in the reason
        assert job["result"]["status"] == "failed" and job["result"]["error"] == job["error"]
        assert job["result"]["path"] == "scrambled.mp4"
        served = client.get(job["links"]["json"]).json()  # detect's document: the file under "skipped"
        assert served["skipped"] == [job["result"]] and served["results"] == [] and served["counts"]["failed"] == 1
        assert client.get(f"/api/v1/jobs/{job['id']}/overlay").status_code == 404


def test_a_partly_readable_video_is_scored_on_what_decodes(sample_media, core_analyzer, tmp_path):
    broken = _video_with_scrambled_frames(sample_media.single_face_video, tmp_path / "half.mp4", keep=60_000)
    with serve_app(tmp_path / "data", core_analyzer) as client:
        job = wait_for(client, upload(client, broken).json()["id"])
    assert job["status"] == "done" and job["result"]["n_frames"] == 1
    assert "partly readable" in job["result"]["warning"] and str(tmp_path) not in job["result"]["warning"]


def test_delete_removes_the_job_and_its_files(sample_media, core_analyzer, tmp_path):
    data = tmp_path / "data"
    with serve_app(data, core_analyzer) as client:
        job = wait_for(client, upload(client, sample_media.single_face_images[0]).json()["id"])
        files = [p for p in data.rglob("*") if p.is_file() and job["id"] in str(p)]
        assert files  # the overlay and a thumbnail
        assert client.delete(f"/api/v1/jobs/{job['id']}").status_code == 204
        assert client.get(f"/api/v1/jobs/{job['id']}").status_code == 404
        assert client.get(f"/api/v1/jobs/{job['id']}/overlay").status_code == 404
        assert client.delete(f"/api/v1/jobs/{job['id']}").status_code == 404
        assert not [p for p in files if p.exists()]


def test_deleting_a_running_job_discards_its_run(sample_media, gated, tmp_path):
    data = tmp_path / "data"
    with serve_app(data, gated) as client:
        job_id = upload(client, sample_media.single_face_images[0]).json()["id"]
        assert gated.started.wait(30)
        assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "running"
        assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
        gated.gate.set()
        other = wait_for(client, upload(client, sample_media.single_face_images[1]).json()["id"])
        assert other["status"] == "done"  # the worker went on after the discarded run
        assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert not [p for p in data.rglob("*") if job_id in str(p)]


def test_unknown_and_malformed_job_ids_are_404(core_analyzer, tmp_path):
    with serve_app(tmp_path / "data", core_analyzer) as client:
        for job_id in ("0" * 32, "..%2F..%2Fetc%2Fpasswd", "nope"):
            assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
            assert client.get(f"/api/v1/jobs/{job_id}/overlay").status_code == 404
            assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 404


def test_results_of_an_unfinished_job_are_409(sample_media, gated, tmp_path):
    with serve_app(tmp_path / "data", gated) as client:
        job_id = upload(client, sample_media.single_face_images[0]).json()["id"]
        for part in ("overlay", "results.json", "results.csv", "faces/0"):
            response = client.get(f"/api/v1/jobs/{job_id}/{part}")
            assert response.status_code == 409, (part, response.text)
        gated.gate.set()
        job = wait_for(client, job_id)
        assert client.get(f"/api/v1/jobs/{job_id}/faces/{len(job['faces'])}").status_code == 404
        assert client.get(f"/api/v1/jobs/{job_id}/faces/-1").status_code == 404


def test_openapi_schema_and_docs_need_no_cdn(core_analyzer, tmp_path):
    with serve_app(tmp_path / "data", core_analyzer) as client:
        schema = client.get("/openapi.json")
        assert schema.status_code == 200
        paths = schema.json()["paths"]
        for path in ("/healthz", "/api/v1/model", "/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/overlay",
                     "/api/v1/jobs/{job_id}/results.json", "/api/v1/jobs/{job_id}/results.csv"):
            assert path in paths, path
        upload_body = paths["/api/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert upload_body["required"] == ["file"]
        assert {"202", "413", "415", "429"} <= set(paths["/api/v1/jobs"]["post"]["responses"])
        assert "delete" in paths["/api/v1/jobs/{job_id}"]
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger" not in docs.text.lower()
        assert client.get("/redoc").status_code == 404


def test_page_and_its_assets_are_local(core_analyzer, tmp_path):
    import re

    with serve_app(tmp_path / "data", core_analyzer) as client:
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert "/static/app.js" in assets and "/static/app.css" in assets
        for asset in ("/static/app.js", "/static/app.css", "/static/docs.js", "/static/docs.html"):
            text = client.get(asset).text
            assert client.get(asset).status_code == 200
            assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), f"{asset} refers to another host"
        assert all(not a.startswith(("http:", "https:", "//")) for a in assets)
        assert client.get("/api/v1/jobs").headers["cache-control"] == "no-store"
