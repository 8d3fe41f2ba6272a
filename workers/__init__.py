"""Job execution engines: Celery (cluster) and the embedded supervisor (one machine)."""

from __future__ import annotations

from synthgen.service.db import Database
from synthgen.service.dispatch import JobDispatcher
from synthgen.service.settings import Settings
from synthgen.service.storage import Storage


def make_dispatcher(settings: Settings, db: Database, storage: Storage) -> JobDispatcher:
    """The cluster engine when a broker URL is set, else the embedded one."""
    if settings.broker_url:
        from workers.dispatch import CeleryDispatcher

        return CeleryDispatcher(settings, db, storage)
    from workers.local import LocalDispatcher

    return LocalDispatcher(settings, db, storage)
