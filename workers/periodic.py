"""Loops of the API process: the schedule tick (embedded engine; beat runs it in the cluster)
and webhook delivery (every engine; beat runs it too in the cluster). Both are safe to run in
several processes at once: the tick's runs are keyed by (schedule, fire time), deliveries are
claimed with a lease."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from synthgen.service.db import Database
from synthgen.service.dispatch import JobDispatcher
from synthgen.service.schedules import tick
from synthgen.service.settings import Settings
from synthgen.service.webhook_delivery import Deliveries

log = logging.getLogger("synthgen.service")


class PeriodicLoops:
    def __init__(self, settings: Settings, db: Database, dispatcher: JobDispatcher,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings, self.db, self.dispatcher, self.clock = settings, db, dispatcher, clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._deliveries: Deliveries | None = None

    def start(self) -> None:
        if self.settings.runs_scheduler:
            self._spawn("schedule-tick", self.settings.schedule_tick_s, self.tick_once)
        if self.settings.webhook_delivery:  # lanes run on their own threads: never waited for
            deliveries = self._deliveries = Deliveries(self.db, self.settings)
            self._spawn("webhooks", self.settings.webhook_every_s, deliveries.pump)

    def tick_once(self) -> None:
        tick(self.db, now_s=self.clock(), dispatch=self.dispatcher.submit,
             max_attempts=self.settings.max_attempts)

    def _spawn(self, name: str, every_s: float, step: Callable[[], object]) -> None:
        def loop() -> None:
            while not self._stop.wait(every_s):
                try:
                    step()
                except Exception:
                    log.exception("%s pass failed", name)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        if self._deliveries is not None:
            self._deliveries.close()
