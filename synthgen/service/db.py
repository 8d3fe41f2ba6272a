"""The service's database: tables for tenants, keys, datasets and jobs, and how to open it.

The database is the source of truth for jobs (a queue message carries only a job id). Times are
stored as UNIX seconds (floats) so that lease arithmetic is the same SQL on SQLite and Postgres.
SQLite runs in WAL mode; its write transactions start with ``BEGIN IMMEDIATE`` so that a read
followed by a conditional write (budget admission, claims) is serialised instead of failing late.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


def now() -> float:
    return time.time()


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[float] = mapped_column(Float, default=now)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Upload:
    """The columns that describe one upload of a table (a dataset's, or a version's)."""

    name: Mapped[str] = mapped_column(String(300))
    format: Mapped[str] = mapped_column(String(10))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    public_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    storage_key: Mapped[str] = mapped_column(String(300))
    # A CSV's delimiter, encoding and decimal mark as the upload was read, and which of them
    # were given (the others detected): the job reads it again with the given ones (detection
    # is a function of the bytes). None: Parquet, or an upload from before they were kept.
    csv_options: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


UPLOAD_FIELDS = ("name", "format", "size_bytes", "sha256", "rows", "columns", "public_schema",
                 "storage_key", "csv_options")


class Dataset(Upload, Base):
    __tablename__ = "datasets"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    budget_epsilon: Mapped[float] = mapped_column(Float)
    # Composition over the settled jobs flagged ``composed`` (see budget.compose_dataset).
    spent_epsilon: Mapped[float] = mapped_column(Float, default=0.0)
    spent_delta: Mapped[float] = mapped_column(Float, default=0.0)
    composed_jobs: Mapped[int] = mapped_column(Integer, default=0)
    purged_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    # The upload above is version ``version`` of the table (PUT .../versions adds one). Policy
    # "shared": one cap and one spend across versions (the same people); "fresh": each version
    # has its own cap and spend (only correct when versions hold disjoint people).
    version: Mapped[int] = mapped_column(Integer, default=1)
    budget_policy: Mapped[str] = mapped_column(String(10), default="shared")
    # The budget follows the content within a tenant: an upload whose bytes (sha256) match an
    # earlier dataset's joins that dataset's group, and the group's first dataset (the holder,
    # whose id this is) keeps the one cap and spend of all of them. None: its own holder.
    budget_group: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    # Cap of the cumulative delta of the jobs charged to the group (None: the server default).
    budget_delta: Mapped[float | None] = mapped_column(Float, nullable=True)


class DatasetVersion(Upload, Base):
    """An upload of a dataset that is (or was) superseded: where jobs pinned to it read it."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    purged_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Batch(Base):
    """Several jobs submitted together: a parent row counting its children (no chords). The
    settlement of the last child sets the terminal state in the same transaction."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_idempotency", "tenant_id", "idempotency_key",
                            unique=True),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), default="running")
    total: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    schedule_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    state: Mapped[str] = mapped_column(String(12), default="queued", index=True)
    epsilon: Mapped[float] = mapped_column(Float)  # the reservation
    delta: Mapped[float | None] = mapped_column(Float, nullable=True)
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)

    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    created_at: Mapped[float] = mapped_column(Float, default=now)
    dispatched_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(60), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)

    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    progress_epoch: Mapped[float] = mapped_column(Float, default=0.0)
    progress_epsilon: Mapped[float] = mapped_column(Float, default=0.0)
    # The mechanisms that read the table so far: {"accountant", "accountant_delta",
    # "history": [[noise_multiplier, sampling_rate, steps], ...], "extra_delta"}.
    ledger: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # What fit decided about the data (synthgen.errors.warning_record), set once training has
    # read the table: [{"code", "column", "figure", "message"}, ...].
    warnings: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)

    settled: Mapped[bool] = mapped_column(Boolean, default=False)
    charged_epsilon: Mapped[float | None] = mapped_column(Float, nullable=True)
    composed: Mapped[bool] = mapped_column(Boolean, default=False)
    output_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The dataset version the job reads (pinned when it is accepted), and its batch if any.
    dataset_version: Mapped[int] = mapped_column(Integer, default=1)
    # The attempt whose outputs the job serves, set in the settling UPDATE (fenced by the
    # lease): outputs live under per-attempt keys, so a zombie attempt's files are never served.
    output_attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Seeds the audit's holdout split when the job has no seed of its own: never shown by the
    # API (a split seeded from the public job id would tell anyone which rows were held out).
    holdout_seed: Mapped[int] = mapped_column(BigInteger, default=lambda: secrets.randbits(62))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"), nullable=True,
                                                 index=True)


class JobAttempt(Base):
    """One claim of a job: lets an operator (and the tests) see that claims never overlapped."""

    __tablename__ = "job_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[float] = mapped_column(Float, default=now)
    heartbeat_at: Mapped[float] = mapped_column(Float, default=now)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)


class Schedule(Base):
    """A cron expression in a time zone and a job or batch template, fired by the tick."""

    __tablename__ = "schedules"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cron: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    # {"kind": "job" | "batch", "jobs": [job request bodies]}
    template: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_fire_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    last_fire_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class ScheduleRun(Base):
    """One fire time of a schedule. The unique (schedule, fire time) pair is the idempotency key
    that keeps two ticks (or a restarted one) from firing a run twice."""

    __tablename__ = "schedule_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "fire_time"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"),
                                             index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    fire_time: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(12))  # submitted | skipped
    reason_code: Mapped[str | None] = mapped_column(String(60), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    batch_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class WebhookEndpoint(Base):
    """A tenant's webhook receiver. The secret signs deliveries, so it is kept (not hashed)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[float] = mapped_column(Float, default=now)


