"""Attacks found by a black-box run against the service, each reproduced over real HTTP."""

from __future__ import annotations

import base64
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from bombs import parquet_bomb

from service.svc_helpers import (
    ADULT_SAMPLE,
    FAST_JOB,
    LONG_JOB,
    Api,
    Service,
    api_pid,
    rss_mb,
    training_child,
)


def test_parquet_bomb_is_413_and_the_api_stays_small(embedded: Service, tenant_b: Api) -> None:
    raw = parquet_bomb(100_000_000)  # 0.9 MB of zstd: 100 M rows, 1.6 GB decoded
    tenant_b.http.get("/v1/jobs")  # warm up the route's imports before measuring
    before = rss_mb(api_pid(embedded))
    rows = embedded.query("SELECT count(*) FROM datasets")
    r = tenant_b.http.post("/v1/datasets", files={"file": ("bomb.parquet", raw)})
    grown = rss_mb(api_pid(embedded)) - before
    assert r.status_code == 413, r.text[:300]
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "too-large" and "100,000,000 rows" in r.json()["detail"]
    assert grown < 100, f"the API grew by {grown:.0f} MB"
    assert embedded.query("SELECT count(*) FROM datasets") == rows


def test_csv_whose_header_starts_with_par1_is_a_csv(tenant_b: Api) -> None:
    df = pd.read_csv(ADULT_SAMPLE).rename(columns={"age": "PAR1"})
    r = tenant_b.http.post("/v1/datasets", files={
        "file": ("par1.csv", df.to_csv(index=False).encode())})
    assert r.status_code == 201, r.text
    assert r.json()["format"] == "csv" and r.json()["columns"][0]["name"] == "PAR1"


def test_content_length_over_the_cap_is_a_problem_413(embedded: Service) -> None:
    # A raw request announcing a body past the cap: refused before the body is read.
    head: Any
    with socket.create_connection(("127.0.0.1", embedded.port), timeout=10) as s:
        s.sendall(b"POST /v1/datasets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n"
                  b"Content-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 999999999999\r\n\r\n--b\r\n")
        head = b""
        while chunk := s.recv(65536):  # the server closes the connection after answering
            head += chunk
    head = head.decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head[:200]
    assert "content-type: application/problem+json" in head.lower(), head
    assert '"code":"too-large"' in head.replace(" ", "")


def _upload_csv(api: Api, df: pd.DataFrame) -> Any:
    return api.http.post("/v1/datasets", files={"file": ("t.csv", df.to_csv(index=False))})


def test_formula_or_lookalike_in_a_header_cell_is_refused(tenant_b: Api) -> None:
    good = pd.read_csv(ADULT_SAMPLE)
    for name in ('=HYPERLINK("http://x","y")', "\uff1dSUM(A1)", "@cmd", "\u200b=1+1"):
        r = _upload_csv(tenant_b, good.rename(columns={"age": name}))
        assert r.status_code == 422, (name, r.text)
        assert r.json()["code"] == "formula-cells" and "column name" in r.json()["detail"]


def test_fullwidth_formula_in_a_cell_is_refused(tenant_b: Api) -> None:
    bad = pd.read_csv(ADULT_SAMPLE)
    bad.loc[5, "occupation"] = "\uff1dHYPERLINK(1)"
    r = _upload_csv(tenant_b, bad)
    assert r.status_code == 422 and r.json()["code"] == "formula-cells", r.text


def test_cursors_are_opaque_tenant_scoped_and_validated(
    tenant_a: Api, tenant_b: Api, finished_job: dict[str, Any]
) -> None:
    for bad in ("OTk5OTk5OTk5OTk5OTk5OTk5OTk5", base64.urlsafe_b64encode(b"-1").decode(),
                "%%%", "A" * 40):
        r = tenant_a.http.get("/v1/jobs", params={"cursor": bad})
        assert r.status_code == 422 and r.json()["code"] == "invalid-cursor", (bad, r.text)
    tenant_a.submit(tenant_a.upload()["id"], **FAST_JOB, audit=False)  # two jobs at least
    page = tenant_a.http.get("/v1/jobs", params={"limit": 1}).json()
    cursor = page["next_cursor"]
    assert cursor is not None
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert not raw.isdigit(), "the cursor shows the global job sequence"
    r = tenant_b.http.get("/v1/jobs", params={"cursor": cursor})  # another tenant's cursor
    assert r.status_code == 422 and r.json()["code"] == "invalid-cursor"
    nxt = tenant_a.http.get("/v1/jobs", params={"limit": 1, "cursor": cursor})
    assert nxt.status_code == 200 and nxt.json()["items"][0]["id"] != page["items"][0]["id"]


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_training_child_exits_when_the_api_is_killed(tmp_path: Path) -> None:
    service = Service(tmp_path / "svc", {})
    try:
        service.start_api()
        api = Api(service.url, service.key("t"))
        job = api.submit(api.upload()["id"], **LONG_JOB)
        api.wait(job["id"], lambda j: j["progress"]["step"] >= 1)
        child = training_child(service)
        assert child is not None
        os.kill(service.procs[0].pid, signal.SIGKILL)  # no chance to stop its children
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the training process runs on without its supervisor"
    finally:
        service.stop()


def test_readyz_reports_a_corrupt_sqlite_file(tmp_path: Path) -> None:
    service = Service(tmp_path / "svc", {"SYNTHGEN_DB_CHECK_EVERY_S": "0"})
    try:
        service.start_api()
        service.key("t")  # some rows
        assert httpx.get(f"{service.url}/readyz").json()["checks"]["database"] is True
        with sqlite3.connect(service.db_path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with open(service.db_path, "r+b") as fh:  # every page but the first: garbage
            size = fh.seek(0, 2)
            fh.seek(4096)
            fh.write(b"\xa5" * (size - 4096))
        r = httpx.get(f"{service.url}/readyz")
        assert r.status_code == 503 and r.json()["checks"]["database"] is False, r.text
    finally:
        service.stop()
