"""Batches: many jobs in one request (budget all or nothing), their status, one zip of outputs."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import (
    CurrentTenant,
    DatabaseDep,
    DispatcherDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    owned,
)
from api.idempotency import IdempotencyKey, once, request_hash
from api.limits import check_job_limits
from api.paging import Cursor, Limit, newest_first
from api.problems import ADMISSION_RESPONSES, Problem, admission_problem
from api.routes.connections import check_destinations
from api.sampling import check_sampling
from api.schemas import JobCreate, JobOut, iso
from synthgen.service.batches import batch_status, create_batch, job_fields
from synthgen.service.budget import BudgetExceeded, DatasetNotFound, DatasetPurged
from synthgen.service.db import Batch, Job
from synthgen.service.jobs import output_key
from synthgen.service.storage import Storage

router = APIRouter(prefix="/v1/batches", tags=["batches"])

BatchStatus = Literal["queued", "running", "succeeded", "partially_failed", "failed"]


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobCreate] = Field(min_length=1, max_length=100, description="The jobs: several "
                                  "datasets, or one dataset at several epsilons.")


class BatchCounts(BaseModel):
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


class BatchLinks(BaseModel):
    self: str
    download: str


class BatchOut(BaseModel):
    id: str
    status: BatchStatus
    counts: BatchCounts
    schedule_id: str | None
    created_at: datetime
    finished_at: datetime | None
    jobs: list[JobOut]
    links: BatchLinks

    @classmethod
    def of(cls, batch: Batch, jobs: Sequence[Job]) -> BatchOut:
        states = [j.state for j in jobs]
        counts = BatchCounts(total=batch.total, **{s: states.count(s) for s in (
            "queued", "running", "succeeded", "failed", "cancelled")})
        base = f"/v1/batches/{batch.id}"
        return cls(id=batch.id, status=batch_status(batch, jobs),  # type: ignore[arg-type]
                   counts=counts, schedule_id=batch.schedule_id,
                   created_at=iso(batch.created_at),  # type: ignore[arg-type]
                   finished_at=iso(batch.finished_at), jobs=[JobOut.of(j) for j in jobs],
                   links=BatchLinks(self=base, download=f"{base}/download"))


def _batch_of(session: Session, tenant: str, batch_id: str) -> tuple[Batch, list[Job]]:
    batch = owned(session, Batch, tenant, batch_id, "batch")
    jobs = session.scalars(select(Job).where(Job.batch_id == batch.id).order_by(Job.seq)).all()
    return batch, list(jobs)


@router.post("", status_code=202, response_model=BatchOut, responses={
    **ADMISSION_RESPONSES,
    409: {"description": "A dataset's privacy budget would be exceeded: no job of the batch "
                         "is accepted (budget-exceeded)."}})
def submit_batch(tenant: CurrentTenant, db: DatabaseDep, settings: SettingsDep,
                 dispatcher: DispatcherDep, body: BatchCreate, response: Response,
                 idempotency_key: IdempotencyKey = None) -> BatchOut:
    """Submit several jobs at once. Their budget is reserved in one transaction: if one child
    would exceed its dataset's cap, none is accepted (409 naming the dataset). With an
    ``Idempotency-Key``, a retry returns the first batch instead of creating (and charging)
    another."""
    check_job_limits(settings, body.jobs)
    with db.read() as s:
        check_sampling(s, tenant, body.jobs)
        check_destinations(s, tenant, body.jobs)
    specs = [job_fields(j.model_dump(), settings.max_attempts) for j in body.jobs]
    digest = request_hash(body)

    def create() -> Batch:
        try:
            with db.write() as s:
                return create_batch(s, tenant, specs, idempotency_key=idempotency_key,
                                    request_hash=digest)[0]
        except (BudgetExceeded, DatasetPurged, DatasetNotFound) as exc:
            raise admission_problem(exc) from exc

    batch, created = once(db, Batch, tenant, idempotency_key, digest, create, response)
    with db.read() as s:
        batch, jobs = _batch_of(s, tenant, batch.id)
    if created:
        for job in jobs:
            dispatcher.submit(job.id)
    response.headers["Location"] = f"/v1/batches/{batch.id}"
    response.headers["Retry-After"] = "5"
    return BatchOut.of(batch, jobs)


class BatchPage(BaseModel):
    items: list[BatchOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at "
                                    "the end.")


@router.get("", response_model=BatchPage)
async def list_batches(
    tenant: CurrentTenant,
    session: SessionDep,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> BatchPage:
    """The tenant's batches, newest first, ``limit`` at a time (each with its children)."""
    query = select(Batch).where(Batch.tenant_id == tenant)
    batches, next_cursor = newest_first(session, query, Batch, tenant, cursor, limit)
    children: dict[str, list[Job]] = {b.id: [] for b in batches}
    for job in session.scalars(select(Job).where(Job.batch_id.in_(list(children)))
                               .order_by(Job.seq)):
        children[str(job.batch_id)].append(job)
    return BatchPage(items=[BatchOut.of(b, children[b.id]) for b in batches],
                     next_cursor=next_cursor)