class WebhookEvent(Base):
    """The durable outbox: an event is inserted in the transaction that caused it, and a
    delivery loop sends it (claim, POST, retry with backoff), so a failing receiver never
    blocks a job."""

    __tablename__ = "webhook_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)  # the webhook-id header
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(12), default="pending",  # delivered | failed
                                       index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=now)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    delivered_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Connection(Base):
    """A tenant's database or object store. ``secret`` is the whole URL (credentials in it)
    encrypted with the server's key (Fernet); ``display`` the URL with its password masked.
    Neither the URL nor the secret is ever returned or logged."""

    __tablename__ = "connections"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    kind: Mapped[str] = mapped_column(String(10))  # sql | files
    display: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class DatasetSource(Base):
    """Where a dataset's snapshots are read: a connection and a table or a query. One dataset
    per source and tenant (``source_key``: the URL without credentials and the table or
    query), so the source's budget is one dataset's, whatever connection reaches it."""

    __tablename__ = "dataset_sources"
    __table_args__ = (UniqueConstraint("tenant_id", "source_key"),)

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"), index=True)
    table_name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    query: Mapped[str | None] = mapped_column(Text, nullable=True)
    source_key: Mapped[str] = mapped_column(String(64))
    user_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class JobSnapshot(Base):
    """The snapshot a job on a source dataset read (taken by its first attempt; later
    attempts read the same version), with the source's column types for a destination."""

    __tablename__ = "job_snapshots"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    column_types: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


def _sqlite_engine(url: str, begin: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           pool_size=8, max_overflow=16)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


class Database:
    """Engines and sessions. ``read()`` for queries, ``write()`` for a serialised transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, "BEGIN")
            self.write_engine = _sqlite_engine(url, "BEGIN IMMEDIATE")
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            self.write_engine = self.engine
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)

    def create_all(self) -> None:
        """Create or upgrade the tables: the schema migrations up to this release's head."""
        from synthgen.service.migrate import upgrade

        upgrade(self)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on exit; on SQLite it holds the write lock throughout."""
        with self._write.begin() as session:
            yield session

    def ping(self) -> None:
        """Raise unless the database answers a query."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def intact(self) -> bool:
        """For SQLite, whether the file is intact: ``PRAGMA quick_check`` on a fresh read-only
        connection (a pooled one could answer from pages it cached before the file was
        damaged). Seconds for a database of a few hundred MB: callers run it now and then, not
        per request. Other databases check themselves: True."""
        path = self.engine.url.database if self.is_sqlite else None
        if not path or path == ":memory:":
            return True
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute("PRAGMA quick_check(1)").fetchall()
        except sqlite3.DatabaseError:
            return False
        finally:
            conn.close()
        return rows == [("ok",)]

    def dispose(self) -> None:
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()
