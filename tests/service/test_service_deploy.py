"""The deployment files match the code: compose services, their commands, Celery settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from service.svc_helpers import ROOT
from synthgen.cli import app
from synthgen.service.settings import Settings
from workers.celery_app import (
    CONTROL_QUEUE,
    GPU_QUEUE,
    RECONCILE_TASK,
    SCHEDULE_TICK_TASK,
    TRAIN_TASK,
    WEBHOOKS_TASK,
    make_celery,
)


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def test_compose_has_the_cluster_services() -> None:
    services = _compose()["services"]
    assert {"redis", "postgres", "minio", "api", "worker-gpu", "beat"} <= set(services)
    redis = services["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes"
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    env = services["api"]["environment"]
    assert env["SYNTHGEN_BROKER_URL"].startswith("redis://redis:")
    assert env["SYNTHGEN_DATABASE_URL"].startswith("postgresql")
    assert env["SYNTHGEN_STORAGE_URL"].startswith("s3://")
    # migrations run once before the API and workers start (the API refuses a schema behind)
    assert services["migrate"]["command"] == ["synthgen", "db", "upgrade"]
    for name in ("api", "worker-gpu", "worker-control", "beat"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"}


def test_compose_commands_exist_in_the_cli() -> None:
    runner = CliRunner()
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if not command or command[0] != "synthgen":
            continue
        result = runner.invoke(app, [command[1], "--help"])
        assert result.exit_code == 0, (name, result.output)
        help_text = re.sub(r"\x1b\[[0-9;]*m", "", result.output)
        for option in (c for c in command[2:] if c.startswith("--")):
            assert option in help_text, f"{name}: {option} is not an option of {command[1]}"
    beat = _compose()["services"]["beat"]["command"]
    assert beat[:3] == ["celery", "-A", "workers.celery_app"] and "beat" in beat


def test_compose_visibility_timeout_is_above_the_hard_limit() -> None:
    env = _compose()["x-synthgen-env"]
    settings = Settings(
        broker_url="redis://127.0.0.1:1/0",
        task_soft_time_limit_s=int(env["SYNTHGEN_TASK_SOFT_TIME_LIMIT_S"]),
        task_time_limit_s=int(env["SYNTHGEN_TASK_TIME_LIMIT_S"]),
        visibility_timeout_s=int(env["SYNTHGEN_VISIBILITY_TIMEOUT_S"]))
    celery = make_celery(settings)
    conf = celery.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.worker_max_tasks_per_child == 1
    for place in (conf.broker_transport_options, conf.result_backend_transport_options):
        assert place["visibility_timeout"] > conf.task_time_limit > conf.task_soft_time_limit
    assert conf.visibility_timeout == conf.broker_transport_options["visibility_timeout"]
    assert conf.task_routes[TRAIN_TASK]["queue"] == GPU_QUEUE
    assert {RECONCILE_TASK, SCHEDULE_TICK_TASK, WEBHOOKS_TASK} <= {
        e["task"] for e in conf.beat_schedule.values()}
    assert conf.task_routes[SCHEDULE_TICK_TASK]["queue"] == CONTROL_QUEUE


def test_dockerfile_installs_the_service_packages() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for folder in ("synthgen", "api", "workers"):
        assert f"COPY {folder} ./{folder}" in text
    assert Path(ROOT / "docker-compose.yml").exists()
