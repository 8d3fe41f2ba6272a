"""Datasets: upload and new versions (write-only: no route returns the raw bytes), metadata,
budget."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Response, UploadFile
from sqlalchemy.exc import SQLAlchemyError

from api.deps import CurrentTenant, DatabaseDep, SessionDep, SettingsDep, StorageDep, dataset_of
from api.problems import Problem
from api.schemas import BudgetOut, DatasetOut
from synthgen.errors import InputError, SchemaError
from synthgen.io import CsvOptions, TableTooLarge
from synthgen.service.budget import budget_view, content_holder, locked_dataset
from synthgen.service.db import Dataset, new_id
from synthgen.service.settings import Settings
from synthgen.service.storage import Storage, UploadTooLarge
from synthgen.service.tables import inspect_upload, stored_options
from synthgen.service.versions import add_version, version_key

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

CHUNK = 1024 * 1024
SCHEMA_LIMIT = 512 * 1024  # a schema file part (the form's whole overhead is capped at 1 MiB)
# The schema as a form field (-F 'schema=<schema.json' or -F schema='{...}') or as a file part
# (-F schema=@schema.json, what curl users type first): both are accepted.
SchemaPart = UploadFile | str | None
Delimiter = Annotated[str | None, Form(
    max_length=20, description="The CSV's delimiter: comma, semicolon, tab, pipe or one "
    "character (default: detected from the header line).")]
Encoding = Annotated[str | None, Form(
    max_length=40, description="The CSV's encoding, e.g. utf-8, cp1252, latin-1 (default: "
    "UTF-8, with or without a byte-order mark; a file that is not UTF-8 is read as "
    "Windows-1252).")]
Decimal = Annotated[str | None, Form(
    max_length=1, description="The CSV's decimal mark, . or , (default: numbers are read with "
    "a point; 1.234,50 needs ',', and the other mark then separates thousands).")]


def _csv_options(delimiter: str | None, encoding: str | None, decimal: str | None,
                 default: CsvOptions | None = None) -> CsvOptions:
    """The form's CSV options (422 for a bad one); each one not given falls back to
    ``default``'s (a new version is read as the dataset's was told to be)."""
    base = default.given if default else {}
    try:
        return CsvOptions.of(delimiter or base.get("delimiter"),
                             encoding or base.get("encoding"), decimal or base.get("decimal"))
    except InputError as exc:
        raise Problem(422, exc.code, str(exc)) from exc


def _schema_text(part: SchemaPart) -> str | None:
    if part is None or isinstance(part, str):
        return part
    raw = part.file.read(SCHEMA_LIMIT + 1)
    if len(raw) > SCHEMA_LIMIT:
        raise Problem(413, "too-large", f"the schema file is over {SCHEMA_LIMIT:,} bytes")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Problem(422, "invalid-schema", "the schema file is not UTF-8 JSON") from exc


def _store_upload(storage: Storage, settings: Settings, key: str, file: UploadFile,
                  schema: SchemaPart, options: CsvOptions) -> dict[str, Any]:
    """Stream an upload to ``key`` (size-capped, hashed), parse and check it; a 4xx leaves
    nothing stored. Returns the upload's fields for the dataset (or version) row."""
    name = (file.filename or "upload")[-200:]
    try:
        size, digest = storage.write_stream(key, iter(lambda: file.file.read(CHUNK), b""),
                                            settings.max_upload_bytes)
    except UploadTooLarge as exc:
        raise Problem(413, exc.code, str(exc)) from exc
    try:
        file.file.seek(0)
        facts = inspect_upload(file.file.read(), name, _schema_text(schema),
                               settings.read_limits, options)
    except (InputError, SchemaError) as exc:
        storage.delete(key)
        if isinstance(exc, TableTooLarge):
            raise Problem(413, exc.code, str(exc)) from exc
        if exc.code == "unsupported-format":
            raise Problem(415, exc.code, str(exc)) from exc
        raise Problem(422, exc.code, str(exc)) from exc
    except BaseException:
        storage.delete(key)
        raise
    return {"name": name, "format": facts["format"], "size_bytes": size, "sha256": digest,
            "rows": facts["rows"], "columns": facts["columns"],
            "public_schema": facts["public_schema"], "storage_key": key,
            "csv_options": facts["csv_options"]}


