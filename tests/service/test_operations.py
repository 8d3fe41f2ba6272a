"""What an operator reads: Prometheus metrics (behind their token) and JSON logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from service.conftest import METRICS
from service.svc_helpers import Api, Service


def _scrape(service: Service, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{service.url}/metrics", headers=headers)


def test_metrics_need_the_operators_token(embedded: Service, tenant_a: Api) -> None:
    for token in (None, "wrong"):
        r = _scrape(embedded, token)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert tenant_a.http.get("/metrics").status_code == 401  # a tenant's key is not enough
    assert "/metrics" not in httpx.get(f"{embedded.url}/openapi.json").json()["paths"]


def test_metrics_report_jobs_durations_budget_and_webhooks(
    embedded: Service, finished_job: dict[str, Any]
) -> None:
    r = _scrape(embedded, METRICS)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(r.text) for s in family.samples}
    jobs = dict(embedded.query("SELECT state, count(*) FROM jobs GROUP BY state"))
    assert samples[("synthgen_jobs", (("state", "succeeded"),))] == jobs["succeeded"] >= 1
    started = embedded.query("SELECT count(*) FROM jobs WHERE started_at IS NOT NULL")[0][0]
    assert samples[("synthgen_job_queue_wait_seconds_count", ())] == started
    assert samples[("synthgen_job_queue_wait_seconds_bucket", (("le", "+Inf"),))] == started
    ended = embedded.query("SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL AND "
                           "started_at IS NOT NULL")[0][0]
    assert samples[("synthgen_job_run_time_seconds_count", ())] == ended >= 1
    charged = embedded.query("SELECT sum(charged_epsilon) FROM jobs WHERE settled")[0][0]
    assert abs(samples[("synthgen_epsilon_charged_total", ())] - charged) < 1e-9
    assert ("synthgen_webhook_events", (("state", "pending"),)) in samples
    assert ("synthgen_webhook_oldest_pending_age_seconds", ()) in samples
    assert ("synthgen_workers_running", ()) in samples


def test_metrics_are_off_without_a_token_and_logs_can_be_json(tmp_path: Path) -> None:
    service = Service(tmp_path / "svc", {"SYNTHGEN_LOG_FORMAT": "json",
                                         "SYNTHGEN_LOCAL_WORKERS": "0"})
    try:
        service.start_api(log_level="info")
        assert _scrape(service, "anything").status_code == 404
        httpx.get(f"{service.url}/healthz")
    finally:
        service.stop()
    lines = [json.loads(line) for line in service.log("api.log").splitlines()
             if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert any("synthgen API ready" in m for m in messages), service.log("api.log")[-2000:]
    assert any("/healthz" in m for m in messages)  # uvicorn's access log, as JSON too
    assert {"time", "level", "logger", "message"} <= set(lines[0])
