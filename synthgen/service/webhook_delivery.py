"""Webhook delivery from the outbox: one lane per endpoint, so one slow receiver cannot hold
back another tenant's events.

A pass starts a lane for every endpoint that has due events and no lane running, oldest event
first across endpoints, on a bounded thread pool (``SYNTHGEN_WEBHOOK_CONCURRENCY``). A lane
sends its endpoint's due events in order, at most :data:`LANE_TURN` in a row before the others
get a turn, and stops at the first failure: the event is retried with exponential backoff and
the endpoint's other pending events wait at least as long (per-endpoint backoff), so a dead
receiver costs one timeout per backoff period, not one per event. Each event is claimed with a
conditional UPDATE (a lease), so passes in several processes never send one event at once.
Each POST is signed the Standard Webhooks way (:mod:`synthgen.signing`) and goes to the address
that was checked (:func:`~synthgen.service.webhooks.check_target`), with the original Host and
TLS server name.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy import func, select, update

from synthgen._version import __version__
from synthgen.service.db import Database, WebhookEndpoint, WebhookEvent, now
from synthgen.service.settings import Settings
from synthgen.service.webhooks import TargetRefused, check_target, pinned
from synthgen.signing import sign

log = logging.getLogger("synthgen.service")

MAX_BACKOFF_S = 3600.0
LANE_TURN = 20  # events one endpoint sends in a row before the other endpoints get a turn


def backoff_s(attempts: int, settings: Settings) -> float:
    """Delay before attempt ``attempts + 1``: doubling from the base, capped, +-20% jitter."""
    delay = min(settings.webhook_backoff_s * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)
    return delay * random.uniform(0.8, 1.2)


def _due(t: float) -> Any:
    return ((WebhookEvent.state == "pending") & (WebhookEvent.next_attempt_at <= t)
            & ((WebhookEvent.lease_until.is_(None)) | (WebhookEvent.lease_until < t)))


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
        target, host, extensions = pinned(endpoint.url, check_target(endpoint.url, settings))
        response = http.post(target, content=body, headers={**headers, **host},
                             extensions=extensions)
    except (httpx.HTTPError, TargetRefused) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"the receiver answered {response.status_code}"


class Deliveries:
    """The lanes of one process. :meth:`pump` starts lanes and returns at once (the API's
    loop); :meth:`deliver_due` runs one pass to the end (beat's task, tests)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings
        self._pool = ThreadPoolExecutor(settings.webhook_concurrency,
                                        thread_name_prefix="webhook-lane")
        self._busy: set[str] = set()  # tenants (endpoints) with a lane started
        self._lock = threading.Lock()

    def pump(self, now_s: float | None = None) -> list[Future[int]]:
        t = now() if now_s is None else now_s
        with self.db.read() as s:
            tenants = s.scalars(select(WebhookEvent.tenant_id).where(_due(t))
                                .group_by(WebhookEvent.tenant_id)
                                .order_by(func.min(WebhookEvent.seq)).limit(1000)).all()
        lanes = []
        for tenant in tenants:
            with self._lock:
                if tenant in self._busy:
                    continue
                self._busy.add(tenant)
            lanes.append(self._pool.submit(self._lane, tenant, now_s))
        return lanes

    def deliver_due(self, now_s: float | None = None) -> int:
        """One pass: every endpoint's due events (a turn each). Returns how many were
        delivered."""
        return sum(lane.result() for lane in self.pump(now_s))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _lane(self, tenant: str, now_s: float | None) -> int:
        delivered = 0
        # A client per turn of one endpoint: requests go to a pinned address, and a pooled
        # connection must never carry another host's request (its TLS name was checked for
        # the host it was opened for).
        try:
            with httpx.Client(timeout=self.settings.webhook_timeout_s,
                              follow_redirects=False) as http:
                for _ in range(LANE_TURN):
                    event = self._claim_next(tenant, now() if now_s is None else now_s)
                    if event is None or not self._deliver(http, event, now_s):
                        break
                    delivered += 1
        except Exception:
            log.exception("webhook lane of tenant %s failed", tenant)
        finally:
            with self._lock:
                self._busy.discard(tenant)
        return delivered

    def _claim_next(self, tenant: str, t: float) -> WebhookEvent | None:
        lease = t + self.settings.webhook_timeout_s + 30
        with self.db.write() as s:
            event = s.scalar(select(WebhookEvent).where(WebhookEvent.tenant_id == tenant, _due(t))
                             .order_by(WebhookEvent.seq).limit(1))
            if event is None:
                return None
            # the loaded event keeps the attempts before this one (see _deliver)
            done = s.execute(update(WebhookEvent).where(WebhookEvent.id == event.id, _due(t))
                             .values(lease_until=lease, attempts=WebhookEvent.attempts + 1)
                             .execution_options(synchronize_session=False))
            return event if done.rowcount == 1 else None  # type: ignore[attr-defined]

    def _deliver(self, http: httpx.Client, event: WebhookEvent, now_s: float | None) -> bool:
        settings = self.settings
        with self.db.read() as s:
            endpoint = s.scalar(select(WebhookEndpoint).where(
                WebhookEndpoint.tenant_id == event.tenant_id))
        status: int | None
        error: str | None
        if endpoint is None:
            status, error = None, "the tenant's webhook endpoint was deleted"
            attempts = settings.webhook_max_attempts
        else:
            status, error = _send(http, endpoint, event, settings)
            attempts = event.attempts + 1
        done = now() if now_s is None else now_s
        retry_at = None
        if error is None:
            values: dict[str, Any] = {"state": "delivered", "delivered_at": done}
        elif attempts >= settings.webhook_max_attempts:
            values = {"state": "failed"}
            log.warning("webhook %s (%s) given up after %d attempts: %s", event.id,
                        event.type, attempts, error)
        else:
            retry_at = done + backoff_s(attempts, settings)
            values = {"next_attempt_at": retry_at}
        with self.db.write() as s:
            s.execute(update(WebhookEvent).where(WebhookEvent.id == event.id).values(
                lease_until=None, last_status=status, last_error=error, **values))
            if retry_at is not None:  # the endpoint is failing: its other events wait too
                s.execute(update(WebhookEvent).where(
                    WebhookEvent.tenant_id == event.tenant_id, WebhookEvent.state == "pending",
                    WebhookEvent.next_attempt_at < retry_at).values(next_attempt_at=retry_at))
        return error is None


def deliver_due(db: Database, settings: Settings, *, now_s: float | None = None) -> int:
    """One delivery pass to the end, in lanes per endpoint. Returns how many were delivered."""
    deliveries = Deliveries(db, settings)
    try:
        return deliveries.deliver_due(now_s)
    finally:
        deliveries.close()
