"""Request and response bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator

from synthgen.errors import BudgetError
from synthgen.privacy.budget import MIN_EPSILON, check_plan, min_epsilon
from synthgen.service.budget import ledger_delta
from synthgen.service.db import Dataset, Job

Scalar = str | int | float | bool | None


def _json_number(value: Any) -> Any:
    """A number must be a JSON number: "1" and true are refused, not read as 1 (pydantic's lax
    mode would)."""
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"must be a JSON number, not {type(value).__name__} {value!r:.40}")
    return value


# Strict numbers (and booleans) in request bodies; 2.0 is still the integer 2.
Number = Annotated[float, BeforeValidator(_json_number)]
Count = Annotated[int, BeforeValidator(_json_number)]
Flag = Annotated[bool, Strict()]
MAX_SEED_ROWS = 100_000

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def iso(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def public_options(options: dict[str, Any]) -> dict[str, Any]:
    """A job's options as its resources show them: a seed is a secret like a key (it
    regenerates the job's noise), so only the fact that there is one is shown."""
    shown = {k: v for k, v in options.items() if k != "seed"}
    if options.get("seed") is not None:
        shown["seeded"] = True
    return shown


class ColumnOut(BaseModel):
    name: str
    kind: str


class CsvOptionsOut(BaseModel):
    delimiter: str
    encoding: str
    decimal: str | None = Field(description="The decimal mark given (None: numbers were read "
                                "with a point; those written with a comma stayed text).")
    given: list[str] = Field(description="The options the upload gave; the others were "
                             "detected (the delimiter from the header line, the encoding from "
                             "the bytes).")


class DatasetOut(BaseModel):
    id: str
    name: str
    format: Literal["csv", "parquet"]
    csv: CsvOptionsOut | None = Field(None, description="How the CSV was read (None: Parquet, "
                                      "or a CSV uploaded before this was kept: UTF-8, "
                                      "commas).")
    size_bytes: int
    sha256: str
    rows: int
    column_count: int
    columns: list[ColumnOut]
    budget_epsilon: float
    budget_policy: Literal["shared", "fresh"] = Field(description="shared: one cap and spend "
                                                      "across versions; fresh: each version "
                                                      "has its own (disjoint people only).")
    version: int = Field(description="The current version (PUT .../versions adds one).")
    upload_retained: bool
    created_at: datetime

    @classmethod
    def of(cls, d: Dataset) -> DatasetOut:
        return cls(id=d.id, name=d.name, format=d.format, size_bytes=d.size_bytes,  # type: ignore[arg-type]
                   csv=CsvOptionsOut(**d.csv_options) if d.csv_options else None,
                   sha256=d.sha256, rows=d.rows, column_count=len(d.columns),
                   columns=[ColumnOut(**c) for c in d.columns], budget_epsilon=d.budget_epsilon,
                   budget_policy=d.budget_policy, version=d.version,  # type: ignore[arg-type]
                   upload_retained=d.purged_at is None, created_at=iso(d.created_at))  # type: ignore[arg-type]


