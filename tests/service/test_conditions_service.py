"""The job API's ``conditions``, ``rebalance`` and ``seed_rows``: checked at submission
(problem+json, nothing admitted), honoured by the worker, carried by batches and schedules, and
seed rows deleted when the job ends."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from service.svc_helpers import FAST_JOB, Api, Service, wait_batch
from synthgen.cli import app

ADULT_SCHEMA = json.dumps({"columns": [
    {"name": "sex", "kind": "categorical", "categories": ["Female", "Male"]},
    {"name": "income", "kind": "categorical", "categories": ["<=50K", ">50K"]},
]})


@pytest.fixture()
def dataset(tenant_a: Api) -> dict[str, Any]:
    # one upload per test: retention may delete an upload once a job on it has ended
    return tenant_a.upload(schema=ADULT_SCHEMA)


def _csv(api: Api, job_id: str) -> pd.DataFrame:
    r = api.http.get(f"/v1/jobs/{job_id}/synthetic.csv")
    assert r.status_code == 200, r.text
    return pd.read_csv(io.StringIO(r.text))


@pytest.mark.parametrize(("body", "code", "words"), [
    ({"conditions": {"sexx": "Female"}}, "unknown-column", "no column 'sexx'"),
    ({"conditions": {"sex": "Femal"}}, "unknown-category", "not a category of sex"),
    ({"conditions": ["age>=60", "age<50"]}, "contradictory-conditions", "contradict"),
    ({"conditions": {"sex": "Female"}, "rebalance": {"sex": {"Male": 0.5}}},
     "contradictory-conditions", "also fixed"),
    ({"rebalance": {"income": {">50K": 1.5}}}, "invalid-condition", "between 0 and 1"),
    ({"seed_rows": [{"sex": "Female", "planet": "Mars"}]}, "unknown-column", "'planet'"),
])
def test_bad_sampling_requests_are_422_problems_and_admit_nothing(
    tenant_a: Api, dataset: dict[str, Any], body: dict[str, Any], code: str, words: str
) -> None:
    before = tenant_a.http.get(f"/v1/datasets/{dataset['id']}/budget").json()
    r = tenant_a.http.post("/v1/jobs", json={"dataset_id": dataset["id"], **FAST_JOB, **body})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code and words in r.json()["detail"]
    assert tenant_a.http.get(f"/v1/datasets/{dataset['id']}/budget").json() == before


def test_a_conditioned_job_honours_and_reports_its_conditions(
    tenant_a: Api, dataset: dict[str, Any]
) -> None:
    job = tenant_a.submit(dataset["id"], **FAST_JOB, rows=300, audit=False,
                          conditions={"sex": "Female", "age": [30, None]})
    assert job["options"]["conditions"] == {"sex": "Female", "age": [30, None]}
    done = tenant_a.wait(job["id"])
    assert done["status"] == "succeeded", done["error"]
    out = _csv(tenant_a, job["id"])
    assert len(out) == 300 and (out["sex"] == "Female").all() and (out["age"] >= 30).all()
    report = tenant_a.http.get(f"/v1/jobs/{job['id']}/report").json()
    assert report["sampling"]["conditions"] == ["sex=Female", "age>=30"]


def test_seed_rows_are_filled_and_deleted_when_the_job_ends(
    tenant_a: Api, dataset: dict[str, Any], embedded: Service
) -> None:
    # ages the small model produces (a bin it released as empty is never generated)
    seeds = [{"sex": "Female", "age": 40}, {"income": ">50K"}, {"age": 25, "sex": "Male"}]
    job = tenant_a.submit(dataset["id"], **FAST_JOB, audit=False, seed_rows=seeds)
    assert job["options"]["seed_rows"] == {"rows": 3, "columns": ["age", "income", "sex"]}
    assert "Female" not in json.dumps(job)  # the rows are not in the job's record
    done = tenant_a.wait(job["id"])
    assert done["status"] == "succeeded", done["error"]
    out = _csv(tenant_a, job["id"])
    assert list(out["sex"].iloc[[0, 2]]) == ["Female", "Male"]
    assert list(out["age"].iloc[[0, 2]]) == [40, 25] and out["income"].iloc[1] == ">50K"
    report = tenant_a.http.get(f"/v1/jobs/{job['id']}/report").json()
    assert "not training data" in report["sampling"]["seed_rows"]["note"]
    evaluation = tenant_a.http.get(f"/v1/jobs/{job['id']}/evaluation").json()
    assert "seed rows" in evaluation["skipped"]["quality"]
    assert not [p for p in embedded.data_dir.rglob("seed_rows.json") if job["id"] in str(p)]


def test_batches_and_schedules_carry_conditions_but_not_seed_rows(
    tenant_a: Api, dataset: dict[str, Any]
) -> None:
    child = {"dataset_id": dataset["id"], **FAST_JOB, "seed": None,  # a schedule has none
             "rows": 50, "audit": False,
             "rebalance": {"income": {">50K": 0.5}}}
    r = tenant_a.http.post("/v1/batches", json={"jobs": [child]})
    assert r.status_code == 202, r.text
    batch = wait_batch(tenant_a, r.json()["id"])
    assert batch["status"] == "succeeded", batch
    job_id = batch["jobs"][0]["id"]
    assert tenant_a.job(job_id)["options"]["rebalance"] == {"income": {">50K": 0.5}}
    assert (_csv(tenant_a, job_id)["income"] == ">50K").sum() == 25
    r = tenant_a.http.post("/v1/schedules", json={"cron": "0 3 * * *", "enabled": False,
                                                  "job": {**child, "conditions": ["sex=Male"]}})
    assert r.status_code == 201, r.text
    assert r.json()["jobs"][0]["conditions"] == ["sex=Male"]
    for path, body in (("/v1/batches", {"jobs": [{**child, "seed_rows": [{"sex": "Male"}]}]}),
                       ("/v1/schedules", {"cron": "@daily", "job": {
                           **child, "seed_rows": [{"sex": "Male"}]}})):
        r = tenant_a.http.post(path, json=body)
        assert r.status_code == 422 and "single job" in r.json()["detail"], r.text
    r = tenant_a.http.post("/v1/batches", json={"jobs": [{**child, "conditions": {"x": 1}}]})
    assert r.status_code == 422 and r.json()["code"] == "unknown-column"


def test_remote_submit_sends_where_rebalance_and_seed_rows(
    embedded: Service, tenant_a: Api, tmp_path: Path
) -> None:
    dataset = tenant_a.upload(schema=ADULT_SCHEMA)  # its own: uploads are not retained here
    env = {"SYNTHGEN_URL": embedded.url, "SYNTHGEN_API_KEY": embedded.key("tenant-a")}
    seeds = tmp_path / "seeds.csv"
    seeds.write_text("sex,age\nFemale,40\n,25\n")
    result = CliRunner().invoke(app, [
        "remote", "jobs", "submit", dataset["id"], "--epsilon", "0.5", "--json",
        "--where", "hours_per_week>=20", "--seed-rows", str(seeds)], env=env)
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["options"]["conditions"] == ["hours_per_week>=20"]
    assert job["options"]["seed_rows"] == {"rows": 2, "columns": ["age", "sex"]}
    tenant_a.http.post(f"/v1/jobs/{job['id']}/cancel")
    result = CliRunner().invoke(app, [
        "remote", "jobs", "submit", dataset["id"], "--epsilon", "0.5",
        "--rebalance", "income=>50K:2"], env=env)
    assert result.exit_code == 5 and "between 0 and 1" in result.output
    result = CliRunner().invoke(app, [
        "remote", "jobs", "submit", dataset["id"], "--epsilon", "0.5", "--where", "sex"], env=env)
    assert result.exit_code == 2 and "COLUMN=VALUE" in result.output
