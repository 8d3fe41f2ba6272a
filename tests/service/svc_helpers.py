"""Helpers for the service tests: real redis-server, API (uvicorn) and Celery worker processes.

Each helper starts a process on a free loopback port, waits until it answers and stops it (and
its children) afterwards. Nothing is mocked: HTTP goes over sockets, Celery over Redis.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

_UPLOADS = itertools.count()
ROOT = Path(__file__).resolve().parents[2]
ADULT_SAMPLE = ROOT / "tests" / "data" / "adult_sample.csv"
# Tiny training: 400 rows, 4 DP steps; long enough to be killed mid-run: LONG_JOB.
FAST_JOB = {"epsilon": 1.0, "epochs": 1, "batch_size": 100, "seed": 7}
# Long enough (720 steps, ~15 s on a quiet 2-core machine) that a test can see it running, write a
# checkpoint and be killed mid-way: at 10 epochs the trainer once finished in 3 s, before the first
# checkpoint reached S3, and the test waited for a checkpoint that never came.
LONG_JOB = {"epsilon": 1.0, "epochs": 40, "batch_size": 20, "seed": 7, "accountant": "rdp"}
TERMINAL = ("succeeded", "failed", "cancelled")

BASE_ENV = {
    "SYNTHGEN_DEVICE": "cpu",
    "SYNTHGEN_TRAIN_THREADS": "1",
    "SYNTHGEN_LEASE_S": "4",
    "SYNTHGEN_CHECKPOINT_EVERY_S": "0.3",
    "SYNTHGEN_RECONCILE_EVERY_S": "0.5",
    "SYNTHGEN_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
    "SYNTHGEN_TASK_SOFT_TIME_LIMIT_S": "300",
    "SYNTHGEN_TASK_TIME_LIMIT_S": "360",
    "SYNTHGEN_SCHEDULE_TICK_S": "0.5",
    "SYNTHGEN_WEBHOOK_EVERY_S": "0.3",
    "SYNTHGEN_WEBHOOK_BACKOFF_S": "0.5",
    "SYNTHGEN_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "SYNTHGEN_WEBHOOK_DEADLINE_S": "4",  # a dripping receiver is cut off after 4 s
    # The documented override of the training defaults (README, $SYNTHGEN_TRAINING): 20 of the
    # generator's 300 warm-up steps on the DP marginal tables. The warm-up reads no row and
    # spends no budget; it was most of a FAST_JOB's training, which these tests run dozens of
    # times for what the service does around a fit, not for the model's fidelity.
    "SYNTHGEN_TRAINING": json.dumps({"table_warmup_steps": 20}),
    "PYTHONUNBUFFERED": "1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """Direct children of a process (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def rss_mb(pid: int) -> float:
    """A process's resident memory (MB)."""
    for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def api_pid(service: Service) -> int:
    return next(p.pid for p in service.procs if p.poll() is None and "serve" in p.args)


def kill_tree(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    kids = children_of(proc.pid)
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for kid in kids:  # orphaned grandchildren (training processes) of this test's process
        try:
            os.kill(kid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class RedisServer:
    """redis-server with AOF on, as the cluster runs it."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--maxmemory-policy", "noeviction"],
            stdout=open(self.dir / "redis.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class S3Server:
    """moto's S3-compatible server (``moto[server]``) on a free loopback port, with a bucket."""

    def __init__(self, workdir: Path, bucket: str = "synthgen") -> None:
        pytest.importorskip("moto.server", reason="moto[server] is not installed")
        pytest.importorskip("s3fs", reason="s3fs is not installed")
        self.dir, self.bucket, self.port = workdir, bucket, free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What the service's processes need to reach it (s3fs reads these)."""
        return {"FSSPEC_S3_ENDPOINT_URL": self.url, "AWS_ENDPOINT_URL": self.url,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=open(self.dir / "moto.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.put(f"{self.url}/{self.bucket}", timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"the S3 server did not start: {(self.dir / 'moto.log').read_text()}")

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` (a fresh listing, no cache)."""
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=self.url, key="testing", secret="testing",
                               skip_instance_cache=True, use_listings_cache=False)
        found = fs.find(f"{self.bucket}/{prefix}")
        return sorted(str(k)[len(self.bucket) + 1:] for k in found)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Service:
    """``python -m synthgen serve`` (or ``worker``) as a subprocess with its own data folder."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, **BASE_ENV, "SYNTHGEN_DATA_DIR": str(data_dir), **env}
        self.port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "synthgen.db"

    def spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "synthgen", *args], cwd=ROOT,
                                env=self.env, stdout=open(self.data_dir / log, "ab"),
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start_api(self, log_level: str = "warning") -> subprocess.Popen[bytes]:
        proc = self.spawn("serve", "--port", str(self.port), "--log-level", log_level,
                          log="api.log")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited: {self.log('api.log')}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not become ready: {self.log('api.log')}")

    def start_worker(self, name: str = "gpu0", queues: str = "gpu") -> subprocess.Popen[bytes]:
        proc = self.spawn("worker", "--hostname", f"{name}@%h", "--log-level", "INFO",
                          "--queues", queues, log=f"worker-{name}.log")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # ready when its log says so
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited: {self.log(f'worker-{name}.log')}")
            if " ready." in self.log(f"worker-{name}.log"):
                return proc
            time.sleep(0.2)
        raise RuntimeError("the worker did not become ready")

    def log(self, name: str) -> str:
        path = self.data_dir / name
        return path.read_text(errors="replace") if path.exists() else ""

    def key(self, tenant: str) -> str:
        from synthgen.service.db import Database
        from synthgen.service.keys import create_key

        db = Database(f"sqlite:///{self.db_path}")
        try:
            db.create_all()
            return create_key(db, tenant)[1]
        finally:
            db.dispose()

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30) as conn:
            return list(conn.execute(sql, params))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            kill_tree(proc)
        self.procs.clear()


class Api:
    """An HTTP client for one tenant."""

    def __init__(self, url: str, key: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=60)

    def upload(self, path: Path | None = None, **form: Any) -> dict[str, Any]:
        """Upload ``path``, or by default the Adult sample with its rows in an order of its own:
        the budget follows the bytes, and tests that share one tenant need separate budgets."""
        if path is None:
            header, *rows = ADULT_SAMPLE.read_bytes().splitlines(keepends=True)
            random.Random(next(_UPLOADS)).shuffle(rows)
            content = b"".join([header, *rows])
        else:
            content = path.read_bytes()
        return self.upload_bytes(content, (path or ADULT_SAMPLE).name, **form)

    def upload_bytes(self, content: bytes, name: str = "table.csv", expect: int = 201,
                     **form: Any) -> dict[str, Any]:
        r = self.http.post("/v1/datasets", files={"file": (name, content, "text/csv")},
                           data=form)
        assert r.status_code == expect, r.text
        return dict(r.json())

    def submit(self, dataset_id: str, **body: Any) -> dict[str, Any]:
        r = self.http.post("/v1/jobs", json={"dataset_id": dataset_id, **body})
        assert r.status_code == 202, r.text
        return dict(r.json())

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait(self, job_id: str, until: Any = None, timeout: float = 180) -> dict[str, Any]:
        """Poll until ``until(job)`` (default: a terminal status)."""
        until = until or (lambda j: j["status"] in TERMINAL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if until(job):
                return job
            if job["status"] in TERMINAL:  # it will never get there: say so now, not after timeout
                raise AssertionError(f"job {job_id} ended before it got there: {job}")
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not get there in {timeout}s: {job}")


def training_child(service: Service) -> int | None:
    """The embedded engine's training subprocess, if one runs."""
    api_pid = service.procs[0].pid
    for pid in children_of(api_pid):
        line = cmdline(pid)
        if "spawn_main" in line and "resource_tracker" not in line:
            return pid
    return None


def wait_batch(api: Api, batch_id: str, timeout: float = 240) -> dict[str, Any]:
    """Poll a batch until it ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = dict(api.http.get(f"/v1/batches/{batch_id}").json())
        if batch["status"] in ("succeeded", "partially_failed", "failed"):
            return batch
        time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} did not end in {timeout}s: {batch}")


def assert_resumed_once(service: Service, api: Api, job: dict[str, Any],
                        dataset: dict[str, Any]) -> None:
    """After a kill: the job succeeded on a second attempt that resumed (never overlapping the
    first), and the dataset is charged exactly what the report says, within the reservation."""
    done = api.wait(job["id"])
    assert done["status"] == "succeeded", done
    assert done["attempt"] == 2
    report = api.http.get(f"/v1/jobs/{job['id']}/report").json()
    assert report["training"]["steps"] == report["training"]["planned_steps"]
    assert report["epsilon"] <= job["epsilon"]
    budget = api.http.get(f"/v1/datasets/{dataset['id']}/budget").json()
    assert abs(budget["spent_epsilon"] - report["epsilon"]) < 1e-9
    assert budget["spent_epsilon"] <= job["epsilon"]
    attempts = service.query("SELECT attempt, started_at, heartbeat_at, owner FROM "
                             "job_attempts WHERE job_id = ? ORDER BY attempt", job["id"])
    assert [a[0] for a in attempts] == [1, 2]
    assert attempts[1][1] > attempts[0][2], "the second attempt overlapped the first"
    assert attempts[0][3] != attempts[1][3]
    # the killed attempt's scratch folder was swept when the next one started, and the last
    # one cleans up after itself just after settling
    deadline = time.monotonic() + 15
    while left := list((service.data_dir / "scratch").glob(f"{job['id']}-*")):
        assert time.monotonic() < deadline, f"scratch folders left: {left}"
        assert f"{job['id']}-1" not in {p.name for p in left}, "the killed attempt's folder"
        time.sleep(0.2)


# --- database-level tests (no server) ----------------------------------------------------

# A ledger that composes to a small epsilon (RDP, 50 steps at sigma 1, q 0.1).
LEDGER = {"accountant": "rdp", "accountant_delta": 1e-6, "extra_delta": 0.0,
          "history": [[1.0, 0.1, 50]]}


def unit_database(path: Path) -> Any:
    """A fresh SQLite database (file ``path``) with tenant t1."""
    from synthgen.service.db import Database, Tenant

    db = Database(f"sqlite:///{path}")
    db.create_all()
    with db.write() as s:
        s.add(Tenant(id="t1", name="t1"))
    return db


def add_dataset(db: Any, dataset_id: str, cap: float, policy: str = "shared",
                tenant: str = "t1") -> None:
    from synthgen.service.db import Dataset

    with db.write() as s:
        s.add(Dataset(id=dataset_id, tenant_id=tenant, name=f"{dataset_id}.csv", format="csv",
                      size_bytes=1, sha256="0" * 64, rows=100, columns=[],
                      storage_key=f"k/{dataset_id}", budget_epsilon=cap, budget_policy=policy))


def finish_job(db: Any, job_id: str, state: str, charged: float = 0.0) -> None:
    """Claim a job and settle it as a worker would."""
    from synthgen.service.jobs import claim_job, settle

    claim = claim_job(db, job_id, f"worker-{job_id}", lease_s=30)
    assert claim is not None
    assert settle(db, job_id, state, owner=claim.owner, ledger=LEDGER if charged else None,
                  charged=charged, error=("x", "y") if state == "failed" else None)
