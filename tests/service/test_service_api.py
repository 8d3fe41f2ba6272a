"""HTTP contract: tenant isolation on every route, bad input, problem+json, OpenAPI fuzzing."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from api.main import create_app
from service.svc_helpers import ADULT_SAMPLE, Api, Service
from synthgen.service.settings import Settings


def _id_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the app that names an object by id: derived from the app's own
    route table (its OpenAPI document), so a new route cannot be left out of the isolation test."""
    app = create_app(Settings(data_dir=Path("unused")))
    return [(method.upper(), path) for path, item in app.openapi()["paths"].items()
            if "{" in path for method in sorted(item)]


ID_ROUTES = _id_routes()


def test_route_table_covers_the_id_routes() -> None:
    paths = {p for _, p in ID_ROUTES}
    assert {"/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/synthetic.csv",
            "/v1/jobs/{job_id}/report", "/v1/jobs/{job_id}/evaluation",
            "/v1/datasets/{dataset_id}",
            "/v1/datasets/{dataset_id}/budget", "/v1/datasets/{dataset_id}/versions",
            "/v1/batches/{batch_id}", "/v1/batches/{batch_id}/download",
            "/v1/schedules/{schedule_id}", "/v1/connections/{connection_id}",
            "/v1/connections/{connection_id}/test"} <= paths


