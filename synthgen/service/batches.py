"""Batches: several jobs accepted together, and what a job's end does to its batch.

A batch is a parent row counting its children (no Celery chord). Its budget reservations are
all or nothing: every child is reserved in one transaction (:func:`create_batch`). When a child
settles - exactly once, fenced by its lease - :func:`job_finished` counts it in the same
transaction, and the child that brings ``remaining`` to 0 sets the batch's terminal state:
``succeeded`` (every child succeeded), ``failed`` (none did) or ``partially_failed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from synthgen.service.budget import reserve_jobs
from synthgen.service.db import Batch, Job, new_id, now
from synthgen.service.webhooks import enqueue_event

_JOB_COLUMNS = ("dataset_id", "epsilon", "delta", "rows")


def job_fields(request: dict[str, Any], max_attempts: int) -> dict[str, Any]:
    """A job request body (``POST /v1/jobs``) as the job row's fields: the columns it names,
    and every other field that is set as the job's options."""
    options = {k: v for k, v in request.items() if k not in _JOB_COLUMNS and v is not None}
    return {**{k: request.get(k) for k in _JOB_COLUMNS}, "options": options,
            "max_attempts": max_attempts}


def create_batch(session: Session, tenant_id: str, specs: Sequence[dict[str, Any]],
                 schedule_id: str | None = None, idempotency_key: str | None = None,
                 request_hash: str | None = None) -> tuple[Batch, list[Job]]:
    """Accept a batch and its children in the caller's write transaction; raises what
    :func:`~synthgen.service.budget.reserve_jobs` raises, and then nothing is added."""
    jobs = reserve_jobs(session, tenant_id, specs)
    batch = Batch(id=new_id("bat"), tenant_id=tenant_id, total=len(jobs), remaining=len(jobs),
                  schedule_id=schedule_id, idempotency_key=idempotency_key,
                  request_hash=request_hash)
    session.add(batch)
    session.flush()  # the batch row before its children reference it
    for job in jobs:
        job.batch_id = batch.id
    return batch, jobs


def terminal_state(batch: Batch) -> str:
    if batch.succeeded == batch.total:
        return "succeeded"
    return "failed" if batch.succeeded == 0 else "partially_failed"


def batch_status(batch: Batch, jobs: Sequence[Job]) -> str:
    """The stored terminal state, else ``queued`` until a child has started, then ``running``."""
    if batch.finished_at is not None:
        return batch.state
    return "queued" if all(j.state == "queued" for j in jobs) else "running"


def job_finished(session: Session, job_id: str, state: str) -> None:
    """In the settling transaction: the job's event, and its batch's count (and end)."""
    job = session.scalars(select(Job).where(Job.id == job_id)).one()
    if state in ("succeeded", "failed"):
        enqueue_event(session, job.tenant_id, f"job.{state}", {
            "job_id": job.id, "status": state, "dataset_id": job.dataset_id,
            "batch_id": job.batch_id, "epsilon_charged": job.charged_epsilon,
            "error_code": job.error_code, "warnings": len(job.warnings or [])})
    if job.batch_id is None:
        return
    counter = getattr(Batch, state)
    session.execute(update(Batch).where(Batch.id == job.batch_id).values(
        {counter: counter + 1, Batch.remaining: Batch.remaining - 1}))
    batch = session.scalars(select(Batch).where(Batch.id == job.batch_id)
                            .execution_options(populate_existing=True)).one()
    if batch.remaining > 0:
        return
    ended = session.execute(update(Batch).where(
        Batch.id == batch.id, Batch.remaining == 0, Batch.finished_at.is_(None),
    ).values(state=terminal_state(batch), finished_at=now()))
    if ended.rowcount == 1:  # type: ignore[attr-defined]
        session.refresh(batch)
        enqueue_event(session, batch.tenant_id, "batch.finished", {
            "batch_id": batch.id, "status": batch.state, "total": batch.total,
            "succeeded": batch.succeeded, "failed": batch.failed,
            "cancelled": batch.cancelled, "schedule_id": batch.schedule_id})
