"""A bounded local load test of `mfrn serve`: N concurrent uploads over loopback, nothing lost.

    python benchmarks/bench_serve.py [--uploads 48] [--concurrency 8] [--workers 1] [--model tiny|effb4]
                                     [-m CKPT] [--device cpu] [--video]

Starts the real server (`mfrn serve`, a child process, 127.0.0.1, a free port, a token, a temporary --data),
then `--concurrency` client threads upload `--uploads` real face photos (the sample media, cycled; `--video`:
the sample face video) and poll each job until it is done. A 429 (queue full) is retried after its
Retry-After and counted. Reports p50/p95 of the time from the start of an upload to its result, the
throughput (images/s from the first upload to the last result), and checks that every upload became a
finished job with a verdict (nothing lost). Random weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_eval import EFFB4, TINY, make_checkpoint  # the same checkpoints as the eval benchmark

from mfrn.provenance import commit, machine

TOKEN = "bench-token-0123456789abcdef0123"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(checkpoint: Path, data: Path, port: int, workers: int, log: Path, device: str) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "MFRN_SERVE_TOKEN": TOKEN}
    process = subprocess.Popen([sys.executable, "-m", "mfrn.cli", "serve", "-m", str(checkpoint), "--port", str(port),
                                "--data", str(data), "--workers", str(workers), "--device", device,
                                "--log-level", "warning"], stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mfrn serve exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("mfrn serve did not become healthy")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_clients(base: str, files: list[Path], uploads: int, concurrency: int) -> dict:
    import httpx

    todo = list(range(uploads))
    lock = threading.Lock()
    latencies, jobs, errors = [], {}, []
    retries = [0]
    blobs = [(path.name, path.read_bytes()) for path in files]

    def client() -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
            while True:
                with lock:
                    if not todo:
                        return
                    number = todo.pop(0)
                name, data = blobs[number % len(blobs)]
                began = time.monotonic()
                while True:
                    response = http.post("/api/v1/jobs", files={"file": (f"{number:04d}-{name}", data)})
                    if response.status_code != 429:
                        break
                    with lock:
                        retries[0] += 1
                    time.sleep(float(response.headers.get("retry-after", "1")) / 5)  # retry sooner than told
                if response.status_code != 202:
                    errors.append(f"upload {number}: {response.status_code} {response.text[:200]}")
                    continue
                job_id = response.json()["id"]
                while (job := http.get(f"/api/v1/jobs/{job_id}").json())["status"] not in ("done", "failed"):
                    time.sleep(0.05)
                with lock:
                    latencies.append(time.monotonic() - began)
                    jobs[job_id] = job

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"wall": time.monotonic() - started, "latencies": latencies, "jobs": jobs, "errors": errors,
            "retries": retries[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--checkpoint", type=Path, help="a checkpoint (default: a random-weight one, --model)")
    parser.add_argument("--model", choices=("tiny", "effb4"), default="tiny")
    parser.add_argument("--uploads", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the server's model)")
    parser.add_argument("--video", action="store_true", help="upload the sample face video instead of photos")
    args = parser.parse_args()
    if not 1 <= args.uploads <= 2000 or not 1 <= args.concurrency <= 64:
        raise SystemExit("keep it bounded: 1..2000 uploads, 1..64 concurrent clients")

    from mfrn.data.samples import default_cache_dir, fetch_sample_media

    samples = fetch_sample_media(default_cache_dir())
    files = [samples.single_face_video] if args.video else samples.single_face_images
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        tmp = Path(tmp)
        checkpoint = args.checkpoint or make_checkpoint(tmp / f"{args.model}.pt", TINY if args.model == "tiny" else EFFB4)
        port = free_port()
        server = start_server(checkpoint, tmp / "data", port, args.workers, tmp / "serve.log", args.device)
        try:
            outcome = run_clients(f"http://127.0.0.1:{port}", files, args.uploads, args.concurrency)
            import httpx

            listed = httpx.get(f"http://127.0.0.1:{port}/api/v1/jobs?limit=1000",
                               headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    jobs = outcome["jobs"]
    done = [job for job in jobs.values() if job["status"] == "done" and job["label"] in ("real", "fake", "no_face")]
    lost = args.uploads - len(done)
    latencies = outcome["latencies"]
    kind = "video" if args.video else "image"
    print(f"mfrn serve load test: {args.uploads} {kind} uploads, {args.concurrency} concurrent clients, "
          f"{args.workers} worker(s), model {checkpoint.name if args.checkpoint else args.model} ({args.device})")
    print(f"  machine: {machine()}; commit {commit()}")
    print(f"  finished: {len(done)} done, {sum(j['status'] == 'failed' for j in jobs.values())} failed, "
          f"{len(outcome['errors'])} refused, {outcome['retries']} retries after 429; listed by the server: "
          f"{listed['counts']}")
    if latencies:
        print(f"  time to result: p50 {percentile(latencies, 0.5):.2f} s, p95 {percentile(latencies, 0.95):.2f} s, "
              f"mean {statistics.mean(latencies):.2f} s, max {max(latencies):.2f} s")
    print(f"  throughput: {len(done) / outcome['wall']:.2f} {kind}s/s ({outcome['wall']:.1f} s wall)")
    for error in outcome["errors"][:5]:
        print("  " + error)
    print("  nothing lost" if lost == 0 and listed["counts"]["done"] == args.uploads else f"  LOST: {lost}")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
