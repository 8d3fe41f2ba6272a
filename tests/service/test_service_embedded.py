"""End to end on the embedded engine: real HTTP to ``synthgen serve``, training subprocesses."""

from __future__ import annotations

import csv
import io
import os
import signal
import statistics
import time
from typing import Any

import httpx

from service.svc_helpers import (
    ADULT_SAMPLE,
    LONG_JOB,
    Api,
    Service,
    assert_resumed_once,
    training_child,
)


def test_upload_submit_poll_download_report(tenant_a: Api, finished_job: dict[str, Any]) -> None:
    dataset, job = finished_job["dataset"], finished_job["job"]
    assert dataset["rows"] == 400 and dataset["column_count"] == 15
    kinds = {c["name"]: c["kind"] for c in dataset["columns"]}
    # public kinds at upload: undeclared columns are "auto", released at fit time by DP counts
    assert set(kinds.values()) == {"auto"}

    r = tenant_a.http.get(f"/v1/jobs/{job['id']}/synthetic.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    with open(ADULT_SAMPLE, encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert rows[0] == header
    # as many rows as the DP row count of the 400
    assert len(rows) - 1 == job["output_rows"] and abs(job["output_rows"] - 400) < 120

    report = tenant_a.http.get(f"/v1/jobs/{job['id']}/report").json()
    assert 0 < report["epsilon"] <= 1.0
    assert report["ledger"] and report["ledger"][-1]["mechanism"] == "dp_sgd"
    assert {c["name"]: c["kind"] for c in report["columns"]}["age"] == "integer"
    assert job["epsilon_charged"] == report["epsilon"]
    # The public report holds no section computed on real rows; the owner-only evaluation
    # (on rows held out before training) has its own route, marked owner-only in its keys.
    assert not {"quality", "utility", "audit", "holdout", "evaluation"} & set(report)
    evaluation = tenant_a.http.get(f"/v1/jobs/{job['id']}/evaluation").json()
    assert evaluation["owner_only"] is True and evaluation["audit"]["owner_only"] is True
    assert 0 <= evaluation["audit"]["dcr_share"] <= 1
    assert evaluation["audit"]["holdout_rows"] > 0 and evaluation["holdout"]["rows"] > 0
    assert "not evidence of differential privacy" in evaluation["heuristics"]
    for route in ("report", "evaluation"):
        html = tenant_a.http.get(f"/v1/jobs/{job['id']}/{route}", params={"format": "html"})
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert ("For the data owner only" in html.text) == (route == "evaluation")

    assert report["run"]["input"] == dataset["name"] and report["run"]["job_id"] == job["id"]
    page = tenant_a.http.get(f"/v1/jobs/{job['id']}/report", params={"format": "html"}).text
    assert dataset["name"] in page and job["id"] in page  # the header says which

    budget = tenant_a.http.get(f"/v1/datasets/{dataset['id']}/budget").json()
    assert abs(budget["spent_epsilon"] - report["epsilon"]) < 1e-9
    # One delta everywhere: the job's (default, not asked), the report's, the budget's.
    assert job["delta"] == report["delta"] == budget["spent_delta"] > 0
    assert budget["reserved_epsilon"] == 0
    assert [j["job_id"] for j in budget["jobs"]] == [job["id"]]


def test_raw_upload_deleted_after_last_job_when_not_retained(
    embedded: Service, tenant_a: Api, finished_job: dict[str, Any]
) -> None:
    dataset = finished_job["dataset"]
    raw = ADULT_SAMPLE.read_bytes()
    deadline = time.monotonic() + 20  # the worker deletes it just after settling the job
    while tenant_a.http.get(f"/v1/datasets/{dataset['id']}").json()["upload_retained"]:
        assert time.monotonic() < deadline, "the upload was not deleted"
        time.sleep(0.2)
    stored = [p for p in (embedded.data_dir / "objects").rglob("*") if p.is_file()
              and ("/datasets/" not in p.as_posix() or dataset["id"] in p.as_posix())]
    assert stored, "the job's outputs should be stored"  # (other datasets' uploads aside)
    assert not any(p.read_bytes() == raw for p in stored), "the raw upload is still stored"
    assert not list((embedded.data_dir / "objects").rglob(f"datasets/{dataset['id']}/*"))
    r = tenant_a.http.post("/v1/jobs", json={"dataset_id": dataset["id"], "epsilon": 0.5})
    assert r.status_code == 410 and r.json()["code"] == "dataset-purged"


def test_list_jobs_pages_with_a_cursor(tenant_b: Api) -> None:
    dataset = tenant_b.upload(budget_epsilon="5")
    ids = [tenant_b.submit(dataset["id"], epsilon=0.5, epochs=1)["id"] for _ in range(3)]
    for job_id in ids:  # cancelled while queued: nothing runs, nothing is charged
        tenant_b.http.post(f"/v1/jobs/{job_id}/cancel")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = tenant_b.http.get("/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[:3] == ids[::-1]
    assert len(seen) == len(set(seen))


def test_idempotency_key_returns_the_first_job(tenant_b: Api) -> None:
    dataset = tenant_b.upload(budget_epsilon="1")
    body = {"dataset_id": dataset["id"], "epsilon": 1.0, "epochs": 1}
    headers = {"Idempotency-Key": "nightly-2026-01-01"}
    first = tenant_b.http.post("/v1/jobs", json=body, headers=headers)
    again = tenant_b.http.post("/v1/jobs", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]  # and the cap (1) was reserved only once
    other = tenant_b.http.post("/v1/jobs", json={**body, "epsilon": 0.5}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency-key-reused"
    tenant_b.http.post(f"/v1/jobs/{first.json()['id']}/cancel")


def test_exactly_the_cap_is_admitted_under_concurrent_submissions(tenant_b: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    dataset = tenant_b.upload(budget_epsilon="5")
    url, headers = str(tenant_b.http.base_url), dict(tenant_b.http.headers)

    def submit(_: int) -> httpx.Response:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            return client.post("/v1/jobs", json={"dataset_id": dataset["id"], "epsilon": 1.0})

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(submit, range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * 5 + [409] * 15
    problem = next(r for r in responses if r.status_code == 409)
    assert problem.headers["content-type"] == "application/problem+json"
    assert problem.json()["code"] == "budget-exceeded"
    budget = tenant_b.http.get(f"/v1/datasets/{dataset['id']}/budget").json()
    assert budget["reserved_epsilon"] + budget["spent_epsilon"] <= 5.0 + 1e-9
    for r in responses:
        if r.status_code == 202:
            tenant_b.http.post(f"/v1/jobs/{r.json()['id']}/cancel")


def test_killed_training_process_resumes_from_checkpoint(embedded: Service, tenant_a: Api) -> None:
    dataset = tenant_a.upload()
    job = tenant_a.submit(dataset["id"], **LONG_JOB)
    pattern = f"tenants/*/jobs/{job['id']}/checkpoint.pt"
    objects = embedded.data_dir / "objects"
    running = tenant_a.wait(job["id"], lambda j: any(objects.glob(pattern)))
    assert running["attempt"] == 1 and running["status"] == "running"
    pid = training_child(embedded)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    assert_resumed_once(embedded, tenant_a, job, dataset)


def test_api_stays_responsive_and_cancel_keeps_spent_budget(tenant_a: Api) -> None:
    dataset = tenant_a.upload()
    job = tenant_a.submit(dataset["id"], **{**LONG_JOB, "epochs": 120})
    tenant_a.wait(job["id"], lambda j: j["progress"]["step"] >= 10)
    latencies = []
    for _ in range(40):
        t0 = time.perf_counter()
        assert tenant_a.http.get(f"/v1/jobs/{job['id']}").status_code == 200
        latencies.append(time.perf_counter() - t0)
    assert tenant_a.job(job["id"])["status"] == "running"
    assert statistics.median(latencies) < 0.1 and max(latencies) < 1.0, latencies

    r = tenant_a.http.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202
    done = tenant_a.wait(job["id"])
    assert done["status"] == "cancelled"
    report = tenant_a.http.get(f"/v1/jobs/{job['id']}/report").json()
    assert report["completed"] is False
    assert 0 < done["epsilon_charged"] == report["epsilon"] < job["epsilon"]
    budget = tenant_a.http.get(f"/v1/datasets/{dataset['id']}/budget").json()
    assert abs(budget["spent_epsilon"] - report["epsilon"]) < 1e-9
    r = tenant_a.http.get(f"/v1/jobs/{job['id']}/synthetic.csv")
    assert r.status_code == 409 and "was cancelled" in r.json()["detail"]
    assert "exists once" not in r.json()["detail"]  # it never will
