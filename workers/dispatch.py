"""The cluster engine's dispatcher: send job ids to Celery's ``gpu`` queue; reconcile leases."""

from __future__ import annotations

import logging
import threading
import uuid

from celery import Celery
from sqlalchemy import update

from synthgen.service.db import Database, Job, now
from synthgen.service.jobs import reconcile
from synthgen.service.settings import Settings
from synthgen.service.storage import Storage
from workers.celery_app import GPU_QUEUE, TRAIN_TASK, make_celery

log = logging.getLogger("synthgen.service")


class CeleryDispatcher:
    engine = "cluster"

    def __init__(self, settings: Settings, db: Database, storage: Storage | None = None,
                 app: Celery | None = None) -> None:
        self.settings, self.db, self.storage = settings, db, storage
        self.app = app or make_celery(settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, job_id: str) -> None:
        """Send the job's id; on a broker error the job stays queued with no dispatch time,
        and the reconciler sends it again."""
        try:
            self.app.send_task(TRAIN_TASK, args=[job_id], queue=GPU_QUEUE,
                               task_id=f"{job_id}.{uuid.uuid4().hex[:8]}",
                               retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2})
            dispatched: float | None = now()
        except Exception:
            log.exception("could not send job %s to the broker; the reconciler retries", job_id)
            dispatched = None
        with self.db.write() as s:
            s.execute(update(Job).where(Job.id == job_id, Job.state == "queued")
                      .values(dispatched_at=dispatched))

    def start(self) -> None:
        if self.settings.reconciler and self.storage is not None:
            self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        assert self.storage is not None
        while not self._stop.wait(self.settings.reconcile_every_s):
            try:
                reconcile(self.db, self.storage, dispatch=self.submit,
                          redispatch_after_s=self.settings.redispatch_after_s,
                          retain_uploads=self.settings.retain_uploads)
            except Exception:
                log.exception("reconciler pass failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def ready(self) -> bool:
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            return True
        except Exception:
            return False
