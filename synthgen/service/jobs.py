"""Job lifecycle in the database: claim, heartbeat, progress, settlement, reconciliation.

Both engines run this code. A job is *claimed* with one conditional UPDATE (lease owner, lease
expiry, attempt + 1); a delivery that finds nothing to claim is a duplicate and exits. Every
later write by a worker is fenced by its lease owner, so a worker that lost its lease cannot
report, settle or charge anything. The reconciler re-queues jobs whose lease expired, and fails
(or cancels) them, charging what they are known to have spent, once the attempt cap is reached.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from synthgen.service.batches import job_finished
from synthgen.service.budget import (
    checkpoint_ledger,
    compose_dataset,
    ledger_epsilon,
    sgd_steps,
)
from synthgen.service.db import Database, Dataset, DatasetVersion, Job, JobAttempt, now
from synthgen.service.storage import Storage
from synthgen.service.versions import purge_finished_versions

log = logging.getLogger("synthgen.service")

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Claim:
    job_id: str
    owner: str
    attempt: int


def output_key(job: Job, name: str) -> str:
    """The stored output ``name`` (synthetic.csv, report.json, ...) the job serves: that of
    the attempt it settled with (jobs settled before per-attempt outputs: the job's folder)."""
    if job.output_attempt is None:
        return Storage.job_key(job.tenant_id, job.id, name)
    return Storage.attempt_key(job.tenant_id, job.id, job.output_attempt, name)


def lease_is_ours(db: Database, claim: Claim) -> bool:
    """Whether the claim still holds an unexpired lease (checked before each output write)."""
    with db.read() as s:
        return bool(s.scalar(select(func.count()).select_from(Job).where(
            Job.id == claim.job_id, Job.lease_owner == claim.owner, Job.state == "running",
            Job.lease_until >= now())))


def claim_job(db: Database, job_id: str, owner: str, lease_s: float) -> Claim | None:
    t = now()
    with db.write() as s:
        done = s.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.cancel_requested.is_(False),
                Job.attempt < Job.max_attempts,
                or_(Job.state == "queued", and_(Job.state == "running", Job.lease_until < t)),
            )
            .values(state="running", attempt=Job.attempt + 1, lease_owner=owner,
                    lease_until=t + lease_s, started_at=func.coalesce(Job.started_at, t)))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            return None
        attempt = int(s.scalar(select(Job.attempt).where(Job.id == job_id)) or 0)
        s.add(JobAttempt(job_id=job_id, attempt=attempt, owner=owner, started_at=t,
                         heartbeat_at=t))
    return Claim(job_id, owner, attempt)


def heartbeat(db: Database, claim: Claim, lease_s: float) -> tuple[bool, bool]:
    """Extend the lease. Returns (still ours, cancel requested)."""
    t = now()
    with db.write() as s:
        done = s.execute(update(Job).where(Job.id == claim.job_id, Job.lease_owner == claim.owner,
                                           Job.state == "running")
                         .values(lease_until=t + lease_s))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            return False, False
        s.execute(update(JobAttempt).where(JobAttempt.job_id == claim.job_id,
                                           JobAttempt.owner == claim.owner)
                  .values(heartbeat_at=t))
        cancel = bool(s.scalar(select(Job.cancel_requested).where(Job.id == claim.job_id)))
    return True, cancel


def record_progress(db: Database, claim: Claim, **values: Any) -> bool:
    with db.write() as s:
        done = s.execute(update(Job).where(Job.id == claim.job_id, Job.lease_owner == claim.owner,
                                           Job.state == "running")
                         .values(**{f"progress_{k}" if k not in ("ledger", "warnings") else k: v
                                    for k, v in values.items()}))
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def settle(
    db: Database,
    job_id: str,
    state: str,
    *,
    owner: str | None,
    ledger: dict[str, Any] | None,
    charged: float,
    error: tuple[str, str] | None = None,
    output_rows: int | None = None,
    expired_before: float | None = None,
    output_attempt: int | None = None,
    warnings: list[dict[str, Any]] | None = None,
) -> bool:
    """Move a job to a terminal state and turn its reservation into a charge, exactly once.

    ``owner`` fences the write to the worker holding the lease (None: a queued job, no lease);
    ``expired_before`` makes the reconciler's settlement lose to a worker that just heartbeated.
    ``output_attempt`` points the job at the outputs its settling attempt wrote, in the same
    conditional UPDATE: the job serves that attempt's files and no other's.
    """
    assert state in TERMINAL
    t = now()
    cond = [Job.id == job_id, Job.settled.is_(False)]
    if owner is None:
        cond += [Job.state == "queued"]
    else:
        cond += [Job.state == "running", Job.lease_owner == owner]
    if expired_before is not None:
        cond += [Job.lease_until < expired_before]
    with db.write() as s:
        done = s.execute(update(Job).where(*cond).values(
            state=state, settled=True, charged_epsilon=charged, ledger=ledger, finished_at=t,
            lease_owner=None, lease_until=None,
            error_code=error[0] if error else None, error_message=error[1] if error else None,
            output_rows=output_rows, output_attempt=output_attempt,
            **({"warnings": warnings} if warnings is not None else {})))
        ok = done.rowcount == 1  # type: ignore[attr-defined]
        if ok:
            job_finished(s, job_id, state)
        if ok and owner is not None:
            s.execute(update(JobAttempt).where(JobAttempt.job_id == job_id,
                                               JobAttempt.owner == owner)
                      .values(ended_at=t, outcome=state))
        dataset_id = s.scalar(select(Job.dataset_id).where(Job.id == job_id))
    if ok and charged > 0 and dataset_id:
        compose_dataset(db, dataset_id)
    return ok


