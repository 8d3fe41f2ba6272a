"""Batches: all-or-nothing reservations, children counted once, one zip of the outputs."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from service.svc_helpers import (
    ADULT_SAMPLE,
    Api,
    add_dataset,
    finish_job,
    unit_database,
    wait_batch,
)
from synthgen.service.batches import create_batch, job_fields
from synthgen.service.budget import BudgetExceeded, DatasetNotFound
from synthgen.service.db import Batch, Database, Job, WebhookEndpoint, WebhookEvent


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = unit_database(tmp_path / "batches.db")
    add_dataset(database, "ds1", cap=1.5)
    add_dataset(database, "ds2", cap=5.0)
    with database.write() as s:
        s.add(WebhookEndpoint(tenant_id="t1", url="https://example.org/h", secret="whsec_x"))
    yield database
    database.dispose()


def _specs(*pairs: tuple[str, float]) -> list[dict[str, Any]]:
    return [job_fields({"dataset_id": d, "epsilon": e}, 3) for d, e in pairs]


def _count(db: Database, model: Any) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_a_child_over_its_cap_refuses_the_whole_batch(db: Database) -> None:
    for specs, error in (
        (_specs(("ds2", 1.0), ("ds1", 1.0), ("ds1", 1.0)), BudgetExceeded),  # 2.0 > 1.5
        (_specs(("ds2", 1.0), ("ds_nope", 0.1)), DatasetNotFound),
    ):
        with pytest.raises(error) as caught, db.write() as s:
            create_batch(s, "t1", specs)
        assert caught.value.args[0] == "ds_nope" or caught.value.dataset_id == "ds1"  # type: ignore[attr-defined]
    assert _count(db, Job) == 0 and _count(db, Batch) == 0
    with db.write() as s:
        batch, jobs = create_batch(s, "t1", _specs(("ds1", 0.75), ("ds1", 0.75), ("ds2", 5.0)))
    assert batch.total == batch.remaining == 3 and {j.batch_id for j in jobs} == {batch.id}


@pytest.mark.parametrize(("outcomes", "status"), [
    (["succeeded", "succeeded", "succeeded"], "succeeded"),
    (["succeeded", "failed", "cancelled"], "partially_failed"),
    (["failed", "cancelled", "failed"], "failed"),
])
def test_the_last_child_ends_the_batch_once(db: Database, outcomes: list[str],
                                            status: str) -> None:
    with db.write() as s:
        batch, jobs = create_batch(s, "t1", _specs(*[("ds2", 0.5)] * len(outcomes)))
    with ThreadPoolExecutor(len(jobs)) as pool:  # children settle concurrently
        list(pool.map(lambda pair: finish_job(db, pair[0].id, pair[1]), zip(jobs, outcomes,
                                                                          strict=True)))
    for job in jobs:  # a duplicate settlement (a redelivered task) changes nothing
        from synthgen.service.jobs import settle

        assert not settle(db, job.id, "succeeded", owner=f"worker-{job.id}", ledger=None,
                          charged=0.0)
    with db.read() as s:
        ended = s.scalars(select(Batch).where(Batch.id == batch.id)).one()
        events = s.scalars(select(WebhookEvent).order_by(WebhookEvent.seq)).all()
    assert ended.state == status and ended.remaining == 0 and ended.finished_at
    assert (ended.succeeded, ended.failed, ended.cancelled) == tuple(
        outcomes.count(o) for o in ("succeeded", "failed", "cancelled"))
    finished = [e for e in events if e.type == "batch.finished"]
    assert len(finished) == 1 and finished[0].payload["data"]["status"] == status
    job_events = sorted(e.type for e in events if e.type.startswith("job."))
    assert job_events == sorted(f"job.{o}" for o in outcomes if o != "cancelled")


def test_a_batch_of_three_datasets_downloads_one_zip(
    tenant_a: Api, finished_batch: dict[str, Any]
) -> None:
    submitted, batch = finished_batch["submitted"], finished_batch["batch"]
    assert submitted["status"] == "queued" and submitted["counts"]["total"] == 3
    assert batch["status"] == "succeeded", batch
    assert batch["counts"] == {"total": 3, "queued": 0, "running": 0, "succeeded": 3,
                               "failed": 0, "cancelled": 0}
    assert {j["dataset_id"] for j in batch["jobs"]} == {d["id"] for d in finished_batch[
        "datasets"]}
    assert all(j["batch_id"] == batch["id"] for j in batch["jobs"])

    with tenant_a.http.stream("GET", batch["links"]["download"]) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        assert "content-length" not in r.headers  # streamed
        raw = r.read()
    archive = zipfile.ZipFile(io.BytesIO(raw))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["batch_id"] == batch["id"] and manifest["status"] == "succeeded"
    header = ADULT_SAMPLE.read_text(encoding="utf-8").splitlines()[0].split(",")
    csvs = [n for n in archive.namelist() if n.endswith("/synthetic.csv")]
    assert len(csvs) == 3
    for entry in manifest["jobs"]:
        job_id = entry["job_id"]
        assert entry["files"] == [f"{job_id}/synthetic.csv", f"{job_id}/report.json"]
        rows = list(csv.reader(io.StringIO(archive.read(f"{job_id}/synthetic.csv").decode())))
        assert rows[0] == header and abs(len(rows) - 401) < 120  # DP row count
        report = json.loads(archive.read(f"{job_id}/report.json"))
        assert 0 < report["epsilon"] <= 1.0 and report["epsilon"] == entry["epsilon_charged"]
        assert not {"quality", "utility", "audit", "holdout", "evaluation"} & set(report)
    assert not [n for n in archive.namelist() if "evaluation" in n]
    # The owner-only evaluations travel only when asked for.
    asked = zipfile.ZipFile(io.BytesIO(tenant_a.http.get(
        batch["links"]["download"], params={"include_evaluation": "true"}).content))
    for entry in json.loads(asked.read("manifest.json"))["jobs"]:
        evaluation = json.loads(asked.read(f"{entry['job_id']}/evaluation.json"))
        assert evaluation["owner_only"] is True and "quality" in evaluation


def test_a_batch_over_a_cap_is_refused_whole_with_a_409_naming_the_dataset(
    tenant_b: Api
) -> None:
    roomy, small = tenant_b.upload(budget_epsilon="5"), tenant_b.upload(budget_epsilon="1")
    before = tenant_b.http.get("/v1/jobs", params={"limit": 100}).json()["items"]
    r = tenant_b.http.post("/v1/batches", json={"jobs": [
        {"dataset_id": roomy["id"], "epsilon": 1.0},
        {"dataset_id": small["id"], "epsilon": 0.6},
        {"dataset_id": small["id"], "epsilon": 0.6}]})
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "budget-exceeded" and problem["dataset_id"] == small["id"]
    assert small["id"] in problem["detail"]
    for dataset in (roomy, small):
        budget = tenant_b.http.get(f"/v1/datasets/{dataset['id']}/budget").json()
        assert budget["reserved_epsilon"] == 0 and budget["jobs"] == []
    assert tenant_b.http.get("/v1/jobs", params={"limit": 100}).json()["items"] == before
    r = tenant_b.http.post("/v1/batches", json={"jobs": [
        {"dataset_id": roomy["id"], "epsilon": 0.5}, {"dataset_id": "ds_nope", "epsilon": 0.5}]})
    assert r.status_code == 404 and "ds_nope" in r.json()["detail"]
    assert tenant_b.http.post("/v1/batches", json={"jobs": []}).status_code == 422


def test_an_unfinished_batch_has_no_zip_yet(tenant_b: Api) -> None:
    dataset = tenant_b.upload()
    batch = tenant_b.http.post("/v1/batches", json={"jobs": [
        {"dataset_id": dataset["id"], "epsilon": 0.5}]}).json()
    r = tenant_b.http.get(f"/v1/batches/{batch['id']}/download")
    assert r.status_code == 409 and r.json()["code"] == "output-not-ready"
    tenant_b.http.post(f"/v1/jobs/{batch['jobs'][0]['id']}/cancel")
    ended = wait_batch(tenant_b, batch["id"])
    assert ended["status"] == "failed" and ended["counts"]["cancelled"] == 1
    archive = zipfile.ZipFile(io.BytesIO(tenant_b.http.get(
        f"/v1/batches/{batch['id']}/download").content))
    assert archive.namelist() == ["manifest.json"]


def test_batch_idempotency_key_returns_the_first_batch(tenant_b: Api) -> None:
    dataset = tenant_b.upload(budget_epsilon="1")
    body = {"jobs": [{"dataset_id": dataset["id"], "epsilon": 1.0, "epochs": 1}]}
    headers = {"Idempotency-Key": "nightly-batch-2026-01-01"}
    first = tenant_b.http.post("/v1/batches", json=body, headers=headers)
    again = tenant_b.http.post("/v1/batches", json=body, headers=headers)
    assert first.status_code == again.status_code == 202, again.text
    assert first.json()["id"] == again.json()["id"]  # and the cap (1) was reserved only once
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [j["id"] for j in again.json()["jobs"]] == [j["id"] for j in first.json()["jobs"]]
    other = tenant_b.http.post("/v1/batches", json={"jobs": [{**body["jobs"][0],  # type: ignore[dict-item]
                                                              "epsilon": 0.5}]}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency-key-reused"
    for job in first.json()["jobs"]:
        tenant_b.http.post(f"/v1/jobs/{job['id']}/cancel")


def test_list_batches_pages_with_a_tenant_scoped_cursor(tenant_a: Api, tenant_b: Api) -> None:
    dataset = tenant_b.upload(budget_epsilon="5")
    ids = []
    for _ in range(3):
        r = tenant_b.http.post("/v1/batches", json={"jobs": [
            {"dataset_id": dataset["id"], "epsilon": 0.5, "epochs": 1}]})
        ids.append(r.json()["id"])
        for job in r.json()["jobs"]:  # cancelled while queued: nothing runs
            tenant_b.http.post(f"/v1/jobs/{job['id']}/cancel")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = tenant_b.http.get("/v1/batches", params=params).json()
        seen += [b["id"] for b in page["items"]]
        assert all(b["counts"]["total"] == 1 for b in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        other = tenant_a.http.get("/v1/batches", params={"cursor": cursor})
        assert other.status_code == 422 and other.json()["code"] == "invalid-cursor"
    assert seen[:3] == ids[::-1] and len(seen) == len(set(seen))
    assert not set(ids) & {b["id"] for b in tenant_a.http.get(
        "/v1/batches", params={"limit": 100}).json()["items"]}
