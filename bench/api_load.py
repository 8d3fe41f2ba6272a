"""API load on the embedded engine: job status polling and listing, p50/p95/p99 latency.

Starts ``synthgen serve`` (embedded engine, no training processes: ``SYNTHGEN_LOCAL_WORKERS=0``)
on a free loopback port with a fresh data folder, creates a tenant, one dataset and ``--jobs``
queued jobs, then sends an open-loop stream of requests at ``--rate`` per second for
``--seconds`` (80 % ``GET /v1/jobs/{id}``, 20 % ``GET /v1/jobs?limit=20``) from
``--concurrency`` keep-alive connections, and prints a table. Bounded in count and time; loopback
only.

    python bench/api_load.py --rate 250 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "adult_sample.csv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SYNTHGEN_DATA_DIR": str(data_dir), "SYNTHGEN_LOCAL_WORKERS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "synthgen", "serve", "--port", str(port),
                             "--log-level", "warning"], cwd=ROOT, env=env,
                            stdout=open(data_dir / "api.log", "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the API did not start; see api.log")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_key(data_dir: Path) -> str:
    from synthgen.service.db import Database
    from synthgen.service.keys import create_key

    db = Database(f"sqlite:///{data_dir / 'synthgen.db'}")
    try:
        return create_key(db, "bench")[1]
    finally:
        db.dispose()


class Connection:
    """A minimal HTTP/1.1 keep-alive client: the load generator must cost far less CPU than the
    server it measures, and a full client library (httpx) did not on 2 cores."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {key}\r\nHost: {host}:{port}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\n{self.auth}\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def run_load(port: int, key: str, job_ids: list[str], rate: float, seconds: float,
                   concurrency: int) -> tuple[list[float], list[float], int, float]:
    """Open loop: request i is due at start + i / rate; its latency counts from that moment,
    so time spent waiting for a free connection is included (no coordinated omission)."""
    status_lat: list[float] = []
    list_lat: list[float] = []
    errors = 0
    rng = random.Random(0)
    total = int(rate * seconds)
    plan = [(i / rate, rng.random() < 0.2, rng.choice(job_ids)) for i in range(total)]
    queue: asyncio.Queue[tuple[float, bool, str] | None] = asyncio.Queue()
    start = time.perf_counter()

    async def connection_loop() -> None:
        nonlocal errors
        conn = Connection("127.0.0.1", port, key)
        try:
            while (item := await queue.get()) is not None:
                due, listing, job_id = item
                path = "/v1/jobs?limit=20" if listing else f"/v1/jobs/{job_id}"
                if await conn.get(path) != 200:
                    errors += 1
                (list_lat if listing else status_lat).append(time.perf_counter() - start - due)
        finally:
            conn.close()

    workers = [asyncio.create_task(connection_loop()) for _ in range(concurrency)]
    for item in plan:
        delay = start + item[0] - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(item)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return status_lat, list_lat, errors, time.perf_counter() - start


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=250.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=200, help="queued jobs to poll and list")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="synthgen-bench-") as tmp:
        data_dir = Path(tmp)
        port = free_port()
        proc = start_server(data_dir, port)
        try:
            base = f"http://127.0.0.1:{port}"
            key = make_key(data_dir)
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                              timeout=60) as http:
                with open(SAMPLE, "rb") as fh:
                    ds = http.post("/v1/datasets", files={"file": ("a.csv", fh)},
                                   data={"budget_epsilon": "1000"}).json()
                job_ids = [http.post("/v1/jobs", json={"dataset_id": ds["id"], "epsilon": 1}
                                     ).json()["id"] for _ in range(args.jobs)]
            cpu0 = cpu_seconds(proc.pid)
            status, listing, errors, wall = asyncio.run(run_load(
                port, key, job_ids, args.rate, args.seconds, args.concurrency))
            server_cpu = cpu_seconds(proc.pid) - cpu0
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    done = len(status) + len(listing)
    print(f"target {args.rate:g} req/s for {args.seconds:g} s, {args.concurrency} connections, "
          f"{args.jobs} jobs; {os.cpu_count()} cores")
    print(f"{'requests':<24}{'count':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, lat in (("GET /v1/jobs/{id}", status), ("GET /v1/jobs?limit=20", listing),
                      ("all", status + listing)):
        print(f"{name:<24}{len(lat):>7}{pct(lat, 50):>9.1f}{pct(lat, 95):>9.1f}"
              f"{pct(lat, 99):>9.1f}")
    print(f"achieved {done / wall:.0f} req/s, {errors} errors; server CPU "
          f"{server_cpu / max(done, 1) * 1000:.2f} ms per request "
          f"({server_cpu / wall:.0%} of a core)")


if __name__ == "__main__":
    main()
