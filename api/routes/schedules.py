"""Schedules: cron (in a time zone) + a job or batch template + an on/off switch."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import CurrentTenant, DatabaseDep, SessionDep, SettingsDep, owned
from api.limits import check_job_limits
from api.problems import Problem
from api.routes.batches import BatchCreate
from api.routes.connections import check_destinations
from api.sampling import check_sampling
from api.schemas import JobCreate, iso, public_options
from synthgen.service.db import Dataset, Schedule, ScheduleRun, new_id, now
from synthgen.service.schedules import InvalidSchedule, check_cron, schedule_values
from synthgen.service.settings import Settings

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])

RECENT_RUNS = 20


class _Template(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job: JobCreate | None = Field(None, description="A job to submit at each fire time.")
    batch: BatchCreate | None = Field(None, description="Or a batch to submit.")

    def template(self) -> dict[str, Any] | None:
        if self.job is not None and self.batch is not None:
            raise ValueError("give a job or a batch, not both")
        jobs = [self.job] if self.job is not None else (
            self.batch.jobs if self.batch is not None else [])
        if any(j.seed is not None for j in jobs):
            # every run would draw the same noise: the difference of two runs' releases on
            # two versions of the table would be the exact difference of the tables
            raise ValueError("a schedule cannot carry a seed: every run would draw the same "
                             "noise, and two runs' releases could be subtracted from each "
                             "other; leave the seed out (each run draws fresh noise)")
        if self.job is not None:
            return {"kind": "job", "jobs": [self.job.model_dump(mode="json", exclude_none=True)]}
        if self.batch is not None:
            return {"kind": "batch", "jobs": [j.model_dump(mode="json", exclude_none=True)
                                              for j in self.batch.jobs]}
        return None


class ScheduleCreate(_Template):
    name: str | None = Field(None, max_length=200)
    cron: str = Field(max_length=100, description="5 fields (minute hour day-of-month month "
                      "day-of-week) or an alias such as @daily, in `timezone`.")
    timezone: str = Field("UTC", max_length=64, description="IANA time zone, e.g. "
                          "Europe/Paris.")
    enabled: bool = True

    @model_validator(mode="after")
    def _one_template(self) -> ScheduleCreate:
        if self.template() is None:
            raise ValueError("give a job or a batch template")
        return self


class SchedulePatch(_Template):
    name: str | None = Field(None, max_length=200)
    cron: str | None = Field(None, max_length=100)
    timezone: str | None = Field(None, max_length=64)
    enabled: bool | None = None

    @model_validator(mode="after")
    def _at_most_one_template(self) -> SchedulePatch:
        self.template()
        return self


class ScheduleRunOut(BaseModel):
    id: str
    fire_time: datetime
    status: Literal["submitted", "skipped"]
    reason_code: str | None
    reason: str | None
    job_id: str | None
    batch_id: str | None


class ScheduleOut(BaseModel):
    id: str
    name: str | None
    cron: str
    timezone: str
    enabled: bool
    kind: Literal["job", "batch"]
    jobs: list[dict[str, Any]] = Field(description="The template's job request bodies (a "
                                       "seed, a secret, shows as \"seeded\": true).")
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime
    recent_runs: list[ScheduleRunOut] = Field(description=f"The last {RECENT_RUNS} runs, "
                                              "newest first.")

    @classmethod
    def of(cls, session: Session, s: Schedule) -> ScheduleOut:
        runs = session.scalars(select(ScheduleRun).where(ScheduleRun.schedule_id == s.id)
                               .order_by(ScheduleRun.fire_time.desc()).limit(RECENT_RUNS)).all()
        return cls(id=s.id, name=s.name, cron=s.cron, timezone=s.timezone, enabled=s.enabled,
                   kind=s.template["kind"],
                   jobs=[public_options(j) for j in s.template["jobs"]],
                   next_fire_at=iso(s.next_fire_at), last_fire_at=iso(s.last_fire_at),
                   created_at=iso(s.created_at), updated_at=iso(s.updated_at),  # type: ignore[arg-type]
                   recent_runs=[ScheduleRunOut(
                       id=r.id, fire_time=iso(r.fire_time), status=r.status,  # type: ignore[arg-type]
                       reason_code=r.reason_code, reason=r.reason, job_id=r.job_id,
                       batch_id=r.batch_id) for r in runs])


class SchedulePage(BaseModel):
    items: list[ScheduleOut]


def _schedule_of(session: Session, tenant: str, schedule_id: str) -> Schedule:
    return owned(session, Schedule, tenant, schedule_id, "schedule")


def _check(session: Session, settings: Settings, tenant: str, body: _Template,
           cron: str, timezone: str) -> None:
    try:
        check_cron(cron, timezone)
    except InvalidSchedule as exc:
        raise Problem(422, "invalid-schedule", str(exc)) from exc
    bodies = [body.job] if body.job else body.batch.jobs if body.batch else []
    check_job_limits(settings, bodies)
    for job in bodies:
        if session.scalar(select(Dataset.id).where(Dataset.id == job.dataset_id,
                                                   Dataset.tenant_id == tenant)) is None:
            raise Problem(404, "not-found", f"there is no dataset {job.dataset_id!r}")
    check_sampling(session, tenant, bodies)
    check_destinations(session, tenant, bodies)


@router.post("", status_code=201, response_model=ScheduleOut, responses={
    404: {"description": "The template names a dataset this tenant does not have."}})
def create_schedule(tenant: CurrentTenant, db: DatabaseDep, settings: SettingsDep,
                    body: ScheduleCreate, response: Response) -> ScheduleOut:
    """Create a schedule. Its first run is the next fire time from now; each run submits the
    template's job or batch against the dataset's latest version."""
    with db.read() as s:
        _check(s, settings, tenant, body, body.cron, body.timezone)
    schedule = Schedule(id=new_id("sch"), tenant_id=tenant, name=body.name,
                        template=body.template(),
                        **schedule_values(body.cron, body.timezone, body.enabled, now()))
    with db.write() as s:
        s.add(schedule)
    response.headers["Location"] = f"/v1/schedules/{schedule.id}"
    with db.read() as s:
        return ScheduleOut.of(s, schedule)


@router.get("", response_model=SchedulePage)
def list_schedules(tenant: CurrentTenant, session: SessionDep) -> SchedulePage:
    """The tenant's schedules, oldest first."""
    schedules = session.scalars(select(Schedule).where(Schedule.tenant_id == tenant)
                                .order_by(Schedule.seq)).all()
    return SchedulePage(items=[ScheduleOut.of(session, s) for s in schedules])


