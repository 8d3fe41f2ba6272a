"""Webhook delivery from the outbox: one lane per endpoint, so one slow receiver cannot hold
back another tenant's events.

A pass starts a lane for every endpoint that has due events and no lane running, oldest event
first across endpoints. A lane sends its endpoint's due events in order, at most
:data:`LANE_TURN` in a row before the others get a turn, and stops at the first failure: the
event is retried with exponential backoff and the endpoint's other pending events wait at least
as long (per-endpoint backoff), so a dead receiver costs one attempt per backoff period, not one
per event. Each event is claimed with a conditional UPDATE (a lease), so passes in several
processes never send one event at once. Each POST is signed the Standard Webhooks way
(:mod:`synthgen.signing`) and goes to the address that was checked
(:func:`~synthgen.service.webhooks.check_target`), with the original Host and TLS server name.

What a receiver can cost the service is bounded, whatever it does:

* **Time**: every attempt (name resolution, connect, request, response head, body) has a total
  deadline, ``SYNTHGEN_WEBHOOK_DEADLINE_S``, well under the event's lease (deadline + 30 s), so
  an endpoint that drips one byte at a time holds its lane for the deadline and no longer, and
  the event is never sent twice at once.
* **Memory**: only the status code matters; the response body is streamed and at most
  :data:`RESPONSE_BODY_CAP` bytes of it are read (a 2 GiB answer costs 4 KiB).
* **The pool**: lanes are coroutines on one event loop (a waiting receiver costs a socket, not a
  thread), at most ``SYNTHGEN_WEBHOOK_CONCURRENCY`` at once, one per endpoint. Slow or failing
  receivers get at most half of them, however many tenants own them: endpoints whose last
  attempt failed, hit the deadline or was slow start lanes from half the slots only, and at
  most half the lanes may run an attempt past :attr:`Deliveries.slow_s` (5 s) - beyond that an
  attempt is cut then and retried after its backoff - so receivers never seen before cannot
  take every lane for a deadline either; and a free lane goes first to an endpoint whose last
  attempt went well, so a healthy tenant's next event does not queue behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

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
RESPONSE_BODY_CAP = 4096  # bytes of a receiver's answer read (the status is all that counts)
LEASE_MARGIN_S = 30.0  # an event's lease: the attempt's deadline and this much more

T = TypeVar("T")


def backoff_s(attempts: int, settings: Settings) -> float:
    """Delay before attempt ``attempts + 1``: doubling from the base, capped, +-20% jitter."""
    delay = min(settings.webhook_backoff_s * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)
    return delay * random.uniform(0.8, 1.2)


def _due(t: float) -> Any:
    return ((WebhookEvent.state == "pending") & (WebhookEvent.next_attempt_at <= t)
            & ((WebhookEvent.lease_until.is_(None)) | (WebhookEvent.lease_until < t)))


async def _post(http: httpx.AsyncClient, target: str, body: bytes, headers: dict[str, str],
                extensions: dict[str, Any]) -> int:
    """POST and return the status; the answer's body is read up to the cap, then dropped
    (closing the stream early closes the connection instead of draining it)."""
    async with http.stream("POST", target, content=body, headers=headers,
                           extensions=extensions) as response:
        read = 0
        async for chunk in response.aiter_raw():  # raw: no decompression of a gzip bomb
            read += len(chunk)
            if read >= RESPONSE_BODY_CAP:
                break
        return response.status_code


class _Lanes:
    """A semaphore of the event loop whose waiters are served in two queues: endpoints whose
    last attempt went well first, then the others (FIFO within each). A healthy tenant's next
    event does not queue behind a crowd of receivers seen for the first time."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    async def acquire(self, first: bool) -> None:
        if self._free > 0 and not any(self._waiters):
            self._free -= 1
            return
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[0 if first else 1].append(slot)
        try:
            await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():  # handed over as it was cancelled
                self.release()
            else:  # (release skips it if it got there first)
                with contextlib.suppress(ValueError):
                    self._waiters[0 if first else 1].remove(slot)
            raise

    def release(self) -> None:
        for queue in self._waiters:
            while queue:
                slot = queue.popleft()
                if not slot.done():
                    slot.set_result(None)
                    return
        self._free += 1

    @contextlib.asynccontextmanager
    async def held(self, first: bool) -> AsyncIterator[None]:
        await self.acquire(first)
        try:
            yield
        finally:
            self.release()