@router.get("/{batch_id}", response_model=BatchOut)
async def get_batch(tenant: CurrentTenant, session: SessionDep, batch_id: str,
                    response: Response) -> BatchOut:
    """The batch's status (``queued``, ``running``, then ``succeeded``, ``partially_failed``
    or ``failed``), counts and children."""
    batch, jobs = _batch_of(session, tenant, batch_id)
    if batch.finished_at is None:
        response.headers["Retry-After"] = "5"
    return BatchOut.of(batch, jobs)


class _Sink:
    """An unseekable file for :mod:`zipfile` that hands over what was written so far."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def _zip_stream(storage: Storage, manifest: dict[str, Any],
                files: list[tuple[str, str]]) -> Iterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, default=str))
        for name, key in files:
            with storage.open(key, "rb") as src, archive.open(name, "w", force_zip64=True) as dst:
                while block := src.read(256 * 1024):
                    dst.write(block)
                    yield sink.take()
    yield sink.take()


@router.get("/{batch_id}/download", response_class=StreamingResponse, responses={
    200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
          "description": "A zip: manifest.json, and <job id>/synthetic.csv and "
          "<job id>/report.json of every child that succeeded (and <job id>/evaluation.json "
          "with include_evaluation=true)."},
    409: {"description": "The batch is still running (output-not-ready)."}})
def download_batch(tenant: CurrentTenant, session: SessionDep, storage: StorageDep,
                   batch_id: str, include_evaluation: bool = False) -> StreamingResponse:
    """Stream one zip of the synthetic CSVs and public privacy reports of a finished batch.
    The owner-only evaluations (computed on the real rows) are left out unless
    ``include_evaluation=true``: a zip is made to be handed on."""
    batch, jobs = _batch_of(session, tenant, batch_id)
    if batch.finished_at is None:
        raise Problem(409, "output-not-ready", f"batch {batch_id} is still running; its zip "
                      "exists once every child has ended")
    files, entries = [], []
    for job in jobs:
        names = []
        if job.state == "succeeded":
            wanted = ["synthetic.csv", "report.json"]
            if include_evaluation and storage.exists(output_key(job, "evaluation.json")):
                wanted.append("evaluation.json")
            for name in wanted:
                files.append((f"{job.id}/{name}", output_key(job, name)))
                names.append(f"{job.id}/{name}")
        entries.append({"job_id": job.id, "dataset_id": job.dataset_id,
                        "dataset_version": job.dataset_version, "status": job.state,
                        "epsilon": job.epsilon, "epsilon_charged": job.charged_epsilon,
                        "error_code": job.error_code, "files": names})
    manifest = {"batch_id": batch.id, "status": batch.state, "jobs": entries}
    return StreamingResponse(_zip_stream(storage, manifest, files), media_type="application/zip",
                             headers={"Content-Disposition":
                                      f'attachment; filename="{batch.id}.zip"'})
