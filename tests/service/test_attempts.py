"""Fencing zombie attempts: per-attempt outputs, the job pointing at the attempt it settled
with, no write without a live lease, training that stops when heartbeats keep failing; and the
audit's holdout seed, which is secret."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service.svc_helpers import Api, Service, add_dataset, unit_database
from synthgen.service.budget import admit_job
from synthgen.service.db import Job
from synthgen.service.jobs import claim_job, output_key, reconcile, settle
from synthgen.service.runner import LeaseLost, _Heartbeat, _Outputs
from synthgen.service.settings import Settings
from synthgen.service.storage import Storage


def _job(db: Any, job_id: str) -> Job:
    with db.read() as s:
        return s.scalars(select(Job).where(Job.id == job_id)).one()


def _setup(tmp_path: Path) -> tuple[Any, Storage, Settings, str]:
    db = unit_database(tmp_path / "jobs.db")
    add_dataset(db, "ds1", cap=5.0)
    job = admit_job(db, "t1", "ds1", epsilon=1.0, options={}, max_attempts=3)
    assert job is not None
    settings = Settings(data_dir=tmp_path, lease_s=1.0)
    return db, Storage(settings.objects_url), settings, job.id


def test_a_zombie_attempt_writes_nothing_the_job_serves(tmp_path: Path) -> None:
    db, storage, settings, job_id = _setup(tmp_path)
    zombie = claim_job(db, job_id, "worker-a", lease_s=0.2)
    assert zombie is not None
    time.sleep(0.3)  # worker-a stalls past its lease; the reconciler queues the job again
    assert reconcile(db, storage) == [job_id]
    live = claim_job(db, job_id, "worker-b", lease_s=30)
    assert live is not None and live.attempt == 2
    job = _job(db, job_id)
    beats = [_Heartbeat(db, storage, c, settings, tmp_path / "none.pt", "k")
             for c in (zombie, live)]
    # The zombie may write nothing (its lease is gone); the live attempt writes its own keys.
    with pytest.raises(LeaseLost):
        _Outputs(storage, job, zombie.attempt, beats[0]).write_json("report.json", {"a": 1})
    _Outputs(storage, job, live.attempt, beats[1]).write_json("report.json", {"attempt": 2})
    # Even a zombie write that slipped through lands under its own attempt's key.
    storage.open(Storage.attempt_key("t1", job_id, 1, "report.json"), "w").close()
    assert not settle(db, job_id, "succeeded", owner="worker-a", ledger=None, charged=1.0,
                      output_attempt=1)
    assert settle(db, job_id, "succeeded", owner="worker-b", ledger=None, charged=1.0,
                  output_attempt=2)
    job = _job(db, job_id)
    assert job.output_attempt == 2
    assert output_key(job, "report.json") == Storage.attempt_key("t1", job_id, 2, "report.json")
    assert storage.read_bytes(output_key(job, "report.json")) == b'{\n  "attempt": 2\n}'


def test_heartbeats_that_keep_failing_stop_training(tmp_path: Path) -> None:
    db, storage, settings, job_id = _setup(tmp_path)
    claim = claim_job(db, job_id, "worker-a", lease_s=settings.lease_s)
    assert claim is not None
    beat = _Heartbeat(db, storage, claim, settings, tmp_path / "none.pt", "k")
    beat.start()
    try:
        time.sleep(0.6)
        assert not beat.stop_training.is_set()  # beats succeed: train on
        # The database fails every heartbeat from now on (a real error from SQLite).
        with sqlite3.connect(tmp_path / "jobs.db") as conn:
            conn.execute("ALTER TABLE jobs RENAME TO jobs_gone")
        deadline = time.monotonic() + 5
        while not beat.stop_training.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert beat.stop_training.is_set() and beat.lost.is_set()
    finally:
        beat.finish()
        db.dispose()


def test_a_finished_job_serves_the_outputs_of_its_attempt(
    embedded: Service, tenant_a: Api, finished_job: dict[str, Any]
) -> None:
    job_id = finished_job["job"]["id"]
    [(attempt, tenant)] = embedded.query(
        "SELECT output_attempt, tenant_id FROM jobs WHERE id = ?", job_id)
    assert attempt == 1
    base = embedded.data_dir / "objects" / "tenants" / tenant / "jobs" / job_id
    assert (base / "attempts" / "1" / "synthetic.csv").exists()
    assert not (base / "synthetic.csv").exists()
    served = tenant_a.http.get(f"/v1/jobs/{job_id}/synthetic.csv").content
    assert served == (base / "attempts" / "1" / "synthetic.csv").read_bytes()


def test_the_holdout_split_is_seeded_by_a_secret(tmp_path: Path, embedded: Service,
                                                 tenant_a: Api,
                                                 finished_job: dict[str, Any]) -> None:
    db = unit_database(tmp_path / "jobs.db")
    add_dataset(db, "ds1", cap=5.0)
    jobs = [admit_job(db, "t1", "ds1", epsilon=1.0, options={}) for _ in range(2)]
    seeds = [j.holdout_seed for j in jobs if j is not None]
    assert len(set(seeds)) == 2
    for job, seed in zip(jobs, seeds, strict=True):
        assert job is not None
        public = int.from_bytes(hashlib.sha256(job.id.encode()).digest()[:4], "little")
        assert seed != public and seed >= 2**32  # 62 random bits, not 32 bits of the id
    job_id = finished_job["job"]["id"]
    [(secret,)] = embedded.query("SELECT holdout_seed FROM jobs WHERE id = ?", job_id)
    shown = tenant_a.http.get(f"/v1/jobs/{job_id}").text
    assert "holdout_seed" not in shown and str(secret) not in shown
