"""Versions of a dataset: a new upload of the same table under the same dataset id.

The dataset row always describes its current version; a superseded upload is kept as a
:class:`DatasetVersion` row for the jobs pinned to it (a job reads the version that was current
when it was accepted, on every attempt). The dataset's ``budget_policy`` says what a new
version does to the budget: ``shared`` keeps one cap and one spend across versions (they hold
the same people); ``fresh`` starts a new spend under the same cap, which is only correct when
the versions hold disjoint people (see docs/service.md).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from synthgen.service.db import UPLOAD_FIELDS, Database, Dataset, DatasetVersion, Job, now
from synthgen.service.storage import Storage


def version_key(tenant_id: str, dataset_id: str, version: int) -> str:
    base = Storage.dataset_key(tenant_id, dataset_id)
    return base if version == 1 else f"{base}-v{version}"


def add_version(session: Session, dataset: Dataset, upload: dict[str, Any]) -> None:
    """Make ``upload`` (the upload fields, stored under ``version_key``) the dataset's current
    version, in the caller's write transaction with the dataset locked."""
    exists = session.scalar(select(func.count()).select_from(DatasetVersion).where(
        DatasetVersion.dataset_id == dataset.id, DatasetVersion.version == dataset.version))
    if not exists:
        session.add(DatasetVersion(
            dataset_id=dataset.id, version=dataset.version, created_at=dataset.created_at,
            purged_at=dataset.purged_at, **{f: getattr(dataset, f) for f in UPLOAD_FIELDS}))
    dataset.version += 1
    for field in UPLOAD_FIELDS:
        setattr(dataset, field, upload[field])
    dataset.purged_at = None
    if dataset.budget_policy == "fresh":
        dataset.spent_epsilon = 0.0
        dataset.spent_delta = 0.0
        dataset.composed_jobs = 0
    session.add(DatasetVersion(dataset_id=dataset.id, version=dataset.version, **upload))


def job_dataset(session: Session, job: Job) -> Dataset:
    """The dataset as the job must read it: the version it was accepted on (a detached copy
    when that version is no longer the current one)."""
    dataset = session.scalars(select(Dataset).where(Dataset.id == job.dataset_id)).one()
    if job.dataset_version == dataset.version:
        return dataset
    old = session.scalars(select(DatasetVersion).where(
        DatasetVersion.dataset_id == dataset.id,
        DatasetVersion.version == job.dataset_version)).one()
    copy = Dataset(id=dataset.id, tenant_id=dataset.tenant_id, version=old.version,
                   budget_policy=dataset.budget_policy, budget_epsilon=dataset.budget_epsilon,
                   purged_at=old.purged_at, **{f: getattr(old, f) for f in UPLOAD_FIELDS})
    return copy


def purge_finished_versions(db: Database, storage: Storage, dataset_id: str) -> list[int]:
    """Delete the superseded uploads whose jobs have all ended (retention off). Returns the
    versions purged."""
    purged = []
    with db.read() as s:
        current = s.scalar(select(Dataset.version).where(Dataset.id == dataset_id))
        old = s.scalars(select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, DatasetVersion.version != current,
            DatasetVersion.purged_at.is_(None))).all()
    for version in old:
        with db.write() as s:
            open_jobs = s.scalar(select(func.count()).select_from(Job).where(
                Job.dataset_id == dataset_id, Job.dataset_version == version.version,
                Job.settled.is_(False)))
            if open_jobs:
                continue
            row = s.get(DatasetVersion, version.id)
            if row is None or row.purged_at is not None:
                continue
            row.purged_at = now()
        storage.delete(version.storage_key)
        purged.append(version.version)
    return purged
