"""Connections: a tenant's databases and object stores, and the datasets read from them.

A connection's URL (with its credentials) is stored encrypted with the server's key
(``SYNTHGEN_CONNECTION_KEY``, Fernet) and is decrypted only to connect; responses, logs and
errors show it masked (:func:`synthgen.sources.mask`). Where a connection may reach is the
operator's: a host in ``SYNTHGEN_CONNECTION_ALLOWED_HOSTS`` may be loopback or private; any
other host must resolve to public addresses only (the webhooks' SSRF rule), checked when the
connection is made and again before each use. Local files and SQLite are never reachable.

A dataset read from a source (a connection plus a table or a query) takes a snapshot at job
time: a job's first attempt reads the source within the upload limits and, when the content
changed, adds it as a new version of the one dataset of that source, so every snapshot's spend
counts against the source's cap (the ``shared`` budget policy of versions).
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from synthgen.errors import InputError, SynthgenError
from synthgen.service.db import (
    Connection,
    Database,
    Dataset,
    DatasetSource,
    Job,
    JobSnapshot,
    new_id,
    now,
)
from synthgen.service.settings import Settings
from synthgen.service.storage import Storage

# object stores an fsspec URL may name (their endpoint is the operator's configuration)
OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "abfs", "abfss", "az")
_LOCAL_SCHEMES = ("sqlite", "file", "local", "memory", "duckdb")


class ConnectionRefused(SynthgenError):
    """A connection this server may not make (scheme, host, or connections are off)."""

    code = "connection-refused"


class ConnectionsOff(SynthgenError):
    code = "connections-disabled"


# ----------------------------------------------------------------------------- secrets at rest


def _fernet(settings: Settings) -> Any:
    from cryptography.fernet import Fernet

    if not settings.connection_key:
        raise ConnectionsOff("connections are off on this server: the operator must set "
                             "SYNTHGEN_CONNECTION_KEY (a Fernet key) to store their URLs")
    try:
        return Fernet(settings.connection_key.encode())
    except ValueError:
        raise ConnectionsOff("SYNTHGEN_CONNECTION_KEY is not a Fernet key (32 url-safe "
                             "base64-encoded bytes); the operator must fix it") from None


def encrypt(url: str, settings: Settings) -> str:
    return str(_fernet(settings).encrypt(url.encode()).decode())


def decrypt(token: str, settings: Settings) -> str:
    from cryptography.fernet import InvalidToken

    try:
        return str(_fernet(settings).decrypt(token.encode()).decode())
    except InvalidToken:
        raise ConnectionsOff("this connection's URL cannot be decrypted with the server's "
                             "SYNTHGEN_CONNECTION_KEY (was the key changed?); create the "
                             "connection again") from None


# ----------------------------------------------------------------------------- where it may go


def _allowed(settings: Settings) -> set[str]:
    return {h.strip().lower() for h in settings.connection_allowed_hosts.split(",")
            if h.strip()}


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


def kind_of(url: str) -> str:
    """``sql`` or ``files``; a ConnectionRefused for what a connection may not be."""
    from synthgen.sources import is_sql_url, is_url

    if not is_url(url) or any(ord(ch) < 32 for ch in url):
        raise ConnectionRefused("a connection is a URL: postgresql://user:password@host/db, "
                                "s3://bucket/path/, ...")
    scheme = url.split("://", 1)[0].lower()
    if scheme.split("+", 1)[0] in _LOCAL_SCHEMES:
        raise ConnectionRefused(f"{scheme}:// reads this server's own files; a connection "
                                "must reach a database server or an object store")
    if scheme in OBJECT_STORES:
        return "files"
    if is_sql_url(url):
        return "sql"
    raise ConnectionRefused(f"{scheme}:// is neither a database this server has a driver for "
                            f"nor an object store ({', '.join(OBJECT_STORES)})")


def check_reach(url: str, settings: Settings) -> str:
    """The connection's kind, once its host is known to be allowed: a host the operator lists
    in SYNTHGEN_CONNECTION_ALLOWED_HOSTS, or one whose every address is public."""
    return _reach(url, settings)[0]


def _reach(url: str, settings: Settings) -> tuple[str, str | None]:
    """The kind, and the public address checked for a host outside the allowlist (None for an
    allowed host or an object store)."""
    kind = kind_of(url)
    if kind == "files":
        return kind, None
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        raise ConnectionRefused("the connection URL is malformed") from None
    if not host:
        raise ConnectionRefused("the connection URL names no host")
    if host in _allowed(settings):
        return kind, None
    try:
        addresses = [str(i[4][0]) for i in socket.getaddrinfo(host, None,
                                                                proto=socket.IPPROTO_TCP)]
    except (OSError, ValueError):  # UnicodeError (an IDNA label too long) is a ValueError
        raise ConnectionRefused(f"cannot resolve {host}") from None
    if not addresses or any(_private(a) for a in addresses):
        raise ConnectionRefused(f"{host} is a loopback or private address and not in this "
                                "server's SYNTHGEN_CONNECTION_ALLOWED_HOSTS; ask the operator "
                                "to allow it")
    return kind, addresses[0]


# ----------------------------------------------------------------------------- connections


def create_connection(db: Database, settings: Settings, tenant_id: str, url: str,
                      name: str | None = None) -> Connection:
    from synthgen.sources import mask

    kind = check_reach(url, settings)
    row = Connection(id=new_id("con"), tenant_id=tenant_id, name=name, kind=kind,
                     display=mask(url), secret=encrypt(url, settings))
    with db.write() as s:
        s.add(row)
    return row


def connection_of(session: Session, tenant_id: str, connection_id: str) -> Connection | None:
    return session.scalars(select(Connection).where(
        Connection.id == connection_id, Connection.tenant_id == tenant_id)).first()


def url_of(connection: Connection, settings: Settings) -> str:
    """The connection's URL, decrypted, after its host is checked again (a name may resolve
    elsewhere now). PostgreSQL connects to the address checked (libpq's ``hostaddr``; the name
    stays for TLS), never to a second lookup that a rebinding DNS server could answer with a
    private address; other drivers resolve the name again."""
    url = decrypt(connection.secret, settings)
    kind, address = _reach(url, settings)
    if kind == "sql" and address is not None and url.split("://", 1)[0].split("+")[0] in (
            "postgresql", "postgres"):
        url += ("&" if "?" in url else "?") + f"hostaddr={address}"
    return url


def test_connection(connection: Connection, settings: Settings) -> None:
    """Raise a SourceError (its message free of secrets) unless the connection answers."""
    from synthgen.sources import check_reachable

    check_reachable(url_of(connection, settings))


def location(connection: Connection, url: str, path: str | None) -> str:
    """A file connection's URL with ``path`` under it (no way out of its prefix)."""
    if path is None:
        return url
    if path.startswith("/") or ".." in path.split("/") or "://" in path:
        raise InputError("a path under a connection is relative and stays under it",
                         code="invalid-argument")
    return url.rstrip("/") + "/" + path


