"""A job's seed is a secret like a key (it regenerates the job's noise): the job resource, the
job list, a schedule, the report (JSON and HTML), the model and the service's logs never show
it; they say the job was seeded. A schedule, which would repeat it, refuses one."""

from __future__ import annotations

import zipfile
from typing import Any

from service.svc_helpers import FAST_JOB, Api, Service

SEED = 918273645


def test_a_jobs_seed_appears_in_no_resource_report_model_or_log(
    embedded: Service, tenant_a: Api
) -> None:
    dataset = tenant_a.upload()
    job = tenant_a.submit(dataset["id"], **{**FAST_JOB, "seed": SEED, "audit": False})
    assert job["options"]["seeded"] is True and "seed" not in job["options"]
    done = tenant_a.wait(job["id"])
    assert done["status"] == "succeeded", done
    # a schedule would repeat the seed on every run (the same noise twice): refused
    refused = tenant_a.http.post("/v1/schedules", json={
        "cron": "0 3 * * *", "timezone": "UTC",
        "job": {"dataset_id": dataset["id"], **FAST_JOB, "seed": SEED}})
    assert refused.status_code == 422 and "cannot carry a seed" in refused.text, refused.text
    assert str(SEED) not in refused.text
    schedule = tenant_a.http.post("/v1/schedules", json={
        "cron": "0 3 * * *", "timezone": "UTC",
        "job": {"dataset_id": dataset["id"], **{**FAST_JOB, "seed": None}}})
    assert schedule.status_code == 201, schedule.text
    [(tenant, attempt)] = embedded.query(
        "SELECT tenant_id, output_attempt FROM jobs WHERE id = ?", job["id"])
    model = (embedded.data_dir / "objects" / "tenants" / tenant / "jobs" / job["id"]
             / "attempts" / str(attempt) / "model.zip")
    with zipfile.ZipFile(model) as zf:
        members = [zf.read(m) for m in zf.namelist()]
    shown: dict[str, Any] = {
        "job": tenant_a.http.get(f"/v1/jobs/{job['id']}").content,
        "jobs": tenant_a.http.get("/v1/jobs").content,
        "schedule": tenant_a.http.get(f"/v1/schedules/{schedule.json()['id']}").content,
        "report.json": tenant_a.http.get(f"/v1/jobs/{job['id']}/report").content,
        "report.html": tenant_a.http.get(f"/v1/jobs/{job['id']}/report",
                                         params={"format": "html"}).content,
        "model.zip": b"".join(members),
        "logs": "".join(embedded.log(p.name) for p in embedded.data_dir.glob("*.log")).encode(),
    }
    assert [name for name, blob in shown.items() if str(SEED).encode() in blob] == []
    report = tenant_a.http.get(f"/v1/jobs/{job['id']}/report").json()
    assert report["secure_mode"]["seeded"] is True
    assert b"keep the seed secret" in shown["report.html"]
    assert tenant_a.http.delete(f"/v1/schedules/{schedule.json()['id']}").status_code in (
        200, 204)