@router.post("", status_code=201, response_model=DatasetOut)
def create_dataset(
    tenant: CurrentTenant,
    db: DatabaseDep,
    storage: StorageDep,
    settings: SettingsDep,
    response: Response,
    file: Annotated[UploadFile, File(description="The table: CSV (header row) or Parquet.")],
    public_schema: Annotated[SchemaPart, Form(
        alias="schema", description="Public schema JSON (synthgen format or SDV metadata), as "
        "a text field or a file part: declared facts cost no budget.")] = None,
    budget_epsilon: Annotated[float | None, Form(gt=0, le=1000, description="Epsilon cap of "
                                                 "this dataset (default: the server's). An "
                                                 "upload of bytes this tenant uploaded before "
                                                 "shares the earlier dataset's cap and spend "
                                                 "instead.")] = None,
    budget_delta: Annotated[float | None, Form(gt=0, le=1e-3, description="Cap of the "
                                               "cumulative delta of its jobs (default: the "
                                               "server's).")] = None,
    budget_policy: Annotated[Literal["shared", "fresh"], Form(
        description="What a new version (PUT .../versions) does to the budget: 'shared' keeps "
        "one cap and spend across versions (they hold the same people); 'fresh' gives each "
        "version its own, only correct when versions hold disjoint people.")] = "shared",
    delimiter: Delimiter = None,
    encoding: Encoding = None,
    decimal: Decimal = None,
) -> DatasetOut:
    """Upload a table. It is stored (size-capped, hashed), parsed and checked; a table that
    cannot be used is refused with a 4xx and leaves nothing behind. The same bytes uploaded
    again by the tenant make a new dataset that shares the first one's budget (cap and spend):
    a privacy budget follows the table, not the upload."""
    dataset_id = new_id("ds")
    key = Storage.dataset_key(tenant, dataset_id)
    options = _csv_options(delimiter, encoding, decimal)
    upload = _store_upload(storage, settings, key, file, public_schema, options)
    dataset = Dataset(id=dataset_id, tenant_id=tenant, budget_policy=budget_policy, version=1,
                      budget_epsilon=budget_epsilon or settings.default_budget_epsilon,
                      budget_delta=budget_delta or settings.default_budget_delta, **upload)
    try:
        with db.write() as s:
            # In the write transaction (serialised), so two uploads of one table cannot both
            # become holders.
            holder = content_holder(s, tenant, upload["sha256"])
            if holder is not None:
                dataset.budget_group = holder.id
                dataset.budget_epsilon, dataset.budget_delta = (holder.budget_epsilon,
                                                                holder.budget_delta)
            s.add(dataset)
    except (SQLAlchemyError, OSError):
        storage.delete(key)
        raise
    response.headers["Location"] = f"/v1/datasets/{dataset_id}"
    return DatasetOut.of(dataset)


@router.put("/{dataset_id}/versions", response_model=DatasetOut, responses={
    409: {"description": "Another version was uploaded at the same time (version-conflict)."}})
def add_dataset_version(
    tenant: CurrentTenant,
    db: DatabaseDep,
    storage: StorageDep,
    settings: SettingsDep,
    dataset_id: str,
    file: Annotated[UploadFile, File(description="The new version of the table.")],
    public_schema: Annotated[SchemaPart, Form(
        alias="schema", description="Public schema JSON for this version, as a text field or "
        "a file part (default: the dataset's).")] = None,
    delimiter: Delimiter = None,
    encoding: Encoding = None,
    decimal: Decimal = None,
) -> DatasetOut:
    """Upload a new version of a dataset's table. Jobs accepted from now on (schedules
    included) read it; jobs accepted before keep reading theirs. The budget follows the
    dataset's ``budget_policy``."""
    with db.read() as s:
        current = dataset_of(s, tenant, dataset_id)
    version = current.version + 1
    if public_schema is None and current.public_schema is not None:
        public_schema = json.dumps(current.public_schema)
    # the CSV options given with the dataset's upload hold for the new version unless the
    # form gives others (a new version of the same table is written the same way)
    given = current.csv_options if current.format == "csv" else None
    options = _csv_options(delimiter, encoding, decimal,
                           stored_options("csv", given) if given else None)
    key = version_key(tenant, dataset_id, version)
    upload = _store_upload(storage, settings, key, file, public_schema, options)
    try:
        with db.write() as s:
            dataset = locked_dataset(s, tenant, dataset_id)
            if dataset is None or dataset.version + 1 != version:
                raise Problem(409, "version-conflict", "another version of this dataset was "
                              "uploaded at the same time; upload again")
            if dataset.budget_policy == "fresh" and content_holder(s, tenant, upload["sha256"]):
                raise Problem(409, "same-content", "these bytes were uploaded before; a version "
                              "with a fresh budget must hold other people than every earlier "
                              "upload, so the same table cannot start a new budget")
            add_version(s, dataset, upload)
    except BaseException:
        storage.delete(key)
        raise
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
