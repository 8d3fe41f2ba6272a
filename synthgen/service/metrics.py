"""Prometheus metrics of the whole service, read from the database at scrape time.

The database is the source of truth and workers run in other processes (Celery, training
subprocesses), so nothing is counted in memory: each scrape runs a few aggregate queries. The
duration histograms cover every job ever recorded (jobs are never deleted), so they only grow,
as Prometheus expects of a histogram, whichever API replica is scraped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Float, case, cast, func, select

from synthgen.service.db import Database, Job, JobAttempt, WebhookEvent, now

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
QUEUE_WAIT_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
RUN_TIME_BUCKETS = (10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 3 * 3600.0, 6 * 3600.0,
                    24 * 3600.0)


def _histogram(db: Database, name: str, doc: str, duration: Any, where: Any,
               bounds: Sequence[float]) -> HistogramMetricFamily:
    with db.read() as s:
        row = s.execute(select(
            func.count(), func.coalesce(func.sum(cast(duration, Float)), 0.0),
            *[func.coalesce(func.sum(case((duration <= b, 1), else_=0)), 0) for b in bounds],
        ).where(where)).one()
    total, seconds, counts = int(row[0]), float(row[1]), [int(c) for c in row[2:]]
    buckets = [(repr(b), c) for b, c in zip(bounds, counts, strict=True)]
    return HistogramMetricFamily(name, doc, buckets=[*buckets, ("+Inf", total)],
                                 sum_value=seconds, unit="seconds")


class ServiceCollector(Collector):
    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        db, t = self.db, now()
        with db.read() as s:
            by_state = dict(s.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            charged = s.scalar(select(func.coalesce(func.sum(Job.charged_epsilon), 0.0))
                               .where(Job.settled.is_(True)))
            events = dict(s.execute(select(WebhookEvent.state, func.count())
                                    .group_by(WebhookEvent.state)).all())
            oldest = s.scalar(select(func.min(WebhookEvent.created_at))
                              .where(WebhookEvent.state == "pending"))
            beats = s.execute(select(JobAttempt.owner, JobAttempt.heartbeat_at).join(
                Job, (Job.id == JobAttempt.job_id) & (Job.lease_owner == JobAttempt.owner))
                .where(Job.state == "running")).all()
        jobs = GaugeMetricFamily("synthgen_jobs", "Jobs by state.", labels=["state"])
        for state in JOB_STATES:
            jobs.add_metric([state], float(by_state.get(state, 0)))
        yield jobs
        yield _histogram(db, "synthgen_job_queue_wait", "From acceptance to the first claim.",
                         Job.started_at - Job.created_at, Job.started_at.is_not(None),
                         QUEUE_WAIT_BUCKETS)
        yield _histogram(db, "synthgen_job_run_time", "From the first claim to the end, "
                         "retries included.", Job.finished_at - Job.started_at,
                         Job.finished_at.is_not(None) & Job.started_at.is_not(None),
                         RUN_TIME_BUCKETS)
        yield CounterMetricFamily("synthgen_epsilon_charged", "Sum of the epsilon charged "
                                  "to datasets by settled jobs (before composition).",
                                  value=float(charged or 0.0))
        backlog = GaugeMetricFamily("synthgen_webhook_events", "Webhook events by delivery "
                                    "state (pending: the backlog).", labels=["state"])
        for state in ("pending", "delivered", "failed"):
            backlog.add_metric([state], float(events.get(state, 0)))
        yield backlog
        yield GaugeMetricFamily("synthgen_webhook_oldest_pending_age_seconds", "Age of the "
                                "oldest undelivered webhook event (0: none).",
                                value=max(0.0, t - oldest) if oldest else 0.0)
        heartbeat = GaugeMetricFamily("synthgen_worker_heartbeat_age_seconds", "Seconds since "
                                      "each running job's worker last heartbeated its lease.",
                                      labels=["worker"])
        for owner, at in beats:
            heartbeat.add_metric([owner], max(0.0, t - at))
        yield heartbeat
        yield GaugeMetricFamily("synthgen_workers_running", "Workers holding a job's lease.",
                                value=float(len(beats)))
