"""The embedded engine: the API process supervises spawned training subprocesses.

No broker: the supervisor thread polls the jobs table, starts one ``spawn`` subprocess per free
slot (never ``fork``: CUDA cannot live in a forked child), and the child claims the job with the
same conditional UPDATE as a Celery worker. The supervisor also runs the lease reconciler, and
when it sees a child die it expires that child's lease so the job is re-queued at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import threading
import time
import uuid
from multiprocessing.process import BaseProcess

from sqlalchemy import select, update

from synthgen.service.db import Database, Job
from synthgen.service.jobs import expire_lease, reconcile
from synthgen.service.scratch import sweep_scratch
from synthgen.service.settings import Settings
from synthgen.service.storage import Storage

log = logging.getLogger("synthgen.service")


PARENT_CHECK_S = 0.5


def _exit_with_parent(parent: int) -> None:
    """Exit when the supervising API process dies (killed with -9, no chance to stop us):
    unsupervised, this child would hold its job while a restarted API starts others, past the
    one-process-per-device limit. The job's lease then expires and the reconciler re-queues
    it; the next attempt resumes from the last checkpoint."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        log.error("the supervising process %d is gone; training process exits", parent)
        os._exit(70)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def child_main(job_id: str, owner: str, settings: Settings, parent: int | None = None) -> None:
    """Entry point of a training subprocess (``parent``: the supervisor's pid)."""
    _exit_with_parent(parent or os.getppid())
    from synthgen.service.logs import configure_logging

    configure_logging("INFO", settings.log_format)
    from synthgen.service.runner import execute_job  # sets torch's threads

    execute_job(job_id, owner, settings)


class LocalDispatcher:
    engine = "embedded"

    def __init__(self, settings: Settings, db: Database, storage: Storage) -> None:
        self.settings, self.db, self.storage = settings, db, storage
        self._ctx = multiprocessing.get_context("spawn")
        self.children: dict[str, tuple[BaseProcess, str]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)

    def start(self) -> None:
        sweep_scratch(self.db, self.settings.scratch_dir)  # attempts killed with the last API
        self._thread.start()

    def submit(self, job_id: str) -> None:
        self._wake.set()

    def ready(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        last_reconcile = 0.0
        while not self._stop.is_set():
            try:
                self._reap()
                if self.settings.reconciler and (
                    time.monotonic() - last_reconcile >= self.settings.reconcile_every_s
                ):
                    last_reconcile = time.monotonic()
                    if reconcile(self.db, self.storage,
                                 retain_uploads=self.settings.retain_uploads):
                        continue  # re-queued jobs: start them without waiting
                self._start_children()
            except Exception:
                log.exception("supervisor pass failed")
            self._wake.wait(0.5)
            self._wake.clear()

    def _reap(self) -> None:
        for job_id, (proc, owner) in list(self.children.items()):
            if proc.is_alive():
                continue
            proc.join()
            del self.children[job_id]
            if proc.exitcode != 0:
                log.warning("training process of job %s exited with %s", job_id, proc.exitcode)
                expire_lease(self.db, owner)
                self._wake.set()

    def _start_children(self) -> None:
        free = self.settings.local_workers - len(self.children)
        if free <= 0:
            return
        with self.db.read() as s:
            query = select(Job.id).where(Job.state == "queued", Job.cancel_requested.is_(False))
            if self.children:
                query = query.where(Job.id.not_in(list(self.children)))
            ids = s.scalars(query.order_by(Job.seq).limit(free)).all()
        for job_id in ids:
            owner = f"local:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
            proc = self._ctx.Process(target=child_main, name=f"train-{job_id}",
                                     args=(job_id, owner, self.settings, os.getpid()))
            proc.start()
            self.children[job_id] = (proc, owner)
            log.info("job %s: training process %s started", job_id, proc.pid)

    def stop(self) -> None:
        """Stop training children and put their jobs back in the queue, without counting the
        attempt: an orderly shutdown is not the job's fault. They resume from checkpoints."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        for _job_id, (proc, owner) in list(self.children.items()):
            proc.terminate()
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
            with self.db.write() as s:
                s.execute(update(Job).where(Job.lease_owner == owner, Job.state == "running")
                          .values(state="queued", lease_owner=None, lease_until=None,
                                  attempt=Job.attempt - 1))
        self.children.clear()
