"""Keyset paging, newest first, with opaque tenant-scoped cursors.

A cursor names the last object of the page (base64 of its id, a random string), never a
position in a global sequence, which would tell any tenant the service's total volume. It is
looked up among the caller's own objects: a cursor that is malformed, made up, or another
tenant's is a 422, and a huge number cannot reach the database as an integer.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Query
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from api.problems import Problem

T = TypeVar("T")

CURSOR_MAX_LENGTH = 80
Limit = Annotated[int, Query(ge=1, le=100, description="Items per page.")]
Cursor = Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH, description="The "
                                     "next_cursor of the previous page.")]
_ID = re.compile(r"^[a-z]{2,8}_[0-9a-f]{20}$")  # what synthgen.service.db.new_id makes


def encode_cursor(object_id: str) -> str:
    return base64.urlsafe_b64encode(object_id.encode()).decode().rstrip("=")


def _invalid() -> Problem:
    return Problem(422, "invalid-cursor", "the cursor is not one this API returned for this "
                   "listing; start again without it")


def _decode(cursor: str) -> str:
    try:
        object_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise _invalid() from exc
    if not _ID.match(object_id):
        raise _invalid()
    return object_id


def newest_first(session: Session, query: Select[Any], model: Any, tenant: str,
                 cursor: str | None, limit: int) -> tuple[Sequence[Any], str | None]:
    """One page of ``query`` (already filtered to ``tenant``) and the next page's cursor."""
    if cursor is not None:
        seq = session.scalar(select(model.seq).where(model.id == _decode(cursor),
                                                     model.tenant_id == tenant))
        if seq is None:
            raise _invalid()
        query = query.where(model.seq < seq)
    rows = session.scalars(query.order_by(model.seq.desc()).limit(limit + 1)).all()
    page = rows[:limit]
    return page, encode_cursor(page[-1].id) if len(rows) > limit else None
