"""The claim/lease/settle code on a real database (SQLite file and, when one answers on
127.0.0.1:5432, PostgreSQL): duplicates, expiry, the attempt cap, concurrent admission."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from synthgen.service.budget import BudgetExceeded, admit_job, budget_view
from synthgen.service.db import Database, Dataset, Job, Tenant
from synthgen.service.jobs import claim_job, heartbeat, reconcile, settle
from synthgen.service.storage import Storage

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _postgres() -> Iterator[str]:
    pytest.importorskip("psycopg")
    from sqlalchemy import create_engine, text

    name = f"synthgen_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # no server here: the SQLite run covers the logic
        admin.dispose()
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({type(exc).__name__})")
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'jobs.db'}"])
    else:
        urls = _postgres()
    url = next(urls)
    database = Database(url)
    database.create_all()
    with database.write() as s:
        s.add(Tenant(id="t1", name="t1"))
        s.flush()
        s.add(Dataset(id="ds1", tenant_id="t1", name="x.csv", format="csv", size_bytes=1,
                      sha256="0" * 64, rows=100, columns=[], storage_key="k",
                      budget_epsilon=5.0))
    yield database
    database.dispose()
    for _ in urls:  # drop the Postgres database
        pass


def _job(db: Database, epsilon: float = 1.0, max_attempts: int = 2) -> str:
    job = admit_job(db, "t1", "ds1", epsilon=epsilon, options={}, max_attempts=max_attempts)
    assert job is not None
    return job.id


def _state(db: Database, job_id: str) -> Job:
    with db.read() as s:
        return s.scalars(select(Job).where(Job.id == job_id)).one()


def test_a_duplicate_delivery_finds_nothing_to_claim(db: Database) -> None:
    job_id = _job(db)
    first = claim_job(db, job_id, "worker-a", lease_s=30)
    assert first is not None and first.attempt == 1
    assert claim_job(db, job_id, "worker-b", lease_s=30) is None
    assert heartbeat(db, first, 30) == (True, False)


def test_an_expired_lease_is_requeued_then_failed_at_the_attempt_cap(
    db: Database, tmp_path: Path
) -> None:
    storage = Storage((tmp_path / "objects").as_uri())
    job_id = _job(db, epsilon=1.5, max_attempts=2)
    sent: list[str] = []
    for attempt in (1, 2):
        claim = claim_job(db, job_id, f"worker-{attempt}", lease_s=0.05)
        assert claim is not None and claim.attempt == attempt
        time.sleep(0.15)  # the worker died: no heartbeat
        reconcile(db, storage, dispatch=sent.append)
    assert sent == [job_id]  # re-queued once, then the cap
    job = _state(db, job_id)
    assert job.state == "failed" and job.error_code == "worker-lost"
    # Nothing shows what the lost attempts read: charged in full, never more.
    assert job.charged_epsilon == 1.5
    assert claim_job(db, job_id, "worker-3", lease_s=30) is None
    with db.read() as s:
        dataset = s.get(Dataset, 1)
        assert dataset is not None
        view = budget_view(s, dataset)
    assert view["spent_epsilon"] == pytest.approx(1.5) and view["reserved_epsilon"] == 0


def test_a_worker_that_lost_its_lease_cannot_settle(db: Database) -> None:
    job_id = _job(db)
    old = claim_job(db, job_id, "old", lease_s=0.05)
    assert old is not None
    time.sleep(0.1)
    new = claim_job(db, job_id, "new", lease_s=30)  # a redelivery takes the expired lease
    assert new is not None and new.attempt == 2
    assert heartbeat(db, old, 30) == (False, False)
    assert not settle(db, job_id, "succeeded", owner="old", ledger=None, charged=0.2)
    ledger = {"accountant": "rdp", "accountant_delta": 1e-6, "extra_delta": 0.0,
              "history": [[1.0, 0.1, 50]]}
    assert settle(db, job_id, "succeeded", owner="new", ledger=ledger, charged=0.9)
    assert not settle(db, job_id, "failed", owner="new", ledger=None, charged=0.0)
    assert _state(db, job_id).charged_epsilon == 0.9


def test_concurrent_admission_never_exceeds_the_cap(db: Database) -> None:
    def submit(_: int) -> bool:
        try:
            _job(db, epsilon=1.0)
            return True
        except BudgetExceeded:
            return False

    with ThreadPoolExecutor(10) as pool:
        accepted = sum(pool.map(submit, range(12)))
    assert accepted == 5