# ----------------------------------------------------------------------------- sources


def source_key(url: str, table: str | None, query: str | None) -> str:
    """What a source is, whoever reads it: the URL without credentials, and the table or the
    query (whitespace-normalised)."""
    from synthgen.sources import without_credentials

    what = f"table:{table}" if table is not None else "query:" + " ".join((query or "").split())
    return hashlib.sha256(f"{without_credentials(url)}\n{what}".encode()).hexdigest()


def read_snapshot(url: str, source: DatasetSource | None, settings: Settings, *,
                  table: str | None = None, query: str | None = None,
                  user_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a source within the upload limits: the upload fields of a version (its table as
    Parquet bytes under ``"bytes"``) and the source's column types."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from synthgen.privacy.domains import check_declared
    from synthgen.schema import infer_schema, parse_schema
    from synthgen.sources import display_name, merge_schemas, read_source, types_to_json

    if source is not None:
        table, query, user_schema = source.table_name, source.query, source.user_schema
    snapshot = read_source(url, table=table, query=query, limits=settings.read_limits,
                           max_bytes=settings.max_upload_bytes)
    declared = merge_schemas(snapshot.schema,
                             parse_schema(user_schema) if user_schema else None)
    frame = snapshot.frame
    schema = infer_schema(frame, declared)
    check_declared(frame, schema)
    buffer = io.BytesIO()
    plain = frame.apply(lambda c: c.astype(object) if str(c.dtype) == "category" else c)
    pq.write_table(pa.Table.from_pandas(plain, preserve_index=False), buffer)
    raw = buffer.getvalue()
    name = display_name(url, table=table, query=query)[:300]
    return {"bytes": raw, "name": name, "format": "parquet", "size_bytes": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(), "rows": len(frame),
            "columns": [{"name": c.name, "kind": c.kind.value} for c in schema.columns],
            "public_schema": declared.model_dump(mode="json") if declared else None,
            "csv_options": None, "column_types": types_to_json(snapshot.types)}


def create_source_dataset(db: Database, storage: Storage, settings: Settings, tenant_id: str,
                          connection_id: str, *, table: str | None, query: str | None,
                          user_schema: dict[str, Any] | None, budget_epsilon: float | None,
                          budget_delta: float | None, budget_policy: str = "shared"
                          ) -> tuple[Dataset, bool]:
    """The dataset of a source (created with a first snapshot, to describe it), or the one
    that exists for the same source: (dataset, created)."""
    if (table is None) == (query is None):
        raise InputError("give a table or a query", code="invalid-argument")
    with db.read() as s:
        connection = connection_of(s, tenant_id, connection_id)
    if connection is None:
        raise LookupError(connection_id)
    if connection.kind != "sql":
        raise InputError("a table or a query needs a database connection; this one is an "
                         "object store", code="invalid-argument")
    url = url_of(connection, settings)
    key = source_key(url, table, query)
    with db.read() as s:
        existing = s.scalars(select(Dataset).join(
            DatasetSource, DatasetSource.dataset_id == Dataset.id).where(
            DatasetSource.tenant_id == tenant_id, DatasetSource.source_key == key)).first()
    if existing is not None:
        return existing, False
    upload = read_snapshot(url, None, settings, table=table, query=query,
                           user_schema=user_schema)
    dataset_id = new_id("ds")
    storage_key = Storage.dataset_key(tenant_id, dataset_id)
    storage.write_stream(storage_key, iter([upload.pop("bytes")]), settings.max_upload_bytes)
    upload.pop("column_types")
    dataset = Dataset(id=dataset_id, tenant_id=tenant_id, budget_policy=budget_policy,
                      version=1, storage_key=storage_key,
                      budget_epsilon=budget_epsilon or settings.default_budget_epsilon,
                      budget_delta=budget_delta or settings.default_budget_delta, **upload)
    try:
        with db.write() as s:
            s.add(dataset)
            s.flush()
            s.add(DatasetSource(dataset_id=dataset_id, tenant_id=tenant_id,
                                connection_id=connection.id, table_name=table, query=query,
                                source_key=key, user_schema=user_schema))
    except Exception:
        storage.delete(storage_key)
        raise
    return dataset, True


def source_of(session: Session, dataset_id: str) -> DatasetSource | None:
    return session.get(DatasetSource, dataset_id)


def snapshot_for_job(db: Database, storage: Storage, settings: Settings, job: Job
                     ) -> tuple[int, dict[str, Any] | None] | None:
    """For a job on a source dataset: the version it reads and the source's column types,
    reading a new snapshot on its first attempt (a new version when the content changed).
    None for a dataset that is an upload."""
    from synthgen.service.budget import locked_dataset
    from synthgen.service.versions import add_version

    with db.read() as s:
        source = source_of(s, job.dataset_id)
        if source is None:
            return None
        taken = s.get(JobSnapshot, job.id)
        if taken is not None:
            return taken.version, taken.column_types
        connection = connection_of(s, job.tenant_id, source.connection_id)
        if connection is None:
            raise InputError("the dataset's connection was deleted; create the connection "
                             "and the dataset again", code="not-found")
    url = url_of(connection, settings)
    upload = read_snapshot(url, source, settings)
    raw, types = upload.pop("bytes"), upload.pop("column_types")
    key = f"{Storage.dataset_key(job.tenant_id, job.dataset_id)}-snapshot-{job.id}"
    stored = False
    try:
        with db.write() as s:
            taken = s.get(JobSnapshot, job.id)  # another attempt of the job took it meanwhile
            if taken is not None:
                return taken.version, taken.column_types
            dataset = locked_dataset(s, job.tenant_id, job.dataset_id)
            if dataset is None:
                raise InputError("the dataset is gone", code="not-found")
            if upload["sha256"] != dataset.sha256 or dataset.purged_at is not None:
                storage.write_stream(key, iter([raw]), settings.max_upload_bytes)
                stored = True
                add_version(s, dataset, {**upload, "storage_key": key})
            s.add(JobSnapshot(job_id=job.id, version=dataset.version, column_types=types,
                              created_at=now()))
            row = s.scalars(select(Job).where(Job.id == job.id)).one()
            row.dataset_version = dataset.version
            version = dataset.version
    except BaseException:
        if stored:
            storage.delete(key)
        raise
    return version, types


def destination_of(session: Session, settings: Settings, tenant_id: str,
                   destination: dict[str, Any]) -> tuple[Connection, str]:
    """The destination's connection and URL (checked); an InputError when it is unusable."""
    connection = connection_of(session, tenant_id, str(destination.get("connection_id")))
    if connection is None:
        raise InputError(f"there is no connection {destination.get('connection_id')!r}",
                         code="not-found")
    url = url_of(connection, settings)
    if connection.kind == "sql" and not destination.get("table"):
        raise InputError("a database destination needs a table", code="invalid-argument")
    if connection.kind == "files" and not destination.get("path"):
        raise InputError("an object-store destination needs a path under the connection",
                         code="invalid-argument")
    return connection, url


def check_destination(db: Database, settings: Settings, job: Job) -> None:
    """Before training: the job's destination answers (and does not refuse the write)."""
    from synthgen.sources import check_destination as check_table
    from synthgen.sources import check_reachable

    destination = (job.options or {}).get("destination")
    if not destination:
        return
    with db.read() as s:
        connection, url = destination_of(s, settings, job.tenant_id, destination)
    if connection.kind == "sql":
        check_table(url, destination["table"], destination.get("if_exists", "fail"))
    else:
        check_reachable(url)


def write_destination(db: Database, settings: Settings, job: Job, chunks: Any,
                      column_types: dict[str, Any] | None) -> str | None:
    """Write the synthetic rows to the job's destination; what was written (masked), or None
    when the job has none."""
    from synthgen.sources import conform, mask, types_from_json, write_path, write_sql

    destination = (job.options or {}).get("destination")
    if not destination:
        return None
    with db.read() as s:
        connection, url = destination_of(s, settings, job.tenant_id, destination)
    types = types_from_json(column_types)
    shaped = (conform(c, types) for c in chunks)
    if connection.kind == "sql":
        write_sql(shaped, url, destination["table"],
                  if_exists=destination.get("if_exists", "fail"), types=types)
        return f"{destination['table']} in {mask(url)}"
    target = location(connection, url, destination["path"])
    write_path(shaped, target)
    return mask(target)
