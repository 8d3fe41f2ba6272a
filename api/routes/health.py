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


class _IntegrityCheck:
    """The last integrity check of each database, run again once it is older than
    ``SYNTHGEN_DB_CHECK_EVERY_S`` (probes poll /readyz every few seconds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, bool]] = {}  # url -> (monotonic time, intact)

    def __call__(self, db: Database, every_s: float) -> bool:
        with self._lock:
            at, ok = self._last.get(db.url, (-float("inf"), False))
            if time.monotonic() - at >= every_s:
                try:
                    ok = db.intact()
                except Exception:
                    ok = False
                self._last[db.url] = (time.monotonic(), ok)
            return ok


_intact = _IntegrityCheck()


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(db: DatabaseDep, storage: StorageDep, dispatcher: DispatcherDep,
           settings: SettingsDep) -> JSONResponse:
    """The database (intact, for SQLite), the object store and the job engine answer."""
    checks = {}
    try:  # a query every time; the file's integrity now and then
        db.ping()
        checks["database"] = _intact(db, settings.db_check_every_s)
    except Exception:
        checks["database"] = False
    try:
        storage.check()
        checks["storage"] = True
    except Exception:
        checks["storage"] = False
    checks["engine"] = dispatcher.ready()
    ok = all(checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
