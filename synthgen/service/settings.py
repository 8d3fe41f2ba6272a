"""Service settings: one pydantic-settings class read from ``SYNTHGEN_*`` environment variables.

The API, the embedded supervisor, Celery workers and the ``synthgen`` commands all build their
configuration from :class:`Settings`, so one set of variables configures a whole deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from synthgen.io import ReadLimits

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNTHGEN_", extra="ignore")

    # Folder for the SQLite database, stored objects and training scratch (embedded defaults).
    data_dir: Path = Field(default=Path("synthgen-data"))
    # SQLAlchemy URL; default SQLite in data_dir. Postgres: postgresql+psycopg://user@host/db.
    database_url: str | None = Field(default=None)
    # fsspec URL of the object store; default a folder in data_dir. S3: s3://bucket/prefix.
    storage_url: str | None = Field(default=None)
    # redis://... selects the cluster engine (Celery); unset trains in subprocesses of the API.
    broker_url: str | None = Field(default=None)
    # False deletes a dataset's raw upload when its last unfinished job ends.
    retain_uploads: bool = Field(default=True)
    max_upload_bytes: int = Field(default=256 * MIB, ge=1)
    # What an upload may decode to (checked from a Parquet footer before decoding, and while
    # reading any table, at upload and when training loads it): a compressed file of a few
    # hundred KB can hold 100 M rows.
    max_table_rows: int = Field(default=20_000_000, ge=1)
    max_table_columns: int = Field(default=2_000, ge=1)
    max_table_bytes: int = Field(default=2048 * MIB, ge=1)
    # ... and relative to the file: at most this many times its size (any file may decode to
    # 64 MiB). Real tables compress 3-50x; a 390-byte Parquet file decoding to 2.6 GB of text
    # (one string repeated) is a bomb.
    max_table_expansion: float = Field(default=1000.0, gt=1)
    # Epsilon cap of a dataset unless its upload names one.
    default_budget_epsilon: float = Field(default=10.0, gt=0)
    # Cap of a dataset's cumulative delta unless its upload names one: ten jobs at the default
    # delta (at most 1e-6 each).
    default_budget_delta: float = Field(default=1e-5, gt=0, le=1e-3)
    max_job_epsilon: float = Field(default=100.0, gt=0)
    # Synthetic rows one job (or batch child, or schedule run) may ask for: sampling is cheap
    # for the model but not for the disk and the download (about 100 bytes a row for Adult).
    max_job_rows: int = Field(default=10_000_000, ge=1, le=50_000_000)

    # Job execution
    device: str = "auto"
    # Embedded engine: concurrent training subprocesses (one per device); 0: API only.
    local_workers: int = Field(default=1, ge=0)
    # torch threads per training process, both engines (default: the cores free when the job
    # starts, the library's policy; see training_threads).
    train_threads: int | None = Field(default=None, ge=1)
    max_attempts: int = Field(default=3, ge=1)  # claims of one job before it fails
    lease_s: float = Field(default=60.0, gt=0)  # how long a claim holds without a heartbeat
    checkpoint_every_s: float = Field(default=30.0, gt=0)
    reconcile_every_s: float = Field(default=5.0, gt=0)
    reconciler: bool = Field(default=True)  # run the lease reconciler in the API process
    # Cluster: send a queued job's message again when none was sent for this long.
    redispatch_after_s: float = Field(default=3600.0, gt=0)

    # Celery (cluster engine)
    task_soft_time_limit_s: int = 6 * 3600
    task_time_limit_s: int = 6 * 3600 + 600
    visibility_timeout_s: int | None = None

    # Schedules: the tick that fires due runs. None: in the API process on the embedded
    # engine; in the cluster Celery beat runs it (``synthgen.schedule_tick`` on ``control``).
    scheduler: bool | None = Field(default=None)
    schedule_tick_s: float = Field(default=15.0, gt=0)

    # Webhooks: deliveries from the outbox (in the API process, and by beat in the cluster).
    webhook_delivery: bool = Field(default=True)
    webhook_every_s: float = Field(default=2.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_backoff_s: float = Field(default=10.0, gt=0)  # first retry; doubles, capped at 1 h
    webhook_timeout_s: float = Field(default=10.0, gt=0)  # each step: connect, each read
    # The whole of one attempt (resolve, connect, send, the answer's head and first 4 KiB):
    # a receiver that drips its answer is cut off here. An event's lease is this plus 30 s.
    webhook_deadline_s: float = Field(default=15.0, gt=0, le=300)
    # Endpoints delivered to at once (one lane each, a coroutine: a waiting receiver costs a
    # socket); endpoints that failed or were slow last time share at most half of them.
    webhook_concurrency: int = Field(default=64, ge=1)
    # Comma-separated hosts a webhook may target even over plain http or on a loopback or
    # private address (e.g. an internal receiver); others must be public https URLs.
    webhook_allowed_hosts: str = Field(default="")

    # Connections (/v1/connections): the Fernet key (32 url-safe base64 bytes, from
    # `python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`)
    # that encrypts their URLs at rest; unset: connections are off. Comma-separated hosts a
    # connection may reach on a loopback or private address; others must resolve to public ones.
    connection_key: str | None = Field(default=None, repr=False)
    connection_allowed_hosts: str = Field(default="")

    # Apply schema migrations when the API starts. None: on SQLite only (one process owns the
    # file); with Postgres, replicas starting together would race: run `synthgen db upgrade`.
    migrate_on_start: bool | None = Field(default=None)
    # /readyz: how often the database's integrity is checked again (SQLite: PRAGMA quick_check)
    db_check_every_s: float = Field(default=30.0, ge=0)

    # GET /metrics (Prometheus) needs this token as a Bearer; unset: the route is off.
    metrics_token: str | None = Field(default=None)
    # Log lines as JSON objects (one a line) instead of text: "text" or "json".
    log_format: Literal["text", "json"] = "text"

    host: str = "127.0.0.1"
    port: int = 8000

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("task_soft_time_limit_s must be below task_time_limit_s")
        if self.visibility_timeout_s is not None and (
            self.visibility_timeout_s <= self.task_time_limit_s
        ):
            raise ValueError("visibility_timeout_s must be above task_time_limit_s, or a "
                             "running task is delivered a second time")
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'synthgen.db').resolve()}"

    @property
    def objects_url(self) -> str:
        return self.storage_url or (self.data_dir / "objects").resolve().as_uri()

    @property
    def read_limits(self) -> ReadLimits:
        from synthgen.io import ReadLimits  # pandas and pyarrow: only where tables are read

        return ReadLimits(max_rows=self.max_table_rows, max_columns=self.max_table_columns,
                          max_bytes=self.max_table_bytes, max_expansion=self.max_table_expansion)

    @property
    def scratch_dir(self) -> Path:
        return self.data_dir / "scratch"

    @property
    def training_threads(self) -> int:
        """torch threads of a training process, in either engine: ``train_threads``, else the
        cores free when the job starts (synthgen/threads.py, the policy of ``synthgen run`` and
        ``Synthesizer``). Left at torch's default, a Celery worker's training ran 6x slower
        than the embedded engine's on the same CPU (130 s against 21 s for the README job):
        idle OpenMP threads spin against the heartbeat thread and the other processes of the
        node."""
        from synthgen.threads import training_threads

        return training_threads(self.train_threads)

    @property
    def heartbeat_s(self) -> float:
        return max(0.2, self.lease_s / 4)

    @property
    def visibility_timeout(self) -> int:
        """Redis visibility timeout: above the hard time limit (a running task is never
        redelivered), with an hour's margin unless set."""
        return self.visibility_timeout_s or self.task_time_limit_s + 3600

    @property
    def runs_scheduler(self) -> bool:
        """Whether this API process runs the schedule tick."""
        return self.engine == "embedded" if self.scheduler is None else self.scheduler

    @property
    def engine(self) -> str:
        return "cluster" if self.broker_url else "embedded"
