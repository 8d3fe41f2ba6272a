"""Connections (a tenant's databases and object stores) and the datasets read from them.

A connection's URL carries its credentials: it is stored encrypted and never returned; the
resources show it masked (``display``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from api.deps import CurrentTenant, DatabaseDep, SessionDep, SettingsDep, StorageDep
from api.problems import Problem
from api.schemas import DatasetOut, iso
from synthgen.errors import InputError, SchemaError, SynthgenError
from synthgen.io import TableTooLarge
from synthgen.service.connections import (
    ConnectionsOff,
    connection_of,
    create_connection,
    create_source_dataset,
    test_connection,
)
from synthgen.service.db import Connection, DatasetSource
from synthgen.service.storage import UploadTooLarge

router = APIRouter(prefix="/v1/connections", tags=["connections"])
datasets_router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such connection."}}
_OFF: dict[int | str, dict[str, Any]] = {
    503: {"description": "Connections are off: the operator has not set "
                         "SYNTHGEN_CONNECTION_KEY (connections-disabled)."}}


class ConnectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="postgresql://user:password@host:5432/db, "
                     "s3://bucket/prefix/, ...: stored encrypted, never returned. The host "
                     "must be one the operator allows (SYNTHGEN_CONNECTION_ALLOWED_HOSTS) or "
                     "resolve to public addresses.")
    name: str | None = Field(None, max_length=200)


class ConnectionOut(BaseModel):
    id: str
    name: str | None
    kind: Literal["sql", "files"]
    display: str = Field(description="The URL with its password masked.")
    created_at: datetime

    @classmethod
    def of(cls, c: Connection) -> ConnectionOut:
        return cls(id=c.id, name=c.name, kind=c.kind, display=c.display,  # type: ignore[arg-type]
                   created_at=iso(c.created_at))  # type: ignore[arg-type]


class ConnectionTest(BaseModel):
    ok: bool


class SourceDatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection_id: str = Field(max_length=64)
    table: str | None = Field(None, max_length=300, description="schema.table or table.")
    query: str | None = Field(None, max_length=100_000, description="One read-only SELECT "
                              "(run in a read-only transaction).")
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="Public schema "
                                           "JSON merged over the database's column types.")
    budget_epsilon: float | None = Field(None, gt=0, le=1000)
    budget_delta: float | None = Field(None, gt=0, le=1e-3)
    budget_policy: Literal["shared", "fresh"] = Field(
        "shared", description="shared (default): every snapshot's spend counts against one "
        "cap (a refreshed table holds mostly the same people); fresh only where the operator "
        "asserts each snapshot holds other people.")


def _problem(exc: SynthgenError) -> Problem:
    if isinstance(exc, ConnectionsOff):
        return Problem(503, exc.code, str(exc))
    if isinstance(exc, TableTooLarge):
        return Problem(413, exc.code, str(exc))
    if exc.code == "not-found":
        return Problem(422, exc.code, str(exc))
    return Problem(422, exc.code, str(exc))


@router.post("", status_code=201, response_model=ConnectionOut, responses={
    **_OFF, 422: {"description": "A host outside the allowlist, a local file or an unknown "
                  "scheme (connection-refused)."}})
def create(tenant: CurrentTenant, db: DatabaseDep, settings: SettingsDep,
           body: ConnectionCreate, response: Response) -> ConnectionOut:
    """Store a connection (its URL encrypted). The host is checked against the operator's
    allowlist; nothing is connected to (POST .../test does)."""
    try:
        row = create_connection(db, settings, tenant, body.url, body.name)
    except SynthgenError as exc:
        raise _problem(exc) from None
    response.headers["Location"] = f"/v1/connections/{row.id}"
    return ConnectionOut.of(row)


@router.get("", response_model=list[ConnectionOut])
def list_connections(tenant: CurrentTenant, session: SessionDep) -> list[ConnectionOut]:
    rows = session.scalars(select(Connection).where(Connection.tenant_id == tenant)
                           .order_by(Connection.seq)).all()
    return [ConnectionOut.of(c) for c in rows]


@router.get("/{connection_id}", response_model=ConnectionOut, responses=_NOT_FOUND)
def get(tenant: CurrentTenant, session: SessionDep, connection_id: str) -> ConnectionOut:
    row = connection_of(session, tenant, connection_id)
    if row is None:
        raise Problem(404, "not-found", f"there is no connection {connection_id!r}")
    return ConnectionOut.of(row)


@router.post("/{connection_id}/test", response_model=ConnectionTest, responses={
    **_NOT_FOUND, **_OFF, 422: {"description": "The connection does not answer (the reason, "
                                "without its secrets)."}})
def test(tenant: CurrentTenant, session: SessionDep, settings: SettingsDep,
         connection_id: str) -> ConnectionTest:
    """Connect (a database: ``SELECT 1``; an object store: list the prefix)."""
    row = connection_of(session, tenant, connection_id)
    if row is None:
        raise Problem(404, "not-found", f"there is no connection {connection_id!r}")
    try:
        test_connection(row, settings)
    except ConnectionsOff as exc:
        raise Problem(503, exc.code, str(exc)) from None
    except SynthgenError as exc:
        raise Problem(422, exc.code, str(exc)) from None
    return ConnectionTest(ok=True)


@router.delete("/{connection_id}", status_code=204, response_class=Response, responses={
    **_NOT_FOUND, 409: {"description": "Datasets read from it (connection-in-use)."}})
def delete(tenant: CurrentTenant, db: DatabaseDep, connection_id: str) -> Response:
    with db.write() as s:
        row = connection_of(s, tenant, connection_id)
        if row is None:
            raise Problem(404, "not-found", f"there is no connection {connection_id!r}")
        used = s.scalar(select(func.count()).select_from(DatasetSource).where(
            DatasetSource.connection_id == connection_id))
        if used:
            raise Problem(409, "connection-in-use", f"{used} dataset(s) are read from this "
                          "connection; their budget belongs to the source, so they keep it")
        s.delete(row)
    return Response(status_code=204)


@datasets_router.post("/from-connection", status_code=201, response_model=DatasetOut,
                      responses={200: {"description": "The dataset of this source exists: "
                                       "it is returned (one budget per source)."},
                                 **_OFF, 413: {"description": "The snapshot is over the upload "
                                               "limits (too-large)."}})
def create_from_connection(tenant: CurrentTenant, db: DatabaseDep, storage: StorageDep,
                           settings: SettingsDep, body: SourceDatasetCreate,
                           response: Response) -> DatasetOut:
    """A dataset read from a connection's table or query. A first snapshot is read now (to
    describe it, within the upload limits); each job reads a new one when it starts, a new
    version of this dataset when the content changed. The budget cap belongs to the source:
    the same table or query asked again gives this dataset back."""
    if (body.table is None) == (body.query is None):
        raise Problem(422, "invalid-argument", "give a table or a query")
    try:
        dataset, created = create_source_dataset(
            db, storage, settings, tenant, body.connection_id, table=body.table,
            query=body.query, user_schema=body.schema_, budget_epsilon=body.budget_epsilon,
            budget_delta=body.budget_delta, budget_policy=body.budget_policy)
    except LookupError:
        raise Problem(422, "not-found", f"there is no connection {body.connection_id!r}"
                      ) from None
    except UploadTooLarge as exc:
        raise Problem(413, exc.code, str(exc)) from None
    except (InputError, SchemaError, SynthgenError) as exc:
        raise _problem(exc) from None
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return DatasetOut.of(dataset)


def check_destinations(session: Any, tenant: str, bodies: list[Any]) -> None:
    """422 for a job body whose destination names no connection of the tenant, or gives a
    table to an object store (a path to a database)."""
    for body in bodies:
        destination = getattr(body, "destination", None)
        if destination is None:
            continue
        row = connection_of(session, tenant, destination.connection_id)
        if row is None:
            raise Problem(422, "not-found",
                          f"there is no connection {destination.connection_id!r}")
        if row.kind == "sql" and not destination.table:
            raise Problem(422, "invalid-destination", "a database destination needs a table")
        if row.kind == "files" and not destination.path:
            raise Problem(422, "invalid-destination",
                          "an object-store destination needs a path under the connection")
