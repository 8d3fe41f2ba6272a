"""The tenant's webhook endpoint: signed events, delivered from a durable outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from api.deps import CurrentTenant, DatabaseDep, SessionDep, SettingsDep
from api.problems import Problem
from api.schemas import iso
from synthgen.service.db import WebhookEndpoint
from synthgen.service.webhooks import (
    EVENTS,
    TargetRefused,
    check_resolution,
    check_url,
    delete_endpoint,
    delivery_counts,
    set_endpoint,
)

router = APIRouter(prefix="/v1/webhook", tags=["webhooks"])

_NONE: dict[int | str, dict[str, Any]] = {
    404: {"description": "This tenant has no webhook endpoint."}}


class WebhookSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="Where to POST events: an https URL (plain "
                     "http or a private address only for hosts the operator allows).")


class Deliveries(BaseModel):
    pending: int
    delivered: int
    failed: int


class WebhookOut(BaseModel):
    url: str
    events: list[str]
    created_at: datetime
    deliveries: Deliveries


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_...: verify each delivery's webhook-signature with "
                        "it. Shown only now; PUT again to rotate it.")


@router.put("", response_model=WebhookCreated)
def set_webhook(tenant: CurrentTenant, db: DatabaseDep, settings: SettingsDep,
                body: WebhookSet) -> WebhookCreated:
    """Create or replace the endpoint. A new signing secret is generated and shown once;
    undelivered events go to the new URL, signed with the new secret."""
    try:
        url = check_url(body.url, settings)
        check_resolution(url, settings)
    except TargetRefused as exc:
        raise Problem(422, "webhook-target-refused", str(exc)) from exc
    endpoint, secret = set_endpoint(db, tenant, url)
    with db.read() as s:
        counts = delivery_counts(s, tenant)
    return WebhookCreated(url=endpoint.url, events=list(EVENTS), secret=secret,
                          created_at=iso(endpoint.created_at),  # type: ignore[arg-type]
                          deliveries=Deliveries(**counts))


@router.get("", response_model=WebhookOut, responses=_NONE)
def get_webhook(tenant: CurrentTenant, session: SessionDep) -> WebhookOut:
    """The endpoint (never its secret) and how its deliveries stand."""
    endpoint = session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant))
    if endpoint is None:
        raise Problem(404, "not-found", "this tenant has no webhook endpoint; PUT one")
    return WebhookOut(url=endpoint.url, events=list(EVENTS),
                      created_at=iso(endpoint.created_at),  # type: ignore[arg-type]
                      deliveries=Deliveries(**delivery_counts(session, tenant)))


@router.delete("", status_code=204, response_class=Response, responses=_NONE)
def remove_webhook(tenant: CurrentTenant, db: DatabaseDep) -> Response:
    """Remove the endpoint; its undelivered events are dropped."""
    if not delete_endpoint(db, tenant):
        raise Problem(404, "not-found", "this tenant has no webhook endpoint")
    return Response(status_code=204)
