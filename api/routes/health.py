"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import DatabaseDep, DispatcherDep, StorageDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(db: DatabaseDep, storage: StorageDep, dispatcher: DispatcherDep) -> JSONResponse:
    """The database, the object store and the job engine answer."""
    checks = {}
    try:
        with db.read() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = True
    except Exception:
        checks["database"] = False
    try:
        storage.fs.ls(storage.root)
        checks["storage"] = True
    except Exception:
        checks["storage"] = False
    checks["engine"] = dispatcher.ready()
    ok = all(checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
