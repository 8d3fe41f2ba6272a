"""A dataset upload reads semicolons, Latin-1 and decimal commas; the stored upload remembers
how, so the job reads it the same way (and a new version does too)."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from service.svc_helpers import ADULT_SAMPLE, FAST_JOB, Api, Service


def _european(seed: int = 0) -> bytes:
    """The Adult sample as a European spreadsheet writes it: semicolons, Windows-1252, a decimal
    comma (``hours`` as 40,5), an accented city."""
    df = pd.read_csv(ADULT_SAMPLE).sample(frac=1.0, random_state=seed)
    df = df[["age", "workclass", "sex", "hours_per_week", "income"]].copy()
    df["hours_per_week"] = [f"{h},{i % 10}" for i, h in enumerate(df["hours_per_week"])]
    df["city"] = ["Köln" if i % 3 else "Zürich" for i in range(len(df))]
    return df.to_csv(index=False, sep=";").encode("cp1252")


def test_a_european_csv_is_uploaded_read_by_the_job_and_its_versions(
        tenant_a: Api, embedded: Service) -> None:
    raw = _european()
    body = tenant_a.upload_bytes(raw, "eu.csv", decimal=",")
    assert body["csv"] == {"delimiter": ";", "encoding": "cp1252", "decimal": ",",
                           "given": ["decimal"]}
    assert body["column_count"] == 6 and body["rows"] == 400
    # the job reads the stored upload with the same options: the decimal-comma column is a
    # number there (read as text it would be a category of 40,5-like labels, or dropped)
    job = tenant_a.wait(tenant_a.submit(body["id"], **FAST_JOB)["id"])
    assert job["status"] == "succeeded", job
    report = tenant_a.http.get(f"/v1/jobs/{job['id']}/report").json()
    kinds = {c["name"]: c["kind"] for c in report["columns"]}
    assert kinds["hours_per_week"] == "continuous", kinds
    r = tenant_a.http.get(f"/v1/jobs/{job['id']}/synthetic.csv")
    synthetic = pd.read_csv(io.BytesIO(r.content))
    assert pd.api.types.is_float_dtype(synthetic["hours_per_week"])
    assert any("Windows-1252" in w for w in report["warnings"])
    # a new version without the field is read with the dataset's decimal mark
    r = tenant_a.http.put(f"/v1/datasets/{body['id']}/versions",
                          files={"file": ("eu2.csv", _european(1), "text/csv")})
    assert r.status_code == 200, r.text
    assert r.json()["csv"]["decimal"] == "," and r.json()["version"] == 2
    stored = embedded.query("SELECT csv_options FROM dataset_versions WHERE dataset_id = ? "
                            "ORDER BY version", body["id"])
    assert len(stored) == 2 and all('"decimal": ","' in row[0] for row in stored)


def test_bad_csv_options_are_a_422_and_store_nothing(tenant_b: Api, embedded: Service) -> None:
    before = embedded.query("SELECT count(*) FROM datasets")
    for form, said in (({"delimiter": ";;"}, "not one character"),
                       ({"encoding": "klingon"}, "unknown encoding"),
                       ({"decimal": ";"}, "decimal mark")):
        r = tenant_b.http.post("/v1/datasets", data=form,
                               files={"file": ("t.csv", ADULT_SAMPLE.read_bytes(), "text/csv")})
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid-argument" and said in r.json()["detail"]
    parquet = io.BytesIO()
    pd.read_csv(ADULT_SAMPLE).to_parquet(parquet)
    r = tenant_b.http.post("/v1/datasets", data={"delimiter": ";"},
                           files={"file": ("t.parquet", parquet.getvalue())})
    assert r.status_code == 422 and "Parquet" in r.json()["detail"]
    assert embedded.query("SELECT count(*) FROM datasets") == before


def test_a_plain_upload_says_what_was_detected(tenant_b: Api) -> None:
    body: dict[str, Any] = tenant_b.upload_bytes(ADULT_SAMPLE.read_bytes(), "plain.csv")
    assert body["csv"] == {"delimiter": ",", "encoding": "utf-8", "decimal": None, "given": []}
