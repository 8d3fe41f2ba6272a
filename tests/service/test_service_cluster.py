"""The cluster engine with a real Redis (AOF on) and real Celery worker processes."""

from __future__ import annotations

import csv
import io
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.svc_helpers import (
    ADULT_SAMPLE,
    FAST_JOB,
    LONG_JOB,
    Api,
    RedisServer,
    Service,
    assert_resumed_once,
    children_of,
    cmdline,
    kill_tree,
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, broker: RedisServer) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("cluster"), {
        "SYNTHGEN_BROKER_URL": broker.url,
        # Long enough that no re-send by the reconciler can hide a lost message.
        "SYNTHGEN_REDISPATCH_AFTER_S": "3600",
    })
    service.start_api()
    service.start_worker("gpu0")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def client(cluster: Service) -> Api:
    return Api(cluster.url, cluster.key("team"))


def _worker(cluster: Service) -> int:
    workers = [p for p in cluster.procs if p.poll() is None and p.args[3] == "worker"]
    assert workers, "no worker is running"
    return int(workers[-1].pid)


def test_job_runs_end_to_end_on_celery(client: Api) -> None:
    dataset = client.upload()
    job = client.submit(dataset["id"], **FAST_JOB)
    assert job["status"] == "queued"
    done = client.wait(job["id"])
    assert done["status"] == "succeeded", done
    rows = list(csv.reader(io.StringIO(client.http.get(
        f"/v1/jobs/{job['id']}/synthetic.csv").text)))
    with open(ADULT_SAMPLE, encoding="utf-8") as fh:
        assert rows[0] == next(csv.reader(fh))
    assert abs(len(rows) - 401) < 120  # DP row count
    report = client.http.get(f"/v1/jobs/{job['id']}/report").json()
    assert 0 < report["epsilon"] <= 1.0
    budget = client.http.get(f"/v1/datasets/{dataset['id']}/budget").json()
    assert abs(budget["spent_epsilon"] - report["epsilon"]) < 1e-9


def test_killed_worker_job_resumes_and_is_charged_once(cluster: Service, client: Api) -> None:
    dataset = client.upload()
    job = client.submit(dataset["id"], **LONG_JOB)
    objects = cluster.data_dir / "objects"
    pattern = f"tenants/*/jobs/{job['id']}/checkpoint.pt"
    running = client.wait(job["id"], lambda j: any(objects.glob(pattern)))
    assert running["status"] == "running" and running["attempt"] == 1
    main = _worker(cluster)
    for pid in [main, *children_of(main)]:  # the worker and its training child: kill -9
        os.kill(pid, signal.SIGKILL)
    cluster.start_worker("gpu1")

    assert_resumed_once(cluster, client, job, dataset)


def test_queued_jobs_survive_a_redis_restart(
    cluster: Service, broker: RedisServer, client: Api
) -> None:
    worker = next(p for p in cluster.procs if p.poll() is None and p.args[3] == "worker")
    kill_tree(worker)  # no consumer: the messages wait in Redis
    dataset = client.upload()
    ids = [client.submit(dataset["id"], **{**FAST_JOB, "epsilon": 0.5})["id"] for _ in range(2)]
    queue = redis.Redis.from_url(broker.url)
    assert queue.llen("gpu") == 2
    broker.kill()  # kill -9: only the append-only file keeps the queue
    broker.start()
    assert queue.llen("gpu") == 2
    cluster.start_worker("gpu2")
    for job_id in ids:
        assert client.wait(job_id)["status"] == "succeeded"
    assert Path(broker.dir / "appendonlydir").exists()


def test_the_beat_tick_task_fires_a_schedule_once_on_the_cluster(
    cluster: Service, broker: RedisServer, client: Api
) -> None:
    from datetime import datetime

    from synthgen.service.settings import Settings
    from workers.celery_app import CONTROL_QUEUE, SCHEDULE_TICK_TASK, make_celery

    cluster.start_worker("control", queues="control")
    if not any(p.poll() is None and "--queues gpu" in cmdline(p.pid) for p in cluster.procs):
        cluster.start_worker("gpu3")
    dataset = client.upload()
    schedule = client.http.post("/v1/schedules", json={
        "cron": "* * * * *",  # a schedule carries no seed (each run draws fresh noise)
        "job": {"dataset_id": dataset["id"], **FAST_JOB, "seed": None}}).json()
    due = datetime.fromisoformat(schedule["next_fire_at"]).timestamp() + 1
    celery = make_celery(Settings(broker_url=broker.url))
    for _ in range(2):  # as beat would send it, twice (two beats): one run
        celery.send_task(SCHEDULE_TICK_TASK, kwargs={"now_s": due}, queue=CONTROL_QUEUE)
    runs: list[dict[str, object]] = []
    for _ in range(150):
        runs = client.http.get(f"/v1/schedules/{schedule['id']}").json()["recent_runs"]
        if runs:
            break
        time.sleep(0.2)
    client.http.patch(f"/v1/schedules/{schedule['id']}", json={"enabled": False})
    assert len(runs) == 1 and runs[0]["status"] == "submitted", runs
    done = client.wait(str(runs[0]["job_id"]))  # sent to the gpu queue and trained there
    assert done["status"] == "succeeded", done
    time.sleep(1)
    assert len(client.http.get(f"/v1/schedules/{schedule['id']}").json()["recent_runs"]) == 1


def test_a_redis_restart_does_not_kill_running_training(
    cluster: Service, broker: RedisServer, client: Api
) -> None:
    if not any(p.poll() is None and "--queues gpu" in cmdline(p.pid) for p in cluster.procs):
        cluster.start_worker("gpu4")
    dataset = client.upload()
    job = client.submit(dataset["id"], **LONG_JOB)
    client.wait(job["id"], lambda j: j["status"] == "running" and j["progress"]["step"] >= 1)
    for _ in range(3):  # three blips: each once failed the job one attempt closer to the cap
        broker.kill()
        time.sleep(1)
        broker.start()
        time.sleep(2)
    done = client.wait(job["id"])
    assert done["status"] == "succeeded" and done["attempt"] == 1, done
    attempts = cluster.query("SELECT attempt FROM job_attempts WHERE job_id = ?", job["id"])
    assert attempts == [(1,)]
