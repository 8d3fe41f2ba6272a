"""Webhooks: one endpoint per tenant, a durable outbox, and the delivery loop.

An event is inserted into the outbox (``webhook_events``) in the same transaction as the change
it reports (a job's settlement, a batch's end, a skipped schedule run), and only when the
tenant has an endpoint. A delivery pass claims due events with a conditional UPDATE (a lease,
so several passes in several processes never send one event at once), POSTs each, signed the
Standard Webhooks way (:mod:`synthgen.signing`), and on failure retries with exponential
backoff until the attempt cap. Nothing in a job's path waits for a receiver. Delivery is at
least once (a pass that dies after the POST leaves the event to be sent again): receivers
dedupe on ``webhook-id``. Payloads carry ids and statuses, never data rows.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import socket
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from synthgen._version import __version__
from synthgen.service.db import Database, WebhookEndpoint, WebhookEvent, new_id, now
from synthgen.service.settings import Settings
from synthgen.signing import new_secret, sign

log = logging.getLogger("synthgen.service")

EVENTS = ("job.succeeded", "job.failed", "batch.finished", "schedule.skipped")
MAX_BACKOFF_S = 3600.0


class TargetRefused(ValueError):
    """The webhook URL points where the service may not send (see :func:`check_url`)."""


def _allowed(settings: Settings) -> set[str]:
    return {h.strip().lower() for h in settings.webhook_allowed_hosts.split(",") if h.strip()}


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


def check_url(url: str, settings: Settings) -> str:
    """Refuse URLs that are not http(s), carry credentials, or (unless their host is in
    ``SYNTHGEN_WEBHOOK_ALLOWED_HOSTS``) use plain http or name a loopback or private address.
    Names are resolved again at each delivery (:func:`check_target`)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        _ = parts.port
    except ValueError as exc:
        raise TargetRefused(f"the webhook URL is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise TargetRefused("the webhook URL must be an absolute http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the webhook URL must not carry credentials; the signature "
                            "authenticates deliveries")
    if host in _allowed(settings):
        return url
    if parts.scheme != "https":
        raise TargetRefused("the webhook URL must use https (plain http only for the hosts the "
                            "operator allows in SYNTHGEN_WEBHOOK_ALLOWED_HOSTS)")
    try:
        private = _private(host)
    except ValueError:  # a name, not an address
        private = host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
    if private:
        raise TargetRefused("the webhook URL names a loopback or private address; ask the "
                            "operator to allow it in SYNTHGEN_WEBHOOK_ALLOWED_HOSTS")
    return url


def check_target(url: str, settings: Settings) -> None:
    """At delivery: every address the host resolves to must be public (unless allowed)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in _allowed(settings):
        return
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc}") from exc
    if any(_private(str(info[4][0])) for info in infos):
        raise TargetRefused(f"{host} resolves to a loopback or private address")


def set_endpoint(db: Database, tenant_id: str, url: str) -> tuple[WebhookEndpoint, str]:
    """Create or replace the tenant's endpoint with a new secret (returned: shown once)."""
    secret = new_secret()
    with db.write() as s:
        endpoint = s.scalar(select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id))
        if endpoint is None:
            endpoint = WebhookEndpoint(tenant_id=tenant_id, url=url, secret=secret)
            s.add(endpoint)
        else:
            endpoint.url, endpoint.secret, endpoint.created_at = url, secret, now()
    return endpoint, secret


def delete_endpoint(db: Database, tenant_id: str) -> bool:
    """Remove the endpoint and drop its undelivered events."""
    with db.write() as s:
        done = s.execute(delete(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id))
        s.execute(delete(WebhookEvent).where(WebhookEvent.tenant_id == tenant_id,
                                             WebhookEvent.state == "pending"))
    return bool(done.rowcount)  # type: ignore[attr-defined]


def delivery_counts(session: Session, tenant_id: str) -> dict[str, int]:
    rows = session.execute(select(WebhookEvent.state, func.count()).where(
        WebhookEvent.tenant_id == tenant_id).group_by(WebhookEvent.state)).all()
    counts = {"pending": 0, "delivered": 0, "failed": 0}
    counts.update({state: int(n) for state, n in rows})
    return counts


