"""What the service refuses, and how: size (413, while streaming), content (415, from the bytes), pixels,
duration and frames (413), a full queue (429), the token (401); client names never reach the file system."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.serve.helpers import live_server, serve_app, upload, wait_for

pytestmark = pytest.mark.slow


def _limits(**values):
    from mfrn.serve.config import ServeLimits

    return ServeLimits(**values)


def _stored_files(data: Path) -> list[Path]:
    return sorted(p for p in data.rglob("*") if p.is_file() and p.name not in ("jobs.sqlite3", "jobs.sqlite3-wal",
                                                                                  "jobs.sqlite3-shm"))


def test_text_renamed_to_mp4_is_415(media_maker, core_analyzer, tmp_path):
    fake_video = media_maker.text_as("notes.mp4")
    data = tmp_path / "data"
    with serve_app(data, core_analyzer) as client:
        response = upload(client, fake_video)
        assert response.status_code == 415, response.text
        assert "not an image or video" in response.json()["detail"]
        assert str(data) not in response.json()["detail"]  # the temporary file's path stays on the server
        for name, content in (("empty.jpg", b""), ("random.png", bytes(range(256)) * 64),
                              ("page.html", b"<html><body>hello</body></html>")):
            refused = upload(client, Path(name), content=content)
            assert refused.status_code == 415, (name, refused.text)
        tone = upload(client, media_maker.audio_only("tone.mp4"))
        assert tone.status_code == 415 and "no video stream" in tone.json()["detail"]
        assert client.get("/api/v1/jobs").json()["jobs"] == []
    assert _stored_files(data) == []  # nothing refused is kept


def test_content_decides_not_the_name(sample_media, core_analyzer, tmp_path):
    """A photo named .mp4 is an image; a video named .jpg is a video."""
    with serve_app(tmp_path / "data", core_analyzer) as client:
        photo = wait_for(client, upload(client, sample_media.single_face_images[0], name="clip.mp4").json()["id"])
        video = wait_for(client, upload(client, sample_media.single_face_video, name="photo.jpg").json()["id"])
    assert photo["kind"] == "image" and photo["media_format"] == "JPEG" and photo["status"] == "done"
    assert video["kind"] == "video" and video["status"] == "done" and video["result"]["n_frames"] == 2


def test_upload_size_limit_is_413(sample_media, core_analyzer, tmp_path):
    photo = sample_media.single_face_images[0]
    size = photo.stat().st_size
    data = tmp_path / "data"
    with serve_app(data, core_analyzer, limits=_limits(max_upload_bytes=size - 1)) as client:
        response = upload(client, photo)
        assert response.status_code == 413, response.text
        assert response.json()["limit"] == "max_upload_bytes" and response.json()["max"] == size - 1
    assert _stored_files(data) == []
    with serve_app(data, core_analyzer, limits=_limits(max_upload_bytes=size)) as client:
        assert upload(client, photo).status_code == 202  # exactly at the limit is fine


def test_size_limit_is_enforced_while_streaming(tmp_path):
    """The body is refused once it passes the limit: the rest is never read, nothing is left on disk."""
    from mfrn.serve.uploads import UploadRefused, receive_upload

    boundary = "testboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()
    chunk = b"\0" * 65536
    sent = []

    async def body():
        yield head
        for _ in range(1000):  # 64 MiB if it were all read
            sent.append(len(chunk))
            yield chunk

    with pytest.raises(UploadRefused) as refusal:
        asyncio.run(receive_upload(body(), f"multipart/form-data; boundary={boundary}", None, tmp_path, 1_000_000))
    assert refusal.value.status == 413
    assert sum(sent) <= 1_000_000 + 2 * 65536 + 65536  # read no further than the limit (plus a chunk or two)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UploadRefused) as announced:  # a Content-Length over the limit: refused before reading
        asyncio.run(receive_upload(body(), f"multipart/form-data; boundary={boundary}", str(64 << 20), tmp_path, 1_000_000))
    assert announced.value.status == 413


def test_an_oversized_upload_gets_its_413_over_real_http(core_analyzer, tmp_path):
    """Through uvicorn, with the body still coming: announced (Content-Length) and chunked (no length)."""
    import httpx

    from mfrn.serve.app import create_app
    from mfrn.serve.config import ServeConfig
    from mfrn.serve.service import DetectionService

    config = ServeConfig(data_dir=tmp_path / "data", limits=_limits(max_upload_bytes=1_000_000))
    with live_server(create_app(DetectionService(config, core_analyzer), grace_s=2.0)) as base:
        announced = httpx.post(base + "/api/v1/jobs", files={"file": ("big.mp4", b"\0" * 20_000_000)}, timeout=60)
        assert announced.status_code == 413 and "Content-Length" in announced.json()["detail"]

        def chunks():
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.mp4"\r\n\r\n'
            for _ in range(100):
                yield b"\0" * 65536

        chunked = httpx.post(base + "/api/v1/jobs", content=chunks(), timeout=60,
                             headers={"content-type": "multipart/form-data; boundary=b"})
        assert chunked.status_code == 413 and chunked.json()["limit"] == "max_upload_bytes"
    assert list((tmp_path / "data" / "tmp").iterdir()) == []


def test_pixel_duration_and_frame_limits_are_413(sample_media, media_maker, core_analyzer, tmp_path):
    photo, video = sample_media.single_face_images[0], sample_media.single_face_video  # video: 72 frames, 640x360
    huge = media_maker.huge_png(20000, 20000)  # 400 MP announced in a tiny file
    with serve_app(tmp_path / "a", core_analyzer) as client:
        response = upload(client, huge)
        assert response.status_code == 413 and response.json()["limit"] == "max_pixels", response.text
    with serve_app(tmp_path / "b", core_analyzer, limits=_limits(max_pixels=640 * 360 - 1)) as client:
        frame = upload(client, video)
        assert frame.status_code == 413 and frame.json()["limit"] == "max_pixels", frame.text
        assert "video frame" in frame.json()["detail"]
    with serve_app(tmp_path / "c", core_analyzer, limits=_limits(max_duration_s=1.0)) as client:
        long = upload(client, video)
        assert long.status_code == 413 and long.json()["limit"] == "max_duration_s", long.text
        assert upload(client, photo).status_code == 202  # an image has no duration
    with serve_app(tmp_path / "d", core_analyzer, limits=_limits(max_frames=71)) as client:
        many = upload(client, video)
        assert many.status_code == 413 and many.json()["limit"] == "max_frames" and many.json()["value"] == 72


def test_malformed_requests(core_analyzer, tmp_path):
    with serve_app(tmp_path / "data", core_analyzer) as client:
        raw = client.post("/api/v1/jobs", content=b"\xff\xd8\xff", headers={"content-type": "image/jpeg"})
        assert raw.status_code == 415 and "multipart/form-data" in raw.json()["detail"]
        other_field = client.post("/api/v1/jobs", files={"upload": ("a.jpg", b"\xff\xd8\xff")})
        assert other_field.status_code == 422 and "'file'" in other_field.json()["detail"]
        two = client.post("/api/v1/jobs", files=[("file", ("a.jpg", b"1")), ("file", ("b.jpg", b"2"))])
        assert two.status_code == 422
        assert client.get("/api/v1/jobs?status=bogus").status_code == 422


def test_client_names_never_reach_the_file_system(sample_media, core_analyzer, tmp_path):
    data = tmp_path / "srv" / "data"
    photo = sample_media.single_face_images[0]
    with serve_app(data, core_analyzer) as client:
        names = ["../../escaped.jpg", "/etc/passwd", "..\\..\\win.jpg", "C:\\Users\\x\\cv.jpg", "ü 顔.jpg"]
        jobs = [wait_for(client, upload(client, photo, name=name).json()["id"]) for name in names]
    assert [job["filename"] for job in jobs] == ["escaped.jpg", "passwd", "win.jpg", "cv.jpg", "ü 顔.jpg"]
    assert [job["result"]["path"] for job in jobs] == [job["filename"] for job in jobs]
    assert not list((tmp_path / "srv").glob("escaped*")) and not list(tmp_path.glob("escaped*"))
    ids = {job["id"] for job in jobs}
    for path in _stored_files(data):  # every stored name is the service's own: job ids, run tokens, numbers
        relative = path.relative_to(data)
        assert re.fullmatch(r"(overlays/[0-9a-f]{32}-[0-9a-f]{16}\.png|faces/[0-9a-f]{32}/[0-9a-f]{16}-\d+\.jpg)",
                            relative.as_posix()), relative
        assert relative.parts[1][:32] in ids


def test_display_names_are_plain_text():
    from mfrn.serve.uploads import display_name

    assert display_name("a\x00b\nc\u202e.jpg") == "abc.jpg"  # control and bidi-override characters dropped
    assert display_name("../") == "upload" and display_name(None) == "upload"
    assert len(display_name("x" * 1000 + ".jpg")) == 200


def test_a_full_queue_answers_429(sample_media, gated, tmp_path):
    photo = sample_media.single_face_images[0]
    with serve_app(tmp_path / "data", gated, limits=_limits(max_queued=2)) as client:
        running = upload(client, photo).json()["id"]
        assert gated.started.wait(30)  # the worker holds the first job
        queued = [upload(client, photo) for _ in range(2)]
        assert [r.status_code for r in queued] == [202, 202]
        full = upload(client, photo)
        assert full.status_code == 429 and full.headers["retry-after"] == "5"
        assert full.json()["max_queued"] == 2
        gated.gate.set()
        done = [wait_for(client, job_id)["status"] for job_id in [running, *(r.json()["id"] for r in queued)]]
        assert done == ["done"] * 3
        assert upload(client, photo).status_code == 202  # room again


TOKEN = "s3cret-token-for-tests-0123456789"


def test_the_token_guards_the_api(sample_media, core_analyzer, tmp_path):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve_app(tmp_path / "data", core_analyzer, token=TOKEN) as client:
        for method, path in (("get", "/api/v1/model"), ("get", "/api/v1/jobs"), ("get", "/api/v1/limits"),
                             ("get", f"/api/v1/jobs/{'0' * 32}"), ("delete", f"/api/v1/jobs/{'0' * 32}")):
            response = getattr(client, method)(path)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", path
            assert getattr(client, method)(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert getattr(client, method)(path, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        refused = upload(client, sample_media.single_face_images[0])
        assert refused.status_code == 401
        assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200
        assert "HTTPBearer" in client.get("/openapi.json").json()["components"]["securitySchemes"]
        job = wait_for(client, upload(client, sample_media.single_face_images[0], headers=auth).json()["id"],
                       headers=auth)
        assert job["status"] == "done"
        for part in ("overlay", "results.json", "results.csv", "faces/0"):
            assert client.get(f"/api/v1/jobs/{job['id']}/{part}").status_code == 401
            assert client.get(f"/api/v1/jobs/{job['id']}/{part}", headers=auth).status_code == 200
        assert client.get("/api/v1/limits", headers=auth).json()["token_required"] is True
    assert client.service.store is not None


def test_serving_beyond_loopback_needs_a_token():
    from mfrn.serve.config import is_loopback
    from mfrn.serve.run import ServeSetupError, check_exposure

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.org"))
    assert check_exposure("127.0.0.1", None, False, False) == []
    with pytest.raises(ServeSetupError, match="without a token"):
        check_exposure("0.0.0.0", None, False, False)
    insisted = check_exposure("0.0.0.0", None, True, False)
    assert insisted and "WITHOUT a token" in insisted[0]
    plain = check_exposure("0.0.0.0", TOKEN, False, False)
    assert len(plain) == 1 and "plain HTTP" in plain[0]
    assert check_exposure("0.0.0.0", TOKEN, False, True) == []
    assert any("shorter than 16" in line for line in check_exposure("10.0.0.1", "short", False, True))
