"""Schedules: cron in a time zone, the tick's exactly-once firing (two real processes racing on
one database, a simulated clock), missed windows, skipped runs, dataset versions."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import select, update

from service.svc_helpers import (
    ADULT_SAMPLE,
    FAST_JOB,
    ROOT,
    Api,
    Service,
    add_dataset,
    finish_job,
    unit_database,
)
from synthgen.service.db import (
    Batch,
    Database,
    Dataset,
    Job,
    Schedule,
    ScheduleRun,
    WebhookEndpoint,
    WebhookEvent,
)
from synthgen.service.schedules import (
    InvalidSchedule,
    check_cron,
    latest_fire,
    next_fire,
    schedule_values,
    tick,
)
from synthgen.service.versions import add_version, job_dataset

PARIS = ZoneInfo("Europe/Paris")
T0 = 1_800_000_000 - 1_800_000_000 % 60 + 5  # 5 s past a minute (UTC)


def _local(t: float) -> str:
    return datetime.fromtimestamp(t, PARIS).strftime("%m-%d %H:%M%z")


def _fires(expr: str, start: datetime, n: int) -> list[str]:
    t, out = start.timestamp(), []
    for _ in range(n):
        t = next_fire(expr, "Europe/Paris", t)
        out.append(_local(t))
    return out


def test_fire_times_follow_the_time_zone_across_daylight_saving() -> None:
    # Spring forward (2026-03-29): 02:30 does not exist that night; it fires at 03:00.
    assert _fires("30 2 * * *", datetime(2026, 3, 28, 12, tzinfo=PARIS), 3) == [
        "03-29 03:00+0200", "03-30 02:30+0200", "03-31 02:30+0200"]
    # Fall back (2026-10-25): a fixed-hour expression fires once, not in both passes...
    assert _fires("30 2 * * *", datetime(2026, 10, 24, 12, tzinfo=PARIS), 2) == [
        "10-25 02:30+0200", "10-26 02:30+0100"]
    # ... while an every-30-minutes one keeps firing through the repeated hour.
    assert _fires("*/30 * * * *", datetime(2026, 10, 25, 1, 50, tzinfo=PARIS), 5) == [
        "10-25 02:00+0200", "10-25 02:30+0200", "10-25 02:00+0100", "10-25 02:30+0100",
        "10-25 03:00+0100"]
    assert latest_fire("* * * * *", "UTC", T0 - 5) == T0 - 5  # on the boundary: itself
    assert latest_fire("* * * * *", "UTC", T0 + 54.9) == T0 - 5


@pytest.mark.parametrize(("expr", "tz"), [
    ("* * * *", "UTC"), ("61 * * * *", "UTC"), ("0 0 30 2 *", "UTC"), ("a b c d e", "UTC"),
    ("* * * * * *", "UTC"), ("0 3 * * *", "Mars/Olympus"), ("0 3 * * *", "../etc/passwd"),
])
def test_an_unusable_cron_or_time_zone_is_refused(expr: str, tz: str) -> None:
    with pytest.raises(InvalidSchedule):
        check_cron(expr, tz)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = unit_database(tmp_path / "schedules.db")
    add_dataset(database, "ds1", cap=1.5)
    yield database
    database.dispose()


def _schedule(db: Database, cron: str = "* * * * *", epsilon: float = 1.0,
              dataset_id: str = "ds1", at: float = T0, enabled: bool = True) -> str:
    schedule = Schedule(id=f"sch{int(at)}{dataset_id}", tenant_id="t1", name=None,
                        template={"kind": "job", "jobs": [{"dataset_id": dataset_id,
                                                           "epsilon": epsilon}]},
                        **schedule_values(cron, "UTC", enabled, at))
    with db.write() as s:
        s.add(schedule)
    return schedule.id


def _runs(db: Database, schedule_id: str) -> list[ScheduleRun]:
    with db.read() as s:
        return list(s.scalars(select(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id)
                              .order_by(ScheduleRun.fire_time)).all())


def test_a_missed_window_fires_once_for_the_latest_fire_time(db: Database) -> None:
    schedule_id = _schedule(db, epsilon=0.5)
    late = T0 + 10 * 60 + 30  # the tick was down for ten windows
    fired = tick(db, now_s=late)
    assert [f.fire_time for f in fired] == [T0 - 5 + 600]
    assert tick(db, now_s=late) == [] and tick(db, now_s=late + 20) == []
    assert [f.fire_time for f in tick(db, now_s=late + 30)] == [T0 - 5 + 660]
    runs = _runs(db, schedule_id)
    assert [(r.fire_time, r.status) for r in runs] == [(T0 + 595, "submitted"),
                                                       (T0 + 655, "submitted")]


def test_a_restarted_tick_never_fires_a_window_twice(db: Database) -> None:
    """The (schedule, fire time) key holds even when the schedule row says otherwise."""
    schedule_id = _schedule(db, epsilon=0.1)
    assert len(tick(db, now_s=T0 + 60)) == 1
    with db.write() as s:  # as if the advance of next_fire_at had been lost
        s.execute(update(Schedule).where(Schedule.id == schedule_id)
                  .values(next_fire_at=T0 + 55))
    assert tick(db, now_s=T0 + 60) == []
    assert len(_runs(db, schedule_id)) == 1
    with db.read() as s:
        assert len(s.scalars(select(Job)).all()) == 1


def test_a_batch_template_fires_one_batch_per_window(db: Database) -> None:
    add_dataset(db, "ds2", cap=5.0)
    with db.write() as s:
        s.add(Schedule(id="sch_batch", tenant_id="t1", name="nightly", template={
            "kind": "batch", "jobs": [{"dataset_id": "ds1", "epsilon": 0.5},
                                      {"dataset_id": "ds2", "epsilon": 0.5, "epochs": 1}]},
            **schedule_values("0 2 * * *", "Europe/Paris", True, T0)))
    fired = tick(db, now_s=T0 + 86_400)
    assert len(fired) == 1 and fired[0].batch_id and len(fired[0].job_ids) == 2
    with db.read() as s:
        jobs = s.scalars(select(Job).order_by(Job.seq)).all()
        batch = s.scalars(select(Batch)).one()
    assert batch.schedule_id == "sch_batch" and batch.total == 2
    assert [j.batch_id for j in jobs] == [batch.id] * 2 and jobs[1].options == {"epochs": 1}
    local = datetime.fromtimestamp(fired[0].fire_time, PARIS)
    assert (local.hour, local.minute) == (2, 0)


def test_a_disabled_schedule_does_not_fire(db: Database) -> None:
    _schedule(db, enabled=False)
    assert tick(db, now_s=T0 + 3600) == []


def test_a_run_over_the_cap_is_skipped_with_a_reason_and_a_webhook(db: Database) -> None:
    with db.write() as s:
        s.add(WebhookEndpoint(tenant_id="t1", url="https://example.org/hook", secret="whsec_x"))
    schedule_id = _schedule(db, epsilon=1.0)  # cap 1.5: the second run would exceed it
    statuses = [f.status for t in (60, 120, 180) for f in tick(db, now_s=T0 + t)]
    assert statuses == ["submitted", "skipped", "skipped"]  # skipped, not retried forever
    runs = _runs(db, schedule_id)
    assert [r.reason_code for r in runs] == [None, "budget-exceeded", "budget-exceeded"]
    assert "ds1" in (runs[1].reason or "")
    with db.read() as s:
        events = s.scalars(select(WebhookEvent).order_by(WebhookEvent.seq)).all()
        schedule = s.scalars(select(Schedule)).one()
    assert [e.type for e in events] == ["schedule.skipped"] * 2
    data = events[0].payload["data"]
    assert data["schedule_id"] == schedule_id and data["run_id"] == runs[1].id
    assert data["reason_code"] == "budget-exceeded"
    assert schedule.next_fire_at == T0 + 235


@pytest.mark.parametrize("policy", ["shared", "fresh"])
def test_a_new_version_is_read_with_the_dataset_budget_policy(
    tmp_path: Path, policy: str
) -> None:
    db = unit_database(tmp_path / "versions.db")
    add_dataset(db, "ds1", cap=1.0, policy=policy)
    schedule_id = _schedule(db, epsilon=1.0)
    first = tick(db, now_s=T0 + 60)[0].job_ids[0]
    finish_job(db, first, "succeeded", charged=1.0)  # version 1's people spent the cap
    with db.write() as s:
        dataset = s.scalars(select(Dataset)).one()
        add_version(s, dataset, {"name": "v2.csv", "format": "csv", "size_bytes": 2,
                                 "sha256": "1" * 64, "rows": 300, "columns": [],
                                 "public_schema": None, "storage_key": "k/ds1-v2",
                                 "csv_options": None})
    fired = tick(db, now_s=T0 + 120)[0]
    if policy == "shared":  # the same people: the spent cap holds across versions
        assert fired.status == "skipped" and fired.reason_code == "budget-exceeded"
    else:  # disjoint people: version 2 has its own cap
        assert fired.status == "submitted"
        with db.read() as s:
            job = s.scalars(select(Job).where(Job.id == fired.job_ids[0])).one()
            assert job.dataset_version == 2
            assert job_dataset(s, job).storage_key == "k/ds1-v2"
            old = s.scalars(select(Job).where(Job.id == first)).one()
            assert job_dataset(s, old).storage_key == "k/ds1" and job_dataset(s, old).rows == 100
    assert len(_runs(db, schedule_id)) == 2
    db.dispose()


# --- two real tick processes racing on the service's database -----------------------------

RACER = """
import json, sys, time
from pathlib import Path
from synthgen.service.db import Database
from synthgen.service.schedules import tick

