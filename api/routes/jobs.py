"""Jobs: submit (reserving budget), status, listing, cancel, outputs."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from sqlalchemy import select, update

from api.deps import (
    CurrentTenant,
    DatabaseDep,
    DispatcherDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    job_of,
)
from api.idempotency import IdempotencyKey, once, request_hash
from api.limits import check_job_limits
from api.paging import Cursor, Limit, newest_first
from api.problems import ADMISSION_RESPONSES, Problem, admission_problem
from api.routes.connections import check_destinations
from api.sampling import check_sampling
from api.schemas import JobCreate, JobOut, JobPage
from synthgen.service.budget import BudgetExceeded, DatasetPurged, admit_job, budget_view
from synthgen.service.db import Database, Dataset, Job
from synthgen.service.jobs import delete_seed_rows, known_spend, output_key, seed_rows_key, settle
from synthgen.service.settings import Settings
from synthgen.service.storage import Storage

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# The polling routes are ``async``: one indexed read of a WAL database does not block on writers,
# and skipping the thread pool is most of their cost. Routes that write stay sync (thread pool).

RETRY_AFTER = "5"


def _admit(db: Database, settings: Settings, tenant: str, body: JobCreate,
           key: str | None, request_hash: str) -> Job:
    try:
        job = admit_job(db, tenant, body.dataset_id, epsilon=body.epsilon, delta=body.delta,
                        rows=body.rows, options=body.options(), idempotency_key=key,
                        request_hash=request_hash, max_attempts=settings.max_attempts)
    except (DatasetPurged, BudgetExceeded) as exc:
        raise admission_problem(exc) from exc
    if job is None:
        raise Problem(404, "not-found", f"there is no dataset {body.dataset_id!r}")
    return job


@router.post("", status_code=202, response_model=JobOut, responses=ADMISSION_RESPONSES)
def create_job(
    tenant: CurrentTenant,
    db: DatabaseDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    storage: StorageDep,
    body: JobCreate,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    """Submit a job. Its epsilon is reserved against the dataset's cap in the same transaction
    that accepts it (409 when the cap would be exceeded). With an ``Idempotency-Key``, a retry
    returns the first job instead of creating (and charging) another."""
    check_job_limits(settings, [body])
    with db.read() as s:
        check_sampling(s, tenant, [body], seed_rows_allowed=True)
        check_destinations(s, tenant, [body])
    digest = request_hash(body)
    job, created = once(db, Job, tenant, idempotency_key, digest, lambda: _admit(
        db, settings, tenant, body, idempotency_key, digest), response)
    if created:
        if body.seed_rows is not None:  # before the worker can look for them
            with storage.open(seed_rows_key(job), "w", encoding="utf-8") as fh:
                json.dump(body.seed_rows, fh)
        dispatcher.submit(job.id)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    response.headers["Retry-After"] = RETRY_AFTER
    return JobOut.of(job)


@router.get("", response_model=JobPage)
async def list_jobs(
    tenant: CurrentTenant,
    session: SessionDep,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
) -> JobPage:
    """The tenant's jobs, newest first, ``limit`` at a time."""
    query = select(Job).where(Job.tenant_id == tenant)
    if status is not None:
        query = query.where(Job.state == status)
    jobs, next_cursor = newest_first(session, query, Job, tenant, cursor, limit)
    return JobPage(items=[JobOut.of(j) for j in jobs], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut)
async def get_job(tenant: CurrentTenant, session: SessionDep, job_id: str,
            response: Response) -> JobOut:
    """A job's status, progress (steps, epsilon spent so far), timestamps and error."""
    job = job_of(session, tenant, job_id)
    if job.state in ("queued", "running"):
        response.headers["Retry-After"] = RETRY_AFTER
    return JobOut.of(job)


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut,
             responses={409: {"description": "The job already ended (job-finished)."}})
def cancel_job(tenant: CurrentTenant, db: DatabaseDep, storage: StorageDep,
               job_id: str) -> JobOut:
    """Cancel cooperatively: a queued job ends at once; a running one stops at its next step.
    Budget actually spent (steps run, in this or an earlier attempt) stays charged."""
    with db.read() as s:
        job = job_of(s, tenant, job_id)
    if job.state in ("succeeded", "failed", "cancelled"):
        raise Problem(409, "job-finished", f"job {job_id} already ended ({job.state})")
    ledger, charged = known_spend(job, storage) if job.attempt else (None, 0.0)
    if settle(db, job_id, "cancelled", owner=None, ledger=ledger, charged=charged):
        delete_seed_rows(storage, job)
    else:
        with db.write() as s:  # it was claimed meanwhile: ask the worker to stop
            s.execute(update(Job).where(Job.id == job_id, Job.state == "running")
                      .values(cancel_requested=True))
    with db.read() as s:
        return JobOut.of(job_of(s, tenant, job_id))


