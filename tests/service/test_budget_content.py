"""The budget follows the table's content within a tenant, and caps delta as well as epsilon."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from service.svc_helpers import ADULT_SAMPLE, Api, Service, add_dataset, unit_database
from synthgen.service.budget import MAX_DEFAULT_DELTA, admit_job, compose_dataset
from synthgen.service.db import Dataset, Job
from synthgen.service.jobs import claim_job, settle


def test_reuploading_the_same_bytes_shares_the_spent_budget(embedded: Service) -> None:
    api = Api(embedded.url, embedded.key("tenant-content"))
    content = ADULT_SAMPLE.read_bytes()
    first = api.upload_bytes(content, budget_epsilon="2")
    job = api.submit(first["id"], epsilon=1.5, epochs=1, batch_size=100, audit=False)
    # The same bytes as a "new" dataset, asking for a larger cap: it joins the first one's.
    again = api.upload_bytes(content, budget_epsilon="10")
    assert again["id"] != first["id"] and again["budget_epsilon"] == 2
    budget = api.http.get(f"/v1/datasets/{again['id']}/budget").json()
    assert budget["shared_with"] == [first["id"]]
    assert budget["remaining_epsilon"] == pytest.approx(0.5)
    over = api.http.post("/v1/jobs", json={"dataset_id": again["id"], "epsilon": 1.0})
    assert over.status_code == 409 and over.json()["code"] == "budget-exceeded"
    detail = over.json()["detail"]
    assert "upload" not in detail.replace("every upload of the same content", "")
    assert "larger budget" not in detail
    assert api.http.post("/v1/jobs", json={"dataset_id": again["id"],
                                           "epsilon": 0.4}).status_code == 202
    # Other bytes (one row fewer) are another table, with a budget of its own.
    other = api.upload_bytes(content.rsplit(b"\n", 2)[0] + b"\n", budget_epsilon="2")
    assert api.http.get(f"/v1/datasets/{other['id']}/budget").json()["shared_with"] == []
    for j in api.http.get("/v1/jobs", params={"limit": 100}).json()["items"]:
        api.http.post(f"/v1/jobs/{j['id']}/cancel")
    assert api.wait(job["id"])["status"] in ("succeeded", "cancelled")


def test_cumulative_delta_is_capped_at_admission(embedded: Service) -> None:
    api = Api(embedded.url, embedded.key("tenant-delta"))
    dataset = api.upload(budget_delta="3e-6")
    ok = api.http.post("/v1/jobs", json={"dataset_id": dataset["id"], "epsilon": 0.1,
                                         "delta": 2e-6})
    assert ok.status_code == 202 and ok.json()["delta"] == 2e-6
    # The default delta (1e-6 here) is fixed and reserved at admission, not left open.
    default = api.http.post("/v1/jobs", json={"dataset_id": dataset["id"], "epsilon": 0.1})
    assert default.status_code == 202 and default.json()["delta"] == 1e-6
    over = api.http.post("/v1/jobs", json={"dataset_id": dataset["id"], "epsilon": 0.1})
    assert over.status_code == 409, over.text
    assert over.json()["code"] == "budget-exceeded" and over.json()["cap_delta"] == 3e-6
    for r in (ok, default):
        api.http.post(f"/v1/jobs/{r.json()['id']}/cancel")


def test_an_epsilon_below_the_minimum_is_422_and_reserves_nothing(embedded: Service) -> None:
    api = Api(embedded.url, embedded.key("tenant-min"))
    dataset = api.upload()
    for body in ({"epsilon": 0.01}, {"epsilon": 0.3, "accountant": "rdp"}):
        r = api.http.post("/v1/jobs", json={"dataset_id": dataset["id"], **body})
        assert r.status_code == 422 and r.json()["code"] == "validation-error", r.text
        assert "minimum" in r.json()["detail"] or "greater than" in r.json()["detail"]
    budget = api.http.get(f"/v1/datasets/{dataset['id']}/budget").json()
    assert budget["reserved_epsilon"] == 0 and budget["jobs"] == []


def test_a_job_charged_without_a_ledger_adds_its_delta(tmp_path: Path) -> None:
    db = unit_database(tmp_path / "jobs.db")
    add_dataset(db, "ds1", cap=5.0)
    job = admit_job(db, "t1", "ds1", epsilon=1.0, options={}, max_attempts=1)
    assert job is not None and job.delta == 1e-6  # the default, fixed when it was accepted
    claim = claim_job(db, job.id, "w", lease_s=30)
    assert claim is not None
    # A worker lost with nothing to show: charged in full, with no ledger.
    assert settle(db, job.id, "failed", owner="w", ledger=None, charged=1.0, error=("x", "y"))
    compose_dataset(db, "ds1")
    with db.read() as s:
        spent = s.scalars(select(Dataset).where(Dataset.id == "ds1")).one().spent_delta
    assert spent == pytest.approx(1e-6) and spent >= MAX_DEFAULT_DELTA


def test_a_fresh_budget_version_of_known_bytes_is_refused(embedded: Service) -> None:
    api = Api(embedded.url, embedded.key("tenant-fresh"))
    content = ADULT_SAMPLE.read_bytes()
    dataset = api.upload_bytes(content, budget_policy="fresh")
    # "fresh" is for versions holding other people: the same bytes again cannot restart a spend.
    r = api.http.put(f"/v1/datasets/{dataset['id']}/versions",
                     files={"file": ("t.csv", content, "text/csv")})
    assert r.status_code == 409 and r.json()["code"] == "same-content"
    assert api.http.get(f"/v1/datasets/{dataset['id']}").json()["version"] == 1


def test_a_plan_that_leaves_training_nothing_is_422_and_reserves_nothing(
    embedded: Service,
) -> None:
    api = Api(embedded.url, embedded.key("tenant-plan"))
    dataset = api.upload()
    # rdp at its minimum with a tiny delta: RDP's floor leaves DP-SGD no budget
    r = api.http.post("/v1/jobs", json={"dataset_id": dataset["id"], "epsilon": 0.5,
                                        "delta": 1e-12, "accountant": "rdp"})
    assert r.status_code == 422 and "leaves DP-SGD nothing" in r.json()["detail"], r.text
    budget = api.http.get(f"/v1/datasets/{dataset['id']}/budget").json()
    assert budget["reserved_epsilon"] == 0 and budget["jobs"] == []


def test_a_worker_refuses_a_plan_before_reading_and_charges_nothing(tmp_path: Path) -> None:
    from synthgen.service.runner import execute_job
    from synthgen.service.settings import Settings

    settings = Settings(data_dir=tmp_path)
    db = unit_database(tmp_path / "synthgen.db")
    add_dataset(db, "ds1", cap=5.0)  # its upload does not exist: a read would fail otherwise
    job = admit_job(db, "t1", "ds1", epsilon=0.5, delta=1e-12, options={"accountant": "rdp"},
                    max_attempts=1)
    assert job is not None
    assert execute_job(job.id, "worker-a", settings) == "failed"
    with db.read() as s:
        done = s.scalars(select(Job).where(Job.id == job.id)).one()
        holder = s.scalars(select(Dataset).where(Dataset.id == "ds1")).one()
    assert done.error_code == "epsilon-too-small", done.error_message
    assert done.charged_epsilon == 0 and done.ledger is None
    compose_dataset(db, "ds1")
    with db.read() as s:
        assert s.scalars(select(Dataset).where(Dataset.id == "ds1")).one().spent_epsilon == 0
    assert holder.spent_epsilon == 0