def enqueue_event(session: Session, tenant_id: str, event_type: str,
                  data: dict[str, Any]) -> str | None:
    """Add an event to the outbox in the caller's transaction (None: the tenant has no
    endpoint, so nothing is recorded)."""
    assert event_type in EVENTS, event_type
    has_endpoint = session.scalar(select(WebhookEndpoint.id).where(
        WebhookEndpoint.tenant_id == tenant_id))
    if has_endpoint is None:
        return None
    msg_id = new_id("msg")
    t = now()
    session.add(WebhookEvent(
        id=msg_id, tenant_id=tenant_id, type=event_type, created_at=t, next_attempt_at=t,
        payload={"type": event_type, "timestamp": datetime.fromtimestamp(t, UTC).isoformat(),
                 "data": data}))
    return msg_id


def _claim(db: Database, event_id: str, t: float, lease_s: float) -> bool:
    with db.write() as s:
        done = s.execute(update(WebhookEvent).where(
            WebhookEvent.id == event_id, WebhookEvent.state == "pending",
            WebhookEvent.next_attempt_at <= t,
            (WebhookEvent.lease_until.is_(None)) | (WebhookEvent.lease_until < t),
        ).values(lease_until=t + lease_s, attempts=WebhookEvent.attempts + 1))
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def backoff_s(attempts: int, settings: Settings) -> float:
    """Delay before attempt ``attempts + 1``: doubling from the base, capped, +-20% jitter."""
    delay = min(settings.webhook_backoff_s * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)
    return delay * random.uniform(0.8, 1.2)


def _send(http: httpx.Client, endpoint: WebhookEndpoint, event: WebhookEvent,
          settings: Settings) -> tuple[int | None, str | None]:
    """POST one event. Returns (HTTP status, error) - status 2xx and no error on success."""
    body = json.dumps(event.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": f"synthgen-webhooks/{__version__}",
        "webhook-id": event.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(endpoint.secret, event.id, timestamp, body),
    }
    try:
        check_target(endpoint.url, settings)
        response = http.post(endpoint.url, content=body, headers=headers)
    except (httpx.HTTPError, TargetRefused) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"the receiver answered {response.status_code}"


def deliver_due(db: Database, settings: Settings, *, now_s: float | None = None,
                http: httpx.Client | None = None, limit: int = 50) -> int:
    """One delivery pass over due events (oldest first). Returns how many were delivered."""
    t = now() if now_s is None else now_s
    with db.read() as s:
        due = s.scalars(select(WebhookEvent).where(
            WebhookEvent.state == "pending", WebhookEvent.next_attempt_at <= t,
            (WebhookEvent.lease_until.is_(None)) | (WebhookEvent.lease_until < t),
        ).order_by(WebhookEvent.seq).limit(limit)).all()
    if not due:
        return 0
    own = http is None
    client = http or httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
    delivered = 0
    try:
        for event in due:
            if not _claim(db, event.id, t, settings.webhook_timeout_s + 30):
                continue  # another pass has it
            with db.read() as s:
                endpoint = s.scalar(select(WebhookEndpoint).where(
                    WebhookEndpoint.tenant_id == event.tenant_id))
            status: int | None
            error: str | None
            if endpoint is None:
                status, error = None, "the tenant's webhook endpoint was deleted"
                attempts = settings.webhook_max_attempts
            else:
                status, error = _send(client, endpoint, event, settings)
                attempts = event.attempts + 1
            done = now() if now_s is None else now_s
            if error is None:
                values: dict[str, Any] = {"state": "delivered", "delivered_at": done}
                delivered += 1
            elif attempts >= settings.webhook_max_attempts:
                values = {"state": "failed"}
                log.warning("webhook %s (%s) given up after %d attempts: %s", event.id,
                            event.type, attempts, error)
            else:
                values = {"next_attempt_at": done + backoff_s(attempts, settings)}
            with db.write() as s:
                s.execute(update(WebhookEvent).where(WebhookEvent.id == event.id).values(
                    lease_until=None, last_status=status, last_error=error, **values))
    finally:
        if own:
            client.close()
    return delivered
