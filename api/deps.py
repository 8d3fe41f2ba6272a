"""Typed dependencies: the service's parts (kept on ``app.state``) and the caller's tenant."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.problems import Problem
from synthgen.service.db import Database, Dataset, Job
from synthgen.service.dispatch import JobDispatcher
from synthgen.service.keys import tenant_for_key
from synthgen.service.settings import Settings
from synthgen.service.storage import Storage


def _from_state(name: str) -> Callable[[Request], Any]:
    def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = f"get_{name}"
    return get


SettingsDep = Annotated[Settings, Depends(_from_state("settings"))]
DatabaseDep = Annotated[Database, Depends(_from_state("db"))]
StorageDep = Annotated[Storage, Depends(_from_state("storage"))]
DispatcherDep = Annotated[JobDispatcher, Depends(_from_state("dispatcher"))]


def get_session(db: DatabaseDep) -> Iterator[Session]:
    with db.read() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="An API key from `synthgen keys create`.")


def get_current_tenant(
    db: DatabaseDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'",
                      headers=challenge)
    tenant = tenant_for_key(db, credentials.credentials)
    if tenant is None:
        raise Problem(401, "unauthorized", "this API key is unknown or revoked",
                      headers=challenge)
    return tenant


CurrentTenant = Annotated[str, Depends(get_current_tenant)]


def job_of(session: Session, tenant: str, job_id: str) -> Job:
    """The tenant's job, or a 404 that does not say whether another tenant has one."""
    job = session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant))
    if job is None:
        raise Problem(404, "not-found", f"there is no job {job_id!r}")
    return job


def dataset_of(session: Session, tenant: str, dataset_id: str) -> Dataset:
    dataset = session.scalar(select(Dataset).where(Dataset.id == dataset_id,
                                                   Dataset.tenant_id == tenant))
    if dataset is None:
        raise Problem(404, "not-found", f"there is no dataset {dataset_id!r}")
    return dataset
