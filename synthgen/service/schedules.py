"""Schedules: a cron expression in a time zone, a job or batch template, an on/off switch.

Schedules live in the database. A **tick** (:func:`tick`, with an injectable clock) fires the
due ones: for each enabled schedule whose ``next_fire_at`` has passed it records a run keyed by
(schedule id, fire time) - a unique constraint, so two ticks racing, or a tick restarted after
a crash, never fire one window twice - advances ``next_fire_at`` and accepts the template's
jobs (budget reserved) in the same transaction. The tick runs from Celery beat in the cluster
and from a thread of ``synthgen serve`` in the embedded engine.

Missed windows: a tick that runs late (the scheduler was down) fires **only the latest** fire
time that has passed, once, never a backlog. A run whose jobs would exceed a dataset's cap (or
whose dataset is gone) is recorded as ``skipped`` with the reason, and a ``schedule.skipped``
webhook; the next window is tried as usual. On the night a clock falls back, a fixed-hour
expression (``30 2 * * *``) fires once, not in both passes of the repeated hour.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from synthgen.service.batches import create_batch, job_fields
from synthgen.service.budget import (
    BudgetExceeded,
    DatasetNotFound,
    DatasetPurged,
    reserve_jobs,
)
from synthgen.service.db import Database, Schedule, ScheduleRun, new_id, now
from synthgen.service.webhooks import enqueue_event

log = logging.getLogger("synthgen.service")


class InvalidSchedule(ValueError):
    """A cron expression or time zone that cannot be used."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception as exc:  # ZoneInfoNotFoundError, ValueError for odd keys, ...
        raise InvalidSchedule(f"unknown time zone {name!r}; use an IANA name such as "
                              "'Europe/Paris' or 'UTC'") from exc


def check_cron(expr: str, tz: str) -> float:
    """Validate a 5-field cron expression (or an alias such as ``@daily``) in a time zone;
    returns its next fire time from now."""
    zone(tz)
    if not expr.strip().startswith("@") and len(expr.split()) != 5:
        raise InvalidSchedule(f"{expr!r} is not a 5-field cron expression (minute hour "
                              "day-of-month month day-of-week)")
    try:
        return next_fire(expr, tz, now())
    except InvalidSchedule:
        raise
    except Exception as exc:  # croniter's errors, and whatever odd input makes it raise
        raise InvalidSchedule(f"{expr!r} is not a usable cron expression: {exc}") from exc


def _repeated(expr: str, t: float, tz: ZoneInfo) -> bool:
    """A second pass over a wall-clock time (the hour repeated when clocks fall back) of an
    expression with a fixed hour: it already fired in the first pass."""
    fields = expr.split()
    fixed_hour = len(fields) == 5 and "*" not in fields[1]
    return fixed_hour and datetime.fromtimestamp(t, tz).fold == 1


def next_fire(expr: str, tz: str, after: float) -> float:
    """The first fire time strictly after ``after`` (UNIX seconds)."""
    z = zone(tz)
    it = croniter(expr, datetime.fromtimestamp(after, z))
    t = float(it.get_next(float))
    while _repeated(expr, t, z):
        t = float(it.get_next(float))
    return t


def latest_fire(expr: str, tz: str, at: float) -> float:
    """The last fire time at or before ``at``."""
    z = zone(tz)
    it = croniter(expr, datetime.fromtimestamp(math.floor(at) + 1, z))
    t = float(it.get_prev(float))
    while _repeated(expr, t, z):
        t = float(it.get_prev(float))
    return t


@dataclass
class Fired:
    """What one tick did for one schedule."""

    schedule_id: str
    run_id: str
    fire_time: float
    status: str  # submitted | skipped
    job_ids: list[str] = field(default_factory=list)
    batch_id: str | None = None
    reason_code: str | None = None


def _reason(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, BudgetExceeded):
        return "budget-exceeded", str(exc)
    if isinstance(exc, DatasetPurged):
        return "dataset-purged", (f"dataset {exc.args[0]}'s upload was deleted by the retention "
                                  "policy; upload a new version")
    return "not-found", f"there is no dataset {exc.args[0]!r}"


def _fire(db: Database, schedule_id: str, t: float, max_attempts: int) -> Fired | None:
    with db.write() as s:
        schedule = s.scalar(select(Schedule).where(
            Schedule.id == schedule_id, Schedule.enabled.is_(True),
            Schedule.next_fire_at <= t).with_for_update())
        if schedule is None:  # another tick fired it, or it was changed, meanwhile
            return None
        fire = max(latest_fire(schedule.cron, schedule.timezone, t), schedule.next_fire_at or t)
        run = ScheduleRun(id=new_id("run"), schedule_id=schedule.id,
                          tenant_id=schedule.tenant_id, fire_time=fire, status="submitted")
        s.add(run)
        s.flush()  # the idempotency key (schedule, fire time) is unique: a second fire fails
        schedule.last_fire_at = fire
        schedule.next_fire_at = next_fire(schedule.cron, schedule.timezone, fire)
        fired = Fired(schedule.id, run.id, fire, "submitted")
        specs = [job_fields(body, max_attempts) for body in schedule.template["jobs"]]
        try:
            if schedule.template["kind"] == "batch":
                batch, jobs = create_batch(s, schedule.tenant_id, specs, schedule.id)
                run.batch_id = fired.batch_id = batch.id
            else:
                jobs = reserve_jobs(s, schedule.tenant_id, specs)
                run.job_id = jobs[0].id
            fired.job_ids = [j.id for j in jobs]
        except (BudgetExceeded, DatasetPurged, DatasetNotFound) as exc:
            run.status = fired.status = "skipped"
            run.reason_code, run.reason = _reason(exc)
            fired.reason_code = run.reason_code
            enqueue_event(s, schedule.tenant_id, "schedule.skipped", {
                "schedule_id": schedule.id, "run_id": run.id,
                "fire_time": datetime.fromtimestamp(fire, UTC).isoformat(),
                "status": "skipped", "reason_code": run.reason_code, "reason": run.reason})
    return fired


def tick(db: Database, *, now_s: float | None = None,
         dispatch: Callable[[str], None] | None = None, max_attempts: int = 3) -> list[Fired]:
    """Fire every due schedule once (at ``now_s``, default the clock). Safe to run in several
    processes at once. ``dispatch`` is called with each new job's id after its commit."""
    t = now() if now_s is None else now_s
    with db.read() as s:
        due = s.scalars(select(Schedule.id).where(
            Schedule.enabled.is_(True), Schedule.next_fire_at <= t)
            .order_by(Schedule.next_fire_at)).all()
    fired = []
    for schedule_id in due:
        try:
            result = _fire(db, schedule_id, t, max_attempts)
        except IntegrityError:  # another tick recorded this fire time first
            continue
        except Exception:
            log.exception("schedule %s: the tick failed; the next tick tries again", schedule_id)
            continue
        if result is None:
            continue
        log.info("schedule %s fired for %s: %s", schedule_id,
                 datetime.fromtimestamp(result.fire_time, UTC).isoformat(), result.status)
        fired.append(result)
        for job_id in result.job_ids:
            if dispatch is not None:
                dispatch(job_id)
    return fired


def schedule_values(cron: str, tz: str, enabled: bool, at: float) -> dict[str, Any]:
    """``next_fire_at`` for a schedule set up (or switched on, or changed) at ``at``: the next
    window from then, never one in the past."""
    return {"cron": cron, "timezone": tz, "enabled": enabled,
            "next_fire_at": next_fire(cron, tz, at) if enabled else None}