def apply_retention(db: Database, storage: Storage, dataset_id: str, retain: bool) -> bool:
    """Delete the raw upload once no unfinished job needs it (when uploads are not retained).

    Marking the dataset purged and checking for unfinished jobs happen in one write transaction,
    the same kind that admits jobs, so no job is accepted against a deleted upload.
    """
    if retain:
        return False
    purge_finished_versions(db, storage, dataset_id)
    with db.write() as s:
        dataset = s.scalar(select(Dataset).where(Dataset.id == dataset_id).with_for_update())
        if dataset is None or dataset.purged_at is not None:
            return False
        # Jobs of the current version: a new version waits for its own first job to end.
        ended, open_jobs = s.execute(select(
            func.count().filter(Job.settled.is_(True)),
            func.count().filter(Job.settled.is_(False))).where(
            Job.dataset_id == dataset_id, Job.dataset_version == dataset.version)).one()
        if open_jobs or not ended:
            return False
        dataset.purged_at = now()
        s.execute(update(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id,
                                               DatasetVersion.version == dataset.version)
                  .values(purged_at=dataset.purged_at))
        key = dataset.storage_key
    storage.delete(key)
    return True


def checkpoint_key(job: Job) -> str:
    return Storage.job_key(job.tenant_id, job.id, "checkpoint.pt")


def fetch_checkpoint(storage: Storage, job: Job) -> Path | None:
    """A local copy of the job's last stored checkpoint, or None."""
    fd, name = tempfile.mkstemp(suffix=".pt", prefix=f"{job.id}-")
    os.close(fd)
    path = Path(name)
    if storage.get_file(checkpoint_key(job), path):
        return path
    path.unlink(missing_ok=True)
    return None


def seed_rows_key(job: Job) -> str:
    """Where a job's seed rows wait for its worker: the user's input to sampling, kept only
    until the job ends."""
    return Storage.job_key(job.tenant_id, job.id, "seed_rows.json")


def delete_seed_rows(storage: Storage, job: Job) -> None:
    if (job.options or {}).get("seed_rows"):
        storage.delete(seed_rows_key(job))


def known_spend(job: Job, storage: Storage) -> tuple[dict[str, Any] | None, float]:
    """What a job that lost its worker is charged: the longest ledger it left (progress in the
    database or its last checkpoint). Without either, a claimed job is charged its whole
    reservation, since nothing shows what it read."""
    best = job.ledger if job.ledger and job.ledger.get("history") else None
    local = fetch_checkpoint(storage, job)
    if local is not None:
        saved = checkpoint_ledger(local)
        local.unlink(missing_ok=True)
        if saved is not None and sgd_steps(saved) > sgd_steps(best):
            best = saved
    if best is not None:
        return best, min(ledger_epsilon(best), job.epsilon)
    return None, (job.epsilon if job.attempt > 0 else 0.0)


def reconcile(
    db: Database,
    storage: Storage,
    *,
    dispatch: Callable[[str], None] | None = None,
    redispatch_after_s: float | None = None,
    retain_uploads: bool = True,
) -> list[str]:
    """One pass: re-queue or finish jobs whose lease expired; re-send stale queued jobs.

    Returns the ids re-queued. Safe to run in several processes at once: every change is a
    conditional UPDATE.
    """
    t = now()
    with db.read() as s:
        expired = s.scalars(select(Job).where(Job.state == "running", Job.lease_until < t)).all()
    requeued = []
    for job in expired:
        if job.cancel_requested or job.attempt >= job.max_attempts:
            ledger, charged = known_spend(job, storage)
            if job.cancel_requested:
                state, error = "cancelled", None
            else:
                state, error = "failed", (
                    "worker-lost", f"the job's worker stopped without finishing "
                    f"{job.attempt} time(s) (the attempt cap); it is charged epsilon "
                    f"{charged:.4g} for what it ran")
            if settle(db, job.id, state, owner=job.lease_owner, ledger=ledger, charged=charged,
                      error=error, expired_before=t):
                log.warning("job %s %s after %d attempt(s)", job.id, state, job.attempt)
                apply_retention(db, storage, job.dataset_id, retain_uploads)
                delete_seed_rows(storage, job)
            continue
        with db.write() as s:
            done = s.execute(update(Job).where(
                Job.id == job.id, Job.state == "running", Job.lease_owner == job.lease_owner,
                Job.lease_until < t).values(state="queued", lease_owner=None, lease_until=None))
        if done.rowcount == 1:  # type: ignore[attr-defined]
            log.warning("job %s lost its worker (attempt %d); queued again", job.id, job.attempt)
            requeued.append(job.id)
            if dispatch is not None:
                dispatch(job.id)
    if dispatch is not None and redispatch_after_s is not None:
        with db.read() as s:
            stale = s.scalars(select(Job.id).where(
                Job.state == "queued", or_(Job.dispatched_at.is_(None),
                                           Job.dispatched_at < t - redispatch_after_s))).all()
        for job_id in stale:
            dispatch(job_id)
    return requeued


def expire_lease(db: Database, owner: str) -> None:
    """The embedded supervisor saw the owner's process die: let the reconciler act now."""
    with db.write() as s:
        s.execute(update(Job).where(Job.lease_owner == owner, Job.state == "running")
                  .values(lease_until=now() - 1))
