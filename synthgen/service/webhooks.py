"""Webhooks: one endpoint per tenant, a durable outbox, and the delivery loop.

An event is inserted into the outbox (``webhook_events``) in the same transaction as the change
it reports (a job's settlement, a batch's end, a skipped schedule run), and only when the
tenant has an endpoint. Delivery (:mod:`synthgen.service.webhook_delivery`) runs one lane per
endpoint, so a slow receiver delays only its own events. Nothing in a job's path waits for a
receiver. Delivery is at
least once (a pass that dies after the POST leaves the event to be sent again): receivers
dedupe on ``webhook-id``. Payloads carry ids and statuses, never data rows.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from synthgen.service.db import Database, WebhookEndpoint, WebhookEvent, new_id, now
from synthgen.service.settings import Settings
from synthgen.signing import new_secret

EVENTS = ("job.succeeded", "job.failed", "batch.finished", "schedule.skipped")


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
    Names are resolved again at each delivery, and the delivery connects to the address checked
    (:func:`check_target`)."""
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
        private = _private(_numeric_host(host) or host)
    except ValueError:  # a name, not an address
        private = host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
    if private:
        raise TargetRefused("the webhook URL names a loopback or private address; ask the "
                            "operator to allow it in SYNTHGEN_WEBHOOK_ALLOWED_HOSTS")
    return url


def _numeric_host(host: str) -> str | None:
    """The IPv4 address a host spells the way ``inet_aton`` (and so every resolver) reads it:
    decimal ``2130706433``, octal ``0177.0.0.1``, hex ``0x7f.1``, short ``127.1``."""
    if not re.fullmatch(r"[0-9a-fx.]+", host):
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


def check_resolution(url: str, settings: Settings, timeout_s: float = 3.0) -> None:
    """At PUT: refuse a URL whose host resolves now to a loopback or private address (a name
    such as ``localtest.me``, or an entry of /etc/hosts), which every delivery would refuse.
    A name that does not resolve (yet), or not within ``timeout_s``, is accepted: each
    delivery resolves and checks it again (:func:`check_target`)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in _allowed(settings):
        return
    lookup = ThreadPoolExecutor(1, thread_name_prefix="webhook-check")
    try:
        infos = lookup.submit(socket.getaddrinfo, host, None, proto=socket.IPPROTO_TCP).result(
            timeout=timeout_s)
    except (OSError, TimeoutError):
        return
    finally:
        lookup.shutdown(wait=False)
    private = [str(info[4][0]) for info in infos if _private(str(info[4][0]))]
    if private:
        raise TargetRefused(f"{host} resolves to a loopback or private address ({private[0]}); "
                            "ask the operator to allow it in SYNTHGEN_WEBHOOK_ALLOWED_HOSTS")


def check_target(url: str, settings: Settings) -> str:
    """At delivery: resolve the host once; every address must be public (unless the host is
    allowed). Returns the address to connect to: the one checked, never a second lookup,
    which a rebinding DNS server could answer with a private address."""
    host = (urlsplit(url).hostname or "").lower()
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc}") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise TargetRefused(f"cannot resolve {host}")
    if host not in _allowed(settings) and any(_private(a) for a in addresses):
        raise TargetRefused(f"{host} resolves to a loopback or private address")
    return addresses[0]


def pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``url`` with its host replaced by ``address``, and the Host header and TLS server name
    (SNI, also the name the certificate is checked against) of the original host."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    extensions: dict[str, Any] = {}
    if parts.scheme == "https":
        extensions["sni_hostname"] = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=netloc)), {"host": parts.netloc}, extensions


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
