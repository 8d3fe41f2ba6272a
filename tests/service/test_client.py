"""The Python client and ``synthgen remote``: typed errors, downloads, and exit codes that a
cron script can trust (the ``wait`` ones from a real subprocess)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from service.svc_helpers import ADULT_SAMPLE, ROOT, Api, Service, free_port
from synthgen.cli import app
from synthgen.cli.remote import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_HTTP,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from synthgen.client import ApiError, Client, WaitTimeout
from synthgen.errors import SynthgenWarning


@pytest.fixture(scope="module")
def key(embedded: Service) -> str:
    return embedded.key("client")


def _remote(embedded: Service, key: str, *args: str) -> subprocess.Popen[str]:
    """``synthgen remote ARGS`` as a real process (what a cron script runs)."""
    env = {**embedded.env, "SYNTHGEN_URL": embedded.url, "SYNTHGEN_API_KEY": key}
    return subprocess.Popen([sys.executable, "-m", "synthgen", "remote", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _invoke(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, ["remote", *args], env=env)


def test_client_round_trip_and_typed_errors(embedded: Service, tenant_a: Api,
                                            finished_job: dict[str, Any],
                                            tmp_path: Path) -> None:
    own_key = tenant_a.http.headers["Authorization"].removeprefix("Bearer ")
    with Client(embedded.url, own_key) as client:
        with pytest.warns(SynthgenWarning) as caught:
            done = client.wait_job(finished_job["job"]["id"], poll_s=0.3)
        assert done["status"] == "succeeded"
        # what training decided about the 400 rows (no schema): on the job, and issued as the
        # Python warnings Synthesizer.fit issues
        told = done["warnings"]
        assert told and [str(w.message) for w in caught] == [w["message"] for w in told]
        assert [w["message"] for w in told] == client.get_report(done["id"])["warnings"]
        folded = [w for w in told if w["code"] == "values-folded-into-other"]
        assert folded and all(0.2 < w["figure"] <= 1 and w["column"] for w in folded)
        out = client.download_synthetic(done["id"], tmp_path / "synthetic.csv")
        assert abs(len(out.read_text().splitlines()) - 401) < 120  # DP row count
        assert client.get_report(done["id"])["epsilon"] <= 1.0
        assert client.get_evaluation(done["id"])["owner_only"] is True
        # Bytes of its own (the budget follows the content: the tenant's other uploads of the
        # sample must not share this dataset's cap).
        header, *rows = ADULT_SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
        own = tmp_path / "adult_reversed.csv"
        own.write_text("".join([header, *rows[::-1]]), encoding="utf-8")
        dataset = client.upload_dataset(own, budget_epsilon=1.5)
        assert dataset["rows"] == 400 and dataset["budget_policy"] == "shared"
        with pytest.raises(ApiError) as missing:
            client.get_job("job_nope")
        assert missing.value.status == 404 and missing.value.code == "not-found"
        job = client.submit_job(dataset["id"], 1.0, epochs=1, idempotency_key="once")
        assert client.submit_job(dataset["id"], 1.0, epochs=1,
                                 idempotency_key="once")["id"] == job["id"]
        with pytest.raises(ApiError) as over:
            client.submit_job(dataset["id"], 1.0)
        assert over.value.status == 409 and over.value.code == "budget-exceeded"
        assert over.value.problem["dataset_id"] == dataset["id"]
        with pytest.raises(WaitTimeout):
            client.wait_job(job["id"], timeout=0.01, poll_s=0.01)
        with pytest.raises(ApiError) as not_ready:
            client.download_synthetic(job["id"], tmp_path / "early.csv")
        assert not_ready.value.code == "output-not-ready"
        assert not (tmp_path / "early.csv").exists()
        assert client.cancel_job(job["id"])["status"] in ("cancelled", "running")
        schedule = client.create_schedule("0 2 * * *", timezone="Europe/Paris",
                                          job={"dataset_id": dataset["id"], "epsilon": 0.1},
                                          enabled=False)
        assert client.update_schedule(schedule["id"], enabled=True)["next_fire_at"]
        assert schedule["id"] in {s["id"] for s in client.list_schedules()}
        client.delete_schedule(schedule["id"])


def test_remote_jobs_wait_exit_codes(embedded: Service, key: str, tmp_path: Path) -> None:
    env = {"SYNTHGEN_URL": embedded.url, "SYNTHGEN_API_KEY": key}
    uploaded = _invoke(env, "datasets", "upload", str(ADULT_SAMPLE), "--budget-epsilon", "3")
    assert uploaded.exit_code == EXIT_OK, uploaded.output
    dataset_id = uploaded.stdout.strip().splitlines()[-1]
    submitted = _invoke(env, "jobs", "submit", dataset_id, "--epsilon", "1", "--epochs", "1",
                        "--batch-size", "100", "--seed", "7")
    assert submitted.exit_code == EXIT_OK, submitted.output
    job_id = submitted.stdout.strip()
    # A job that fails at once (an epsilon below the minimum is now refused at submission).
    failing = Client(embedded.url, key).submit_job(dataset_id, 0.1,
                                                   target="no-such-column")["id"]
    # Two more while the dataset's upload is kept (the fixture's server deletes it after the
    # last job): one cancelled, one still queued when its wait times out.
    cancelled_job, queued = (_invoke(env, "jobs", "submit", dataset_id, "--epsilon", "0.5")
                             .stdout.strip() for _ in range(2))
    Client(embedded.url, key).cancel_job(cancelled_job)
    assert _invoke(env, "jobs", "wait", cancelled_job, "--quiet").exit_code == EXIT_CANCELLED
    assert _invoke(env, "jobs", "wait", queued, "--timeout", "0.01", "--quiet",
                   "--poll", "0.01").exit_code == EXIT_TIMEOUT
    Client(embedded.url, key).cancel_job(queued)

    waits = [_remote(embedded, key, "jobs", "wait", job_id, "--poll", "0.5"),
             _remote(embedded, key, "jobs", "wait", failing, "--poll", "0.5", "--quiet")]
    (ok_out, ok_err), (_, failed_err) = (p.communicate(timeout=240) for p in waits)
    assert waits[0].returncode == EXIT_OK, ok_err[-3000:]
    assert ok_out.strip() == "succeeded" and "epsilon" in ok_err  # the progress line
    # what training decided about the data, one line each, as `synthgen run` prints them
    assert re.search(r"^warning: column '[\w-]+': \d+% of its values fold into", ok_err, re.M)
    assert waits[1].returncode == EXIT_FAILED, failed_err[-3000:]
    assert "training-failed" in failed_err

    status = _invoke(env, "jobs", "status", job_id, "--json")
    assert status.exit_code == EXIT_OK and json.loads(status.stdout)["status"] == "succeeded"
    out = tmp_path / "out.csv"
    got = _invoke(env, "jobs", "download", job_id, "-o", str(out), "--report",
                  str(tmp_path / "report.json"))
    assert got.exit_code == EXIT_OK
    assert abs(len(out.read_text().splitlines()) - 401) < 120  # DP row count
    created = _invoke(env, "schedules", "create", "--cron", "0 2 * * *", "--timezone",
                      "Europe/Paris", "--dataset", dataset_id, "--epsilon", "0.5", "--disabled")
    assert created.exit_code == EXIT_OK, created.output
    listed = _invoke(env, "schedules", "list", "--json")
    assert created.stdout.strip() in {s["id"] for s in json.loads(listed.stdout)}

    assert _invoke(env, "jobs", "wait", "job_nope").exit_code == EXIT_HTTP
    no_env = {"SYNTHGEN_URL": "", "SYNTHGEN_API_KEY": ""}
    assert _invoke(no_env, "jobs", "wait", job_id).exit_code == EXIT_USAGE
    unreachable = {**env, "SYNTHGEN_URL": f"http://127.0.0.1:{free_port()}"}
    assert _invoke(unreachable, "jobs", "wait", job_id).exit_code == EXIT_UNREACHABLE


def test_remote_batches_wait_and_download(embedded: Service, tenant_a: Api,
                                          finished_batch: dict[str, Any],
                                          tmp_path: Path) -> None:
    own_key = tenant_a.http.headers["Authorization"].removeprefix("Bearer ")
    env = {"SYNTHGEN_URL": embedded.url, "SYNTHGEN_API_KEY": own_key}
    batch_id = finished_batch["batch"]["id"]
    waited = _invoke(env, "batches", "wait", batch_id, "--quiet")
    assert waited.exit_code == EXIT_OK and waited.stdout.strip() == "succeeded"
    out = tmp_path / "batch.zip"
    assert _invoke(env, "batches", "download", batch_id, "-o", str(out)).exit_code == EXIT_OK
    with zipfile.ZipFile(out) as archive:
        assert len([n for n in archive.namelist() if n.endswith(".csv")]) == 3
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"dataset_id": "ds_nope", "epsilon": 1}]))
    refused = _invoke(env, "batches", "submit", str(jobs))
    assert refused.exit_code == EXIT_HTTP and "ds_nope" in refused.output