def _connection(api: Api) -> str:
    """A connection of ``api``'s tenant to a loopback port where nothing answers."""
    r = api.http.post("/v1/connections", json={"url": "postgresql://u:pw@127.0.0.1:1/db"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _schedule(api: Api, dataset_id: str) -> str:
    r = api.http.post("/v1/schedules", json={"cron": "0 3 * * *", "enabled": False,
                                             "job": {"dataset_id": dataset_id, "epsilon": 0.1}})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize(("method", "path"), ID_ROUTES, ids=[f"{m} {p}" for m, p in ID_ROUTES])
def test_other_tenant_gets_404_for_every_route(
    tenant_a: Api, tenant_b: Api, finished_job: dict[str, Any],
    finished_batch: dict[str, Any], method: str, path: str
) -> None:
    ids = {"job_id": finished_job["job"]["id"], "dataset_id": finished_job["dataset"]["id"],
           "batch_id": finished_batch["batch"]["id"],
           "schedule_id": _schedule(tenant_a, finished_job["dataset"]["id"]),
           "connection_id": _connection(tenant_a)}
    request: dict[str, Any] = {"json": {}} if method == "PATCH" else {}
    if path.endswith("/versions"):  # a dataset of its own: the owner's request adds a version
        ids["dataset_id"] = tenant_a.upload()["id"]
        request = {"files": {"file": ("v2.csv", ADULT_SAMPLE.read_bytes(), "text/csv")}}
    params = re.findall(r"{(\w+)}", path)
    assert set(params) <= set(ids), f"no test object for {params} in {path}"
    url = path.format(**ids)
    r = tenant_b.http.request(method, url, **request)  # first: it must change nothing
    assert r.status_code == 404, r.text
    owner = tenant_a.http.request(method, url, **request)
    # (the owner's connection test reaches its connection, where nothing answers: 422)
    answered = 422 if path.endswith("/test") else 409
    assert owner.status_code < 400 or owner.status_code == answered, owner.text
    assert r.headers["content-type"] == "application/problem+json"
    assert finished_job["job"]["id"] not in r.text or "there is no" in r.json()["detail"]
    assert tenant_a.http.request("GET", f"/v1/jobs/{ids['job_id']}").json()["status"] == (
        "succeeded")


def test_other_tenant_cannot_submit_against_a_dataset(
    tenant_b: Api, finished_job: dict[str, Any]
) -> None:
    r = tenant_b.http.post("/v1/jobs", json={"dataset_id": finished_job["dataset"]["id"],
                                             "epsilon": 0.1})
    assert r.status_code == 404 and r.json()["code"] == "not-found"
    listed = tenant_b.http.get("/v1/jobs", params={"limit": 100}).json()["items"]
    assert finished_job["job"]["id"] not in {j["id"] for j in listed}


def test_missing_or_unknown_key_is_401(embedded: Service) -> None:
    import httpx

    for headers in ({}, {"Authorization": "Bearer sgk_nope"}, {"Authorization": "Basic eA=="}):
        r = httpx.get(f"{embedded.url}/v1/jobs", headers=headers)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


def _stored(embedded: Service) -> set[Path]:
    return {p for p in (embedded.data_dir / "objects").rglob("*") if p.is_file()}


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def _bad_inputs() -> dict[str, tuple[bytes, int, str]]:
    good = pd.read_csv(ADULT_SAMPLE)
    formula = good.copy()
    formula.loc[3, "occupation"] = "=HYPERLINK(\"http://x\",\"y\")"
    return {
        "malformed": (b"a,b\n1,2\n3,4,5,6\n\"x,7\n" * 30, 422, "malformed-csv"),
        "utf16": (("name,city\n" + "Zoë,Köln\n" * 40).encode("utf-16"), 422,
                  "bad-encoding"),
        "empty": (b"", 422, "empty-table"),
        "header-only": (b"a,b,c\n", 422, "empty-table"),
        "too-few-rows": (b"a,b\n1,2\n3,4\n", 422, "too-few-rows"),
        "formula": (_csv(formula), 422, "formula-cells"),
        "oversized": (b"a,b\n" + b"123456789,abcdefgh\n" * 150_000, 413, "too-large"),
        "not-parquet": (b"PAR1 but not really PAR1", 422, "malformed-parquet"),
        "xlsx": (_xlsx(), 415, "unsupported-format"),
        "json": (json.dumps(good.head(30).to_dict("records")).encode(), 415,
                 "unsupported-format"),
    }


def _xlsx() -> bytes:
    """The container of an Excel workbook (a zip with the workbook's parts)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/workbook.xml", "<workbook/>")
    return out.getvalue()


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_upload_is_a_clear_4xx_and_changes_nothing(
    embedded: Service, tenant_b: Api, case: str
) -> None:
    raw, status, code = _bad_inputs()[case]
    before_files = _stored(embedded)
    before_rows = embedded.query("SELECT count(*) FROM datasets")
    r = tenant_b.http.post("/v1/datasets", files={"file": (f"{case}.csv", io.BytesIO(raw))})
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == code and problem["status"] == status
    assert problem["type"].endswith(code) and len(problem["detail"]) > 20
    if status == 415:  # says what is supported, not "save it as UTF-8"
        assert "CSV" in problem["detail"] and "Parquet" in problem["detail"]
        assert "UTF-8 and upload" not in problem["detail"]
    assert _stored(embedded) == before_files
    assert embedded.query("SELECT count(*) FROM datasets") == before_rows


def test_bad_schema_is_422(tenant_b: Api) -> None:
    with open(ADULT_SAMPLE, "rb") as fh:
        r = tenant_b.http.post("/v1/datasets", files={"file": ("a.csv", fh)},
                               data={"schema": json.dumps({"columns": [{"name": "nope",
                                                                         "kind": "integer"}]})})
    assert r.status_code == 422 and r.json()["code"] == "invalid-schema"


def test_schema_as_a_file_part(tenant_b: Api, tmp_path: Path) -> None:
    """curl -F file=@adult.csv -F schema=@schema.json: the schema comes as a file part."""
    schema = {"columns": [{"name": "sex", "kind": "drop"}]}
    with open(ADULT_SAMPLE, "rb") as fh:
        r = tenant_b.http.post("/v1/datasets", files={
            "file": ("a.csv", fh), "schema": ("schema.json", json.dumps(schema).encode(),
                                              "application/json")})
    assert r.status_code == 201, r.text
    kinds = {c["name"]: c["kind"] for c in r.json()["columns"]}
    assert kinds["sex"] == "drop"  # the declared kind, not the inferred categorical
    with open(ADULT_SAMPLE, "rb") as fh:
        r = tenant_b.http.post("/v1/datasets", files={
            "file": ("a.csv", fh), "schema": ("schema.json", b"{not json")})
    assert r.status_code == 422 and r.json()["code"] == "invalid-schema"


def test_public_schema_and_parquet_upload(tenant_b: Api, tmp_path: Path) -> None:
    parquet = tmp_path / "adult.parquet"
    pd.read_csv(ADULT_SAMPLE).to_parquet(parquet)
    schema = {"columns": [{"name": "sex", "kind": "categorical",
                           "categories": ["Female", "Male"]}]}
    dataset = tenant_b.upload(parquet, schema=json.dumps(schema))
    assert dataset["format"] == "parquet" and dataset["rows"] == 400


def test_framework_errors_are_problem_json(tenant_b: Api) -> None:
    for method, url, status in (("GET", "/v1/nowhere", 404), ("DELETE", "/v1/jobs", 405),
                                ("POST", "/v1/jobs", 422)):
        r = tenant_b.http.request(method, url, content=b"{not json",
                                  headers={"content-type": "application/json"})
        assert r.status_code == status
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == status


def test_no_route_returns_raw_upload_bytes(embedded: Service) -> None:
    import httpx

    spec = httpx.get(f"{embedded.url}/openapi.json").json()
    assert httpx.get(f"{embedded.url}/docs").status_code == 200
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/datasets"):
            continue
        for op in item.values():
            for response in op["responses"].values():
                types = set(response.get("content", {}))
                assert not types & {"text/csv", "application/octet-stream",
                                    "application/vnd.apache.parquet"}, (path, types)


def test_schemathesis_finds_no_server_error_or_schema_violation(
    embedded: Service, tenant_a: Api
) -> None:
    cli = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if cli is None:
        pytest.skip("schemathesis is not installed")
    key = embedded.key("fuzzer")
    result = subprocess.run(
        [cli, "run", f"{embedded.url}/openapi.json", "--header", f"Authorization: Bearer {key}",
         "--checks", "not_a_server_error,status_code_conformance,response_schema_conformance,"
         "content_type_conformance",
         "--max-examples", "30", "--phases", "examples,coverage,fuzzing",
         "--generation-deterministic", "--request-timeout", "30", "--no-color"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
