"""``Idempotency-Key`` on the routes that accept work (jobs, batches): a retry with the same key
and body returns what the first request made instead of making (and charging) it again."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Header, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.problems import Problem
from synthgen.service.db import Database

T = TypeVar("T")

IdempotencyKey = Annotated[str | None, Header(max_length=200, description="A key of the "
                                              "caller's choice: a retry with the same key and "
                                              "body returns the first result.")]


def request_hash(body: BaseModel) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


def _replay(db: Database, model: Any, tenant: str, key: str, digest: str) -> Any:
    with db.read() as s:
        found = s.scalar(select(model).where(model.tenant_id == tenant,
                                             model.idempotency_key == key))
    if found is not None and found.request_hash != digest:
        raise Problem(422, "idempotency-key-reused", "this Idempotency-Key was used with a "
                      "different request body; use a new key for new work")
    return found


def once(db: Database, model: type[T], tenant: str, key: str | None, digest: str,
         make: Callable[[], T], response: Response) -> tuple[T, bool]:
    """The object ``make`` creates, or the one an earlier request with ``key`` made (then
    ``Idempotent-Replayed: true``). Returns (object, created now)."""
    if key:
        found = _replay(db, model, tenant, key, digest)
        if found is not None:
            response.headers["Idempotent-Replayed"] = "true"
            return found, False
    try:
        return make(), True
    except IntegrityError:  # a concurrent request with the same key won
        found = _replay(db, model, tenant, key or "", digest) if key else None
        if found is None:
            raise
        response.headers["Idempotent-Replayed"] = "true"
        return found, False