def _finished_output(session: SessionDep, tenant: str, job_id: str, allowed: tuple[str, ...],
                     output: str) -> Job:
    job = job_of(session, tenant, job_id)
    if job.state in ("queued", "running"):
        raise Problem(409, "output-not-ready", f"job {job_id} is {job.state}; its {output} "
                      f"exists once it is {' or '.join(allowed)}")
    if job.state not in allowed:  # it ended without this output: never "not yet"
        ended = "was cancelled" if job.state == "cancelled" else job.state
        raise Problem(409, "output-not-ready", f"job {job_id} {ended}, so it has no {output}"
                      + ("; its privacy report says what it spent" if job.state == "cancelled"
                         else ""))
    return job


@router.get("/{job_id}/synthetic.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                             "description": "The synthetic table (formula cells escaped)."},
                        409: {"description": "The job has not succeeded (output-not-ready)."}})
def get_synthetic_csv(tenant: CurrentTenant, session: SessionDep, storage: StorageDep,
                      job_id: str) -> StreamingResponse:
    """Stream the synthetic table of a succeeded job."""
    job = _finished_output(session, tenant, job_id, ("succeeded",), "synthetic table")
    handle = storage.open(output_key(job, "synthetic.csv"), "rb")

    def chunks() -> Iterator[bytes]:
        with handle:
            while block := handle.read(256 * 1024):
                yield block

    return StreamingResponse(chunks(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{job.id}.csv"'})


@router.get("/{job_id}/report", responses={
    200: {"content": {"application/json": {"schema": {"type": "object"}},
                      "text/html": {"schema": {"type": "string"}}},
          "description": "The public privacy-budget report."},
    409: {"description": "The job has not ended, or failed before writing a report "
                         "(output-not-ready)."}})
def get_report(tenant: CurrentTenant, session: SessionDep, storage: StorageDep, job_id: str,
               format: Literal["json", "html"] = "json") -> Response:
    """The public privacy-budget report (ledger, accountant figures, released domains) of a
    succeeded or cancelled job: DP outputs only, safe to share with the synthetic table."""
    job = _finished_output(session, tenant, job_id, ("succeeded", "cancelled"), "report")
    report = _stored_json(storage, job, "report.json", "a report")
    if format == "html":
        dataset = session.scalars(select(Dataset).where(Dataset.id == job.dataset_id)).one()
        return HTMLResponse(_render_html(report, budget_view(session, dataset)))
    return JSONResponse(report)


@router.get("/{job_id}/evaluation", responses={
    200: {"content": {"application/json": {"schema": {"type": "object"}},
                      "text/html": {"schema": {"type": "string"}}},
          "description": "The owner-only evaluation (computed on the real rows)."},
    409: {"description": "The job has not succeeded, or ended without writing an evaluation "
                         "(output-not-ready)."}})
def get_evaluation(tenant: CurrentTenant, session: SessionDep, storage: StorageDep,
                   job_id: str, format: Literal["json", "html"] = "json") -> Response:
    """The owner-only evaluation of a succeeded job: quality, utility and audit figures computed
    on the real rows without differential privacy. For the data owner: never publish it with
    the synthetic table (the batch zip leaves it out unless asked for)."""
    job = _finished_output(session, tenant, job_id, ("succeeded",), "evaluation")
    evaluation = _stored_json(storage, job, "evaluation.json", "an evaluation")
    if format == "html":
        from synthgen.report import render_evaluation_html

        return HTMLResponse(render_evaluation_html(evaluation))
    return JSONResponse(evaluation)


def _stored_json(storage: Storage, job: Job, name: str, what: str) -> dict[str, Any]:
    key = output_key(job, name)
    if not storage.exists(key):
        raise Problem(409, "output-not-ready", f"job {job.id} ended without writing {what}")
    return dict(json.loads(storage.read_bytes(key)))


def _render_html(report: dict[str, Any], budget: dict[str, Any]) -> str:
    try:
        from synthgen.report import render_html

        return str(render_html(report, budget))
    except ImportError:
        # TODO: drop this fallback once synthgen.report.render_html (and the module it
        # imports) has landed everywhere; until then, an escaped page of the JSON.
        body = html.escape(json.dumps(report, indent=2, default=str))
        return ("<!doctype html><html><head><meta charset='utf-8'><title>synthgen privacy "
                f"report</title></head><body><h1>Privacy report</h1><pre>{body}</pre>"
                "</body></html>")