class Destination(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection_id: str = Field(max_length=64)
    table: str | None = Field(None, max_length=300, description="A database connection: the "
                              "table to write (created with the source's column types).")
    path: str | None = Field(None, max_length=1000, description="An object-store connection: "
                             "the file under its prefix (.csv, .parquet; a folder/ gets "
                             "Parquet parts).")
    if_exists: Literal["fail", "replace", "append"] = Field(
        "fail", description="When the table exists: fail (before any budget is spent), "
        "replace it, or append to it.")


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(max_length=64)
    epsilon: Number = Field(ge=MIN_EPSILON, le=100, description="Privacy budget of this job "
                           "(reserved against the dataset's cap when the job is accepted); at "
                           f"least {MIN_EPSILON:g} (prv) or {min_epsilon('rdp'):g} (rdp).")
    delta: Number | None = Field(None, gt=0, le=1e-3, description="Default 1e-6.")
    rows: Count | None = Field(None, ge=1, le=50_000_000, description="Synthetic rows (default: "
                               "about as many as the table, from the DP row count of the "
                               "training rows and the public holdout share, as synthgen "
                               "run; at most the server's "
                               "SYNTHGEN_MAX_JOB_ROWS, 10,000,000 unless set).")
    epochs: Number | None = Field(None, gt=0, le=10_000)
    batch_size: Count | None = Field(None, ge=1, le=1_000_000)
    seed: Count | None = Field(None, ge=0, le=2**32 - 1, description="Makes the job "
                               "reproducible; a secret like a key (it regenerates the job's "
                               "noise): never shown again (the job shows \"seeded\": true). "
                               "Default: fresh OS entropy. Use one seed for one job: two jobs "
                               "with the same seed draw the same noise.")
    accountant: Literal["prv", "rdp"] = "prv"
    holdout_share: Number = Field(0.1, ge=0, le=0.5, description="Share of the rows held out of "
                                 "training for the report's privacy audit and utility test "
                                 "(0: none; the report declares the split).")
    audit: Flag = Field(True, description="Run the empirical privacy audit for the report.")
    target: str | None = Field(None, max_length=256, description="Column for the report's "
                               "train-on-synthetic, test-on-real utility test.")
    conditions: dict[str, Scalar | list[Scalar | None]] | list[str] | None = Field(
        None, description="Values every output row honours (post-processing: no budget): "
        '{"sex": "Female", "age": ">=60"}, a range {"age": [60, 70]} (inclusive; null for an '
        'open end), or ["sex=Female", "age>=60"].')
    rebalance: dict[str, dict[str, float]] | None = Field(
        None, description='Shares of a categorical column\'s values in the output, e.g. '
        '{"Y": {">50K": 0.5}}; the other rows follow the model.')
    seed_rows: list[dict[str, Scalar]] | None = Field(
        None, min_length=1, max_length=MAX_SEED_ROWS, description="Partial rows (POST /v1/jobs "
        "only): each output row keeps its seed row's non-null values and the model fills in "
        "the rest. Your input to sampling, not training data: not covered by the privacy "
        "guarantee, and deleted when the job ends.")
    destination: Destination | None = Field(
        None, description="Also write the synthetic table through a connection "
        "(/v1/connections): a database table or an object-store path.")

    @model_validator(mode="after")
    def _reachable(self) -> JobCreate:
        # Refused at submission (422, nothing reserved), not by the worker after it read rows.
        if self.epsilon < min_epsilon(self.accountant):
            raise ValueError(f"epsilon {self.epsilon:g} is below the {self.accountant} "
                             f"accountant's minimum of {min_epsilon(self.accountant):g}; ask "
                             f"for more, or use the prv accountant (minimum {MIN_EPSILON:g})")
        try:  # the whole budget plan, from the options alone (a worker checks it again)
            check_plan(self.epsilon, self.delta, self.accountant)
        except BudgetError as exc:
            raise ValueError(str(exc)) from exc
        return self

    def options(self) -> dict[str, Any]:
        options = self.model_dump(include={"epochs", "batch_size", "seed", "accountant",
                                           "holdout_share", "audit", "target", "conditions",
                                           "rebalance", "destination"}, exclude_none=True)
        if self.seed_rows is not None:  # the rows themselves go to storage, not the database
            options["seed_rows"] = {"rows": len(self.seed_rows),
                                    "columns": sorted({c for r in self.seed_rows for c in r})}
        return options


class Progress(BaseModel):
    step: int
    total_steps: int | None
    epoch: float
    epsilon_spent: float = Field(description="Upper bound of the epsilon spent so far.")


class JobError(BaseModel):
    code: str
    message: str


class JobWarning(BaseModel):
    code: str = Field(description="values-folded-into-other, column-dropped, "
                      "index-column-dropped, delta-above-1-over-10n, or warning.")
    column: str | None = Field(description="The column it is about, if any.")
    figure: float | None = Field(description="The share of the column's values folded into "
                                 "Other (0.3: 30 %), or the DP row estimate behind a delta "
                                 "warning; null where there is none.")
    message: str = Field(description="The sentence the report and `synthgen run` print.")


class JobLinks(BaseModel):
    self: str
    synthetic_csv: str
    report: str
    evaluation: str = Field(description="The owner-only evaluation (computed on real rows).")
    dataset_budget: str


class JobOut(BaseModel):
    id: str
    dataset_id: str
    dataset_version: int
    batch_id: str | None
    status: JobStatus
    epsilon: float
    delta: float | None = Field(description="The delta asked for; without one, the delta the "
                                "job runs at (the default, 1e-6) once training has started: "
                                "what the report and the dataset's budget count.")
    rows: int | None
    options: dict[str, Any] = Field(description="The job's options as asked; a seed is a "
                                    "secret and shows as \"seeded\": true.")
    progress: Progress
    attempt: int
    cancel_requested: bool
    epsilon_charged: float | None
    output_rows: int | None
    error: JobError | None
    warnings: list[JobWarning] = Field(description="What training decided about the data (a "
                                       "column dropped, rare values folded into Other), from "
                                       "the job's first training step on; the report lists "
                                       "the same.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: JobLinks

    @classmethod
    def of(cls, j: Job) -> JobOut:
        base = f"/v1/jobs/{j.id}"
        return cls(
            id=j.id, dataset_id=j.dataset_id, dataset_version=j.dataset_version,
            batch_id=j.batch_id, status=j.state,  # type: ignore[arg-type]
            epsilon=j.epsilon, delta=j.delta if j.delta is not None else ledger_delta(j.ledger),
            rows=j.rows, options=public_options(j.options or {}),
            progress=Progress(step=j.progress_step, total_steps=j.progress_total,
                              epoch=j.progress_epoch, epsilon_spent=j.progress_epsilon),
            attempt=j.attempt, cancel_requested=j.cancel_requested,
            epsilon_charged=j.charged_epsilon if j.settled else None,
            output_rows=j.output_rows,
            error=JobError(code=j.error_code, message=j.error_message or "")
            if j.error_code else None,
            warnings=[JobWarning(**w) for w in j.warnings or []],
            created_at=iso(j.created_at),  # type: ignore[arg-type]
            started_at=iso(j.started_at), finished_at=iso(j.finished_at),
            links=JobLinks(self=base, synthetic_csv=f"{base}/synthetic.csv",
                           report=f"{base}/report", evaluation=f"{base}/evaluation",
                           dataset_budget=f"/v1/datasets/{j.dataset_id}/budget"),
        )


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at "
                                    "the end.")


class BudgetJob(BaseModel):
    job_id: str
    state: JobStatus
    reserved_epsilon: float
    charged_epsilon: float | None
    mechanisms: int


class BudgetOut(BaseModel):
    dataset_id: str
    shared_with: list[str] = Field(description="The tenant's other datasets uploaded with the "
                                   "same bytes: they share this one cap and spend.")
    cap_epsilon: float
    spent_epsilon: float
    reserved_epsilon: float
    remaining_epsilon: float
    spent_delta: float
    cap_delta: float
    remaining_delta: float = Field(description="The delta cap less the delta spent and "
                                   "reserved (every job's delta adds up).")
    composition: str
    sum_of_charges: float
    jobs: list[BudgetJob]


class Health(BaseModel):
    status: str
    checks: dict[str, bool] = {}
