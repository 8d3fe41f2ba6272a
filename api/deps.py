"""Typed dependencies: the service's parts (kept on ``app.state``) and the caller's tenant."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.problems import Problem
from synthgen.service.db import Database, Dataset, Job
from synthgen.service.dispatch import JobDispatcher
from synthgen.service.keys import hash_key, tenant_for_key
from synthgen.service.settings import Settings
from synthgen.service.storage import Storage

# The dependencies are ``async`` on purpose: they do not block (state lookups, one indexed read
# of a WAL database, which never waits for writers), and a sync dependency would cost a
# thread-pool hop on every request.


def _from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = f"get_{name}"
    return get


SettingsDep = Annotated[Settings, Depends(_from_state("settings"))]
DatabaseDep = Annotated[Database, Depends(_from_state("db"))]
StorageDep = Annotated[Storage, Depends(_from_state("storage"))]
DispatcherDep = Annotated[JobDispatcher, Depends(_from_state("dispatcher"))]


async def get_session(db: DatabaseDep) -> AsyncIterator[Session]:
    with db.read() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

T = TypeVar("T")

_KEY_CACHE_S = 10.0  # how long a known key is trusted without a lookup (revocation delay)
_known_keys: dict[str, tuple[str, float]] = {}


def _tenant_of(db: Database, key: str) -> str | None:
    digest = hash_key(key)
    hit = _known_keys.get(digest)
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    tenant = tenant_for_key(db, key)
    if tenant is not None:
        if len(_known_keys) > 10_000:
            _known_keys.clear()
        _known_keys[digest] = (tenant, time.monotonic() + _KEY_CACHE_S)
    return tenant


_bearer = HTTPBearer(auto_error=False, description="An API key from `synthgen keys create`.")


async def get_current_tenant(
    db: DatabaseDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'",
                      headers=challenge)
    tenant = _tenant_of(db, credentials.credentials)
    if tenant is None:
        raise Problem(401, "unauthorized", "this API key is unknown or revoked",
                      headers=challenge)
    return tenant


CurrentTenant = Annotated[str, Depends(get_current_tenant)]


def owned(session: Session, model: type[T], tenant: str, object_id: str, noun: str) -> T:
    """The tenant's object, or a 404 that does not say whether another tenant has one."""
    table: Any = model  # any mapped class with ``id`` and ``tenant_id``
    found = session.scalar(select(table).where(table.id == object_id,
                                               table.tenant_id == tenant))
    if found is None:
        raise Problem(404, "not-found", f"there is no {noun} {object_id!r}")
    return cast(T, found)


def job_of(session: Session, tenant: str, job_id: str) -> Job:
    return owned(session, Job, tenant, job_id, "job")


def dataset_of(session: Session, tenant: str, dataset_id: str) -> Dataset:
    return owned(session, Dataset, tenant, dataset_id, "dataset")
