"""Datasets: upload (write-only: no route returns the raw bytes), metadata, budget."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from sqlalchemy.exc import SQLAlchemyError

from api.deps import CurrentTenant, DatabaseDep, SessionDep, SettingsDep, StorageDep, dataset_of
from api.problems import Problem
from api.schemas import BudgetOut, DatasetOut
from synthgen.errors import InputError, SchemaError
from synthgen.service.budget import budget_view
from synthgen.service.db import Dataset, new_id
from synthgen.service.storage import Storage, UploadTooLarge
from synthgen.service.tables import inspect_upload

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

CHUNK = 1024 * 1024


@router.post("", status_code=201, response_model=DatasetOut)
def create_dataset(
    tenant: CurrentTenant,
    db: DatabaseDep,
    storage: StorageDep,
    settings: SettingsDep,
    response: Response,
    file: Annotated[UploadFile, File(description="The table: CSV (UTF-8, header row) or "
                                     "Parquet.")],
    public_schema: Annotated[str | None, Form(
        alias="schema", description="Public schema JSON (synthgen format or SDV metadata): "
        "declared facts cost no budget.")] = None,
    budget_epsilon: Annotated[float | None, Form(gt=0, le=1000, description="Epsilon cap of "
                                                 "this dataset (default: the server's).")] = None,
) -> DatasetOut:
    """Upload a table. It is stored (size-capped, hashed), parsed and checked; a table that
    cannot be used is refused with a 4xx and leaves nothing behind."""
    dataset_id = new_id("ds")
    key = Storage.dataset_key(tenant, dataset_id)
    name = (file.filename or "upload")[-200:]
    try:
        size, digest = storage.write_stream(key, iter(lambda: file.file.read(CHUNK), b""),
                                            settings.max_upload_bytes)
    except UploadTooLarge as exc:
        raise Problem(413, exc.code, str(exc)) from exc
    try:
        file.file.seek(0)
        facts = inspect_upload(file.file.read(), name, public_schema)
        dataset = Dataset(
            id=dataset_id, tenant_id=tenant, name=name, format=facts["format"],
            size_bytes=size, sha256=digest, rows=facts["rows"], columns=facts["columns"],
            public_schema=facts["public_schema"], storage_key=key,
            budget_epsilon=budget_epsilon or settings.default_budget_epsilon)
        with db.write() as s:
            s.add(dataset)
    except (InputError, SchemaError) as exc:
        storage.delete(key)
        raise Problem(422, exc.code, str(exc)) from exc
    except (SQLAlchemyError, OSError):
        storage.delete(key)
        raise
    response.headers["Location"] = f"/v1/datasets/{dataset_id}"
    return DatasetOut.of(dataset)


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(tenant: CurrentTenant, session: SessionDep, dataset_id: str) -> DatasetOut:
    """A dataset's facts (never its rows)."""
    return DatasetOut.of(dataset_of(session, tenant, dataset_id))


@router.get("/{dataset_id}/budget", response_model=BudgetOut)
def get_budget(tenant: CurrentTenant, session: SessionDep, dataset_id: str) -> BudgetOut:
    """The dataset's epsilon cap, what is spent (composed across jobs), what is reserved by
    unfinished jobs, and the jobs that charged it."""
    dataset = dataset_of(session, tenant, dataset_id)
    return BudgetOut.model_validate(budget_view(session, dataset))
