"""Celery tasks: a message carries only a job id; the body is the shared job runner."""

from __future__ import annotations

import os
import socket
from typing import Any

from workers.celery_app import (
    RECONCILE_TASK,
    SCHEDULE_TICK_TASK,
    TRAIN_TASK,
    WEBHOOKS_TASK,
    app,
)


@app.task(name=TRAIN_TASK, bind=True)
def train(self: Any, job_id: str) -> str:
    # Imported here: the worker's parent process forks children and must never touch CUDA.
    from synthgen.service.runner import execute_job
    from synthgen.service.settings import Settings

    owner = f"celery:{socket.gethostname()}:{os.getpid()}:{self.request.id}"
    return execute_job(job_id, owner, Settings())


@app.task(name=RECONCILE_TASK)
def reconcile() -> list[str]:
    from synthgen.service.db import Database
    from synthgen.service.jobs import reconcile as reconcile_jobs
    from synthgen.service.settings import Settings
    from synthgen.service.storage import Storage
    from workers.dispatch import CeleryDispatcher

    settings = Settings()
    db = Database(settings.db_url)
    try:
        dispatcher = CeleryDispatcher(settings, db, app=app)
        return reconcile_jobs(db, Storage(settings.objects_url), dispatch=dispatcher.submit,
                              redispatch_after_s=settings.redispatch_after_s,
                              retain_uploads=settings.retain_uploads)
    finally:
        db.dispose()


@app.task(name=SCHEDULE_TICK_TASK)
def schedule_tick(now_s: float | None = None) -> list[str]:
    """Fire the due schedules (beat sends this; ``now_s`` overrides the clock). Returns the
    ids of the runs recorded."""
    from synthgen.service.db import Database
    from synthgen.service.schedules import tick
    from synthgen.service.settings import Settings
    from workers.dispatch import CeleryDispatcher

    settings = Settings()
    db = Database(settings.db_url)
    try:
        dispatcher = CeleryDispatcher(settings, db, app=app)
        fired = tick(db, now_s=now_s, dispatch=dispatcher.submit,
                     max_attempts=settings.max_attempts)
        return [f.run_id for f in fired]
    finally:
        db.dispose()


@app.task(name=WEBHOOKS_TASK)
def deliver_webhooks() -> int:
    from synthgen.service.db import Database
    from synthgen.service.settings import Settings
    from synthgen.service.webhook_delivery import deliver_due

    settings = Settings()
    db = Database(settings.db_url)
    try:
        return deliver_due(db, settings)
    finally:
        db.dispose()
