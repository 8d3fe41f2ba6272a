"""Fixtures of the service tests: the embedded engine's server and tenants (see svc_helpers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from service.svc_helpers import FAST_JOB, Api, Service, wait_batch

METRICS = "metrics-token-of-the-tests"


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The embedded engine (SQLite, local folder, training subprocesses), uploads not retained."""
    service = Service(tmp_path_factory.mktemp("embedded"), {
        "SYNTHGEN_RETAIN_UPLOADS": "false", "SYNTHGEN_METRICS_TOKEN": METRICS,
        # connections on (a test key), to loopback only: the isolation test makes one
        "SYNTHGEN_CONNECTION_KEY": "x5xj2bOaTCGr5wMh6pqmWDm6gCfA6KoNMJ9yS66QkXg=",
        "SYNTHGEN_CONNECTION_ALLOWED_HOSTS": "127.0.0.1"})
    service.start_api()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def tenant_a(embedded: Service) -> Api:
    return Api(embedded.url, embedded.key("tenant-a"))


@pytest.fixture(scope="session")
def tenant_b(embedded: Service) -> Api:
    return Api(embedded.url, embedded.key("tenant-b"))


@pytest.fixture(scope="session")
def finished_job(tenant_a: Api) -> dict[str, Any]:
    """One job run to the end on the embedded engine (shared by several tests)."""
    dataset = tenant_a.upload()
    job = tenant_a.submit(dataset["id"], **FAST_JOB)
    done = tenant_a.wait(job["id"])
    assert done["status"] == "succeeded", done
    return {"dataset": dataset, "job": done}


@pytest.fixture(scope="session")
def finished_batch(tenant_a: Api) -> dict[str, Any]:
    """A batch of three datasets run to the end (shared by the batch and isolation tests)."""
    datasets = [tenant_a.upload() for _ in range(3)]
    r = tenant_a.http.post("/v1/batches", json={"jobs": [
        {"dataset_id": d["id"], **FAST_JOB, "audit": False} for d in datasets]})
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == f"/v1/batches/{r.json()['id']}"
    batch = wait_batch(tenant_a, r.json()["id"])
    return {"datasets": datasets, "batch": batch, "submitted": r.json()}
