"""Liveness and readiness."""

from __future__ import annotations

import threading
import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import DatabaseDep, DispatcherDep, SettingsDep, StorageDep
from api.schemas import Health
from synthgen.service.db import Database

router = APIRouter(tags=["health"])


class _DatabaseCheck:
    """The last integrity check of the database, run again once it is older than
    ``SYNTHGEN_DB_CHECK_EVERY_S`` (probes poll /readyz every few seconds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._ok = False

    def __call__(self, db: Database, every_s: float) -> bool:
        with self._lock:
            if time.monotonic() - self._at >= every_s:
                try:
                    self._ok = db.check()
                except Exception:
                    self._ok = False
                self._at = time.monotonic()
            return self._ok


_database_ok = _DatabaseCheck()


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(db: DatabaseDep, storage: StorageDep, dispatcher: DispatcherDep,
           settings: SettingsDep) -> JSONResponse:
    """The database (intact, for SQLite), the object store and the job engine answer."""
    checks = {"database": _database_ok(db, settings.db_check_every_s)}
    try:
        storage.check()
        checks["storage"] = True
    except Exception:
        checks["storage"] = False
    checks["engine"] = dispatcher.ready()
    ok = all(checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