class Deliveries:
    """The lanes of one process. :meth:`pump` starts lanes and returns at once (the API's
    loop); :meth:`deliver_due` runs one pass to the end (beat's task, tests)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="webhook-lanes")
        self._thread.start()
        # Blocking work off the loop: database reads and writes, and name resolution (which
        # may hang on a slow DNS server: its own threads, so the database never waits on it).
        self._db_pool = ThreadPoolExecutor(4, thread_name_prefix="webhook-db")
        self._dns_pool = ThreadPoolExecutor(8, thread_name_prefix="webhook-dns")
        concurrency = settings.webhook_concurrency
        self._slots = _Lanes(concurrency)
        self._slow_cap = max(1, concurrency // 2)
        self._suspect_slots = asyncio.Semaphore(self._slow_cap)
        self._slow_in_flight = 0  # attempts running for longer than slow_s
        self._suspect: set[str] = set()  # tenants whose last attempt failed or was slow
        self._good: set[str] = set()  # tenants whose last attempt went well
        self._busy: set[str] = set()  # tenants (endpoints) with a lane started
        self._lock = threading.Lock()

    @property
    def slow_s(self) -> float:
        """An attempt this long marks its endpoint slow (as a failure does)."""
        return min(5.0, self.settings.webhook_deadline_s / 2)

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
            lanes.append(asyncio.run_coroutine_threadsafe(self._lane(tenant, now_s),
                                                          self._loop))
        return lanes

    def deliver_due(self, now_s: float | None = None) -> int:
        """One pass: every endpoint's due events (a turn each). Returns how many were
        delivered."""
        return sum(lane.result() for lane in self.pump(now_s))

    def close(self) -> None:
        """Stop: lanes still running are cancelled (their events' leases run out and they are
        sent again later; delivery is at least once)."""
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(cancel_all(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
        self._db_pool.shutdown(wait=False, cancel_futures=True)
        self._dns_pool.shutdown(wait=False, cancel_futures=True)

    async def _blocking(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def _lane(self, tenant: str, now_s: float | None) -> int:
        delivered = 0
        try:
            async with contextlib.AsyncExitStack() as stack:
                if tenant in self._suspect:  # failing or slow: half the slots at most
                    await stack.enter_async_context(self._suspect_slots)
                await stack.enter_async_context(self._slots.held(tenant in self._good))
                # A client per turn of one endpoint: requests go to a pinned address, and a
                # pooled connection must never carry another host's request (its TLS name was
                # checked for the host it was opened for).
                per_step = min(self.settings.webhook_timeout_s, self.settings.webhook_deadline_s)
                http = await stack.enter_async_context(httpx.AsyncClient(
                    timeout=per_step, follow_redirects=False, trust_env=False))
                for _ in range(LANE_TURN):
                    t = now() if now_s is None else now_s
                    event = await self._blocking(self._db_pool, self._claim_next, tenant, t)
                    if event is None or not await self._deliver(http, event, now_s):
                        break
                    delivered += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook lane of tenant %s failed", tenant)
        finally:
            with self._lock:
                self._busy.discard(tenant)
        return delivered

    def _claim_next(self, tenant: str, t: float) -> WebhookEvent | None:
        lease = t + self.settings.webhook_deadline_s + LEASE_MARGIN_S
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

    def _endpoint(self, tenant: str) -> tuple[str, str] | None:
        with self.db.read() as s:
            row = s.execute(select(WebhookEndpoint.url, WebhookEndpoint.secret).where(
                WebhookEndpoint.tenant_id == tenant)).first()
        return None if row is None else (str(row[0]), str(row[1]))

    async def _send(self, http: httpx.AsyncClient, url: str, secret: str,
                    event: WebhookEvent) -> tuple[int | None, str | None]:
        """POST one event within the deadline. Returns (HTTP status, error): a 2xx status and
        no error on success."""
        body = json.dumps(event.payload, separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": f"synthgen-webhooks/{__version__}",
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, event.id, timestamp, body),
        }
        deadline = self.settings.webhook_deadline_s
        loop = asyncio.get_running_loop()
        counted = cut = False
        try:
            async with asyncio.timeout(deadline) as window:
                def turned_slow() -> None:
                    # Half the lanes at most may be held by attempts past slow_s: beyond that
                    # this one is cut now (and retried after its backoff), so that receivers
                    # seen for the first time cannot take every lane for a whole deadline.
                    nonlocal counted, cut
                    if self._slow_in_flight < self._slow_cap:
                        self._slow_in_flight += 1
                        counted = True
                    else:
                        cut = True
                        window.reschedule(loop.time())

                timer = loop.call_later(self.slow_s, turned_slow)
                try:
                    address = await self._blocking(self._dns_pool, check_target, url,
                                                   self.settings)
                    target, host, extensions = pinned(url, address)
                    status = await _post(http, target, body, {**headers, **host}, extensions)
                finally:
                    timer.cancel()
        except TimeoutError:
            if cut:
                return None, (f"cut after {self.slow_s:g} s: half the delivery lanes were "
                              "already held by slow receivers")
            return None, (f"the attempt passed its deadline of {deadline:g} s "
                          "(SYNTHGEN_WEBHOOK_DEADLINE_S)")
        except (httpx.HTTPError, TargetRefused) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        finally:
            if counted:
                self._slow_in_flight -= 1
        if 200 <= status < 300:
            return status, None
        return status, f"the receiver answered {status}"

    async def _deliver(self, http: httpx.AsyncClient, event: WebhookEvent,
                       now_s: float | None) -> bool:
        status: int | None
        error: str | None
        endpoint = await self._blocking(self._db_pool, self._endpoint, event.tenant_id)
        if endpoint is None:
            status, error = None, "the tenant's webhook endpoint was deleted"
            attempts = self.settings.webhook_max_attempts
        else:
            started = time.monotonic()
            status, error = await self._send(http, *endpoint, event)
            if error is not None or time.monotonic() - started > self.slow_s:
                self._suspect.add(event.tenant_id)
                self._good.discard(event.tenant_id)
            else:
                self._suspect.discard(event.tenant_id)
                self._good.add(event.tenant_id)
            attempts = event.attempts + 1
        await self._blocking(self._db_pool, self._record, event, attempts, status, error, now_s)
        return error is None

    def _record(self, event: WebhookEvent, attempts: int, status: int | None,
                error: str | None, now_s: float | None) -> None:
        settings = self.settings
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


def deliver_due(db: Database, settings: Settings, *, now_s: float | None = None) -> int:
    """One delivery pass to the end, in lanes per endpoint. Returns how many were delivered."""
    deliveries = Deliveries(db, settings)
    try:
        return deliveries.deliver_due(now_s)
    finally:
        deliveries.close()