url, folder, name, start, end = sys.argv[1:6]
db = Database(url)
Path(folder, name + ".ready").touch()
while not Path(folder, "go").exists():
    time.sleep(0.01)
fired = []
for t in range(int(start), int(end) + 1):  # a simulated clock: one tick per simulated second
    fired += [f.run_id for f in tick(db, now_s=float(t))]
    time.sleep(0.003)
print(json.dumps(fired))
"""


def _race(service: Service, folder: Path, start: float, end: float) -> list[list[str]]:
    url = f"sqlite:///{service.db_path}"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, url, str(folder), name,
                               str(int(start)), str(int(end))], cwd=ROOT, env=service.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    try:
        deadline = time.monotonic() + 90
        while not all((folder / f"{n}.ready").exists() for n in "ab"):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), (
                [p.communicate() for p in procs if p.poll() is not None])
            time.sleep(0.05)
        (folder / "go").touch()  # both start ticking at once
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outputs]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def test_two_tick_processes_fire_each_minute_once_on_the_latest_version(
    embedded: Service, tmp_path: Path
) -> None:
    api = Api(embedded.url, embedded.key("scheduler"))
    dataset = api.upload(budget_epsilon="5")
    newer = tmp_path / "adult_v2.csv"
    pd.read_csv(ADULT_SAMPLE).head(300).to_csv(newer, index=False)
    with open(newer, "rb") as fh:
        r = api.http.put(f"/v1/datasets/{dataset['id']}/versions",
                         files={"file": ("adult_v2.csv", fh, "text/csv")})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["rows"] == 300
    created = api.http.post("/v1/schedules", json={
        "name": "every minute", "cron": "* * * * *", "timezone": "Europe/Paris",
        # a schedule carries no seed (each run draws fresh noise)
        "job": {"dataset_id": dataset["id"], **FAST_JOB, "seed": None}})
    assert created.status_code == 201, created.text
    schedule = created.json()
    first = datetime.fromisoformat(schedule["next_fire_at"]).timestamp()
    expected = [first, first + 60, first + 120]

    fired = _race(embedded, tmp_path, first - 30, first + 150)  # three simulated minutes
    assert api.http.patch(f"/v1/schedules/{schedule['id']}",
                          json={"enabled": False}).json()["next_fire_at"] is None
    runs = embedded.query("SELECT id, fire_time, status, job_id FROM schedule_runs WHERE "
                          "schedule_id = ? ORDER BY fire_time", schedule["id"])
    assert [r[1] for r in runs] == expected  # every minute, exactly once
    assert all(r[2] == "submitted" for r in runs)
    assert not set(fired[0]) & set(fired[1])  # no run claimed by both processes
    assert set(fired[0]) | set(fired[1]) <= {r[0] for r in runs}
    listed = api.http.get(f"/v1/schedules/{schedule['id']}").json()["recent_runs"]
    assert [r["job_id"] for r in listed] == [r[3] for r in runs][::-1]

    for _run_id, _t, _status, job_id in runs[1:]:  # queued behind the first: not trained
        assert api.http.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    job = api.wait(runs[0][3])  # a real worker runs the first, on version 2
    assert job["status"] == "succeeded", job
    # as many rows as the DP row count of the version's 300
    assert job["dataset_version"] == 2 and abs(job["output_rows"] - 300) < 120


def test_schedule_routes_validate_and_list(embedded: Service) -> None:
    api = Api(embedded.url, embedded.key("scheduler"))
    dataset = api.upload()
    job = {"dataset_id": dataset["id"], "epsilon": 0.5}
    bad: list[tuple[dict[str, Any], str]] = [
        ({"cron": "every day", "job": job}, "invalid-schedule"),
        ({"cron": "0 3 * * *", "timezone": "Nowhere/City", "job": job}, "invalid-schedule"),
        ({"cron": "0 3 * * *"}, "validation-error"),
        ({"cron": "0 3 * * *", "job": job, "batch": {"jobs": [job]}}, "validation-error"),
    ]
    for body, code in bad:
        r = api.http.post("/v1/schedules", json=body)
        assert r.status_code == 422 and r.json()["code"] == code, r.text
    r = api.http.post("/v1/schedules", json={"cron": "0 3 * * *", "job": {
        "dataset_id": "ds_nope", "epsilon": 0.5}})
    assert r.status_code == 404
    created = api.http.post("/v1/schedules", json={
        "cron": "0 3 * * *", "timezone": "Europe/Paris", "batch": {"jobs": [job, job]}}).json()
    assert created["kind"] == "batch" and len(created["jobs"]) == 2
    local = datetime.fromisoformat(created["next_fire_at"]).astimezone(PARIS)
    assert (local.hour, local.minute) == (3, 0)
    changed = api.http.patch(f"/v1/schedules/{created['id']}", json={"cron": "15 4 * * 1"})
    assert changed.status_code == 200 and changed.json()["cron"] == "15 4 * * 1"
    items = api.http.get("/v1/schedules").json()["items"]
    assert created["id"] in {s["id"] for s in items}
    assert api.http.delete(f"/v1/schedules/{created['id']}").status_code == 204
    assert api.http.get(f"/v1/schedules/{created['id']}").status_code == 404