@router.get("/{schedule_id}", response_model=ScheduleOut)
def get_schedule(tenant: CurrentTenant, session: SessionDep, schedule_id: str) -> ScheduleOut:
    """A schedule, its next fire time and its recent runs (submitted or skipped, and why)."""
    return ScheduleOut.of(session, _schedule_of(session, tenant, schedule_id))


@router.patch("/{schedule_id}", response_model=ScheduleOut)
def update_schedule(tenant: CurrentTenant, db: DatabaseDep, settings: SettingsDep,
                    schedule_id: str, body: SchedulePatch) -> ScheduleOut:
    """Change a schedule or switch it on or off. A change of timing (or switching on) takes
    effect from now: windows that passed meanwhile are not fired."""
    with db.read() as s:
        old = _schedule_of(s, tenant, schedule_id)
        cron, timezone = body.cron or old.cron, body.timezone or old.timezone
        _check(s, settings, tenant, body, cron, timezone)
    with db.write() as s:
        schedule = _schedule_of(s, tenant, schedule_id)
        enabled = schedule.enabled if body.enabled is None else body.enabled
        timing = (cron, timezone, enabled) != (schedule.cron, schedule.timezone,
                                               schedule.enabled)
        if timing:
            for key, value in schedule_values(cron, timezone, enabled, now()).items():
                setattr(schedule, key, value)
        if "name" in body.model_fields_set:
            schedule.name = body.name
        schedule.template = body.template() or schedule.template
        schedule.updated_at = now()
    with db.read() as s:
        return ScheduleOut.of(s, schedule)


@router.delete("/{schedule_id}", status_code=204, response_class=Response)
def delete_schedule(tenant: CurrentTenant, db: DatabaseDep, schedule_id: str) -> Response:
    """Delete a schedule (and its run history). Jobs it submitted are not touched."""
    with db.write() as s:
        s.delete(_schedule_of(s, tenant, schedule_id))
    return Response(status_code=204)
