"""Webhooks: Standard Webhooks signatures, target checks, the outbox's retries with backoff,
and a real receiver that gets each event of a real service exactly once."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service.svc_helpers import ADULT_SAMPLE, FAST_JOB, Api, Service, unit_database, wait_batch
from synthgen.client import InvalidSignature, verify_webhook
from synthgen.service.db import Database, Tenant, WebhookEvent
from synthgen.service.schedules import latest_fire
from synthgen.service.settings import Settings
from synthgen.service.webhook_delivery import deliver_due
from synthgen.service.webhooks import (
    TargetRefused,
    check_url,
    enqueue_event,
    set_endpoint,
)
from synthgen.signing import sign, verify


def test_signature_matches_the_standard_webhooks_reference() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the spec's published test vector
    msg_id, timestamp, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    signature = sign(secret, msg_id, timestamp, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
               "webhook-signature": f"v1,bm90IGl0 {signature}"}  # several: one must match
    assert verify(secret, headers, body, now=timestamp + 10) == msg_id
    for bad_body, at in ((body + b" ", timestamp), (body, timestamp + 301)):
        with pytest.raises(InvalidSignature):
            verify(secret, headers, bad_body, now=at)
    with pytest.raises(InvalidSignature):
        verify(secret, {"webhook-id": msg_id}, body)


@pytest.mark.parametrize(("url", "ok"), [
    ("https://hooks.example.org/synthgen", True),
    ("http://127.0.0.1:9999/hook", True),  # allowed host: loopback, plain http
    ("http://hooks.example.org/synthgen", False),  # plain http to a host not allowed
    ("https://10.0.0.5/hook", False), ("https://169.254.169.254/latest", False),
    ("https://[::1]/hook", False), ("https://localhost/hook", False),
    ("https://user:pw@hooks.example.org/", False), ("ftp://hooks.example.org/", False),
    ("not a url", False), ("https://hooks.example.org:99999/", False),
])
def test_webhook_targets_are_checked(url: str, ok: bool) -> None:
    settings = Settings(data_dir=Path("unused"), webhook_allowed_hosts="127.0.0.1")
    if ok:
        assert check_url(url, settings) == url
    else:
        with pytest.raises(TargetRefused):
            check_url(url, settings)


class Receiver:
    """A tiny HTTP server on a free loopback port that verifies and records deliveries;
    ``fail_first`` of each listed event type is answered 500 once."""

    def __init__(self, fail_first: tuple[str, ...] = (), delay_s: float = 0.0) -> None:
        self.secret = ""
        self.delay_s = delay_s  # a slow receiver: answers after this long
        self.received: list[dict[str, Any]] = []
        self.waiting: list[float] = []  # when each request arrived (answered or not)
        self.fail_first = set(fail_first)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                arrived = time.time()
                with receiver._lock:
                    receiver.waiting.append(arrived)
                time.sleep(receiver.delay_s)
                try:
                    event = verify_webhook(receiver.secret, dict(self.headers), body)
                    valid = True
                except InvalidSignature:
                    event, valid = json.loads(body), False
                with receiver._lock:
                    status = 500 if event["type"] in receiver.fail_first else 204
                    receiver.fail_first.discard(event["type"])
                    receiver.received.append({"id": self.headers["webhook-id"], "valid": valid,
                                              "status": status, "event": event,
                                              "body": body.decode(), "at": arrived,
                                              "host": self.headers["host"]})
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def acked(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.received if r["status"] == 204]

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=("job.failed",))
    yield r
    r.stop()


def test_deliveries_retry_with_exponential_backoff_then_give_up(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = Settings(data_dir=tmp_path, webhook_allowed_hosts="127.0.0.1",
                        webhook_backoff_s=10, webhook_max_attempts=3, webhook_timeout_s=5)
    db: Database = unit_database(tmp_path / "hooks.db")
    _, receiver.secret = set_endpoint(db, "t1", receiver.url)
    with db.write() as s:
        first = enqueue_event(s, "t1", "job.failed", {"job_id": "job_1", "status": "failed"})
        second = enqueue_event(s, "t1", "job.succeeded", {"job_id": "job_2"})
    t = time.time()
    assert deliver_due(db, settings, now_s=t) == 0  # job.failed answered 500
    with db.read() as s:
        event = s.scalars(select(WebhookEvent).where(WebhookEvent.id == first)).one()
        waiting = s.scalars(select(WebhookEvent).where(WebhookEvent.id == second)).one()
    assert event.state == "pending" and event.attempts == 1 and event.last_status == 500
    assert 8 <= event.next_attempt_at - t <= 12  # the first backoff, +-20%
    # per-endpoint backoff: the endpoint's next event waits as long, and is not tried yet
    assert waiting.attempts == 0 and waiting.next_attempt_at == event.next_attempt_at
    assert deliver_due(db, settings, now_s=t + 5) == 0  # not due yet: nothing is sent
    assert deliver_due(db, settings, now_s=t + 13) == 2  # in order, one lane
    assert [(r["id"], r["status"]) for r in receiver.received] == [
        (first, 500), (first, 204), (second, 204)]
    assert all(r["valid"] for r in receiver.received)

    # A receiver that never answers 2xx: the delay doubles, then the event is given up.
    _, receiver.secret = set_endpoint(db, "t1", receiver.url.replace("/hook", "/gone"))
    receiver.stop()  # nothing listens there any more: connections are refused
    with db.write() as s:
        dead = enqueue_event(s, "t1", "batch.finished", {"batch_id": "bat_1"})
    delays = []
    for _ in range(3):
        with db.read() as s:
            due = s.scalars(select(WebhookEvent).where(WebhookEvent.id == dead)).one()
        deliver_due(db, settings, now_s=due.next_attempt_at)
        with db.read() as s:
            after = s.scalars(select(WebhookEvent).where(WebhookEvent.id == dead)).one()
        delays.append(after.next_attempt_at - due.next_attempt_at)
    assert after.state == "failed" and after.attempts == 3 and "ConnectError" in (
        after.last_error or "")
    assert 8 <= delays[0] <= 12 and 16 <= delays[1] <= 24
    db.dispose()


def _until(condition: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_receiver_gets_each_event_once_with_a_valid_signature(
    embedded: Service, receiver: Receiver
) -> None:
    api = Api(embedded.url, embedded.key("hooks"))
    r = api.http.put("/v1/webhook", json={"url": receiver.url})
    assert r.status_code == 200 and r.json()["secret"].startswith("whsec_")
    receiver.secret = r.json()["secret"]
    assert "secret" not in api.http.get("/v1/webhook").json()
    refused = api.http.put("/v1/webhook", json={"url": "http://10.1.2.3/hook"})
    assert refused.status_code == 422 and refused.json()["code"] == "webhook-target-refused"

    dataset = api.upload(budget_epsilon="2")
    batch = api.http.post("/v1/batches", json={"jobs": [
        {"dataset_id": dataset["id"], **FAST_JOB, "audit": False},
        {"dataset_id": dataset["id"], "epsilon": 0.1,  # no such column: fails at once
         "target": "no-such-column"}]}).json()
    schedule = api.http.post("/v1/schedules", json={  # daily: it cannot fire again here
        "cron": "0 3 * * *", "job": {"dataset_id": dataset["id"], "epsilon": 5}}).json()
    missed = latest_fire("0 3 * * *", "UTC", time.time())  # as if serve had been down then
    with sqlite3.connect(embedded.db_path, timeout=30) as conn:
        conn.execute("UPDATE schedules SET next_fire_at = ? WHERE id = ?",
                     (missed, schedule["id"]))
    ended = wait_batch(api, batch["id"])
    assert ended["status"] == "partially_failed", ended
    _until(lambda: {r["event"]["type"] for r in receiver.acked()} >= {
        "job.succeeded", "job.failed", "batch.finished", "schedule.skipped"})
    api.http.patch(f"/v1/schedules/{schedule['id']}", json={"enabled": False})
    time.sleep(2)  # several more delivery passes: nothing is sent again

    acked = receiver.acked()
    assert all(r["valid"] for r in receiver.received)
    assert sorted(r["event"]["type"] for r in acked) == [
        "batch.finished", "job.failed", "job.succeeded", "schedule.skipped"]
    assert len({r["id"] for r in acked}) == 4  # each event exactly once
    retried = [r for r in receiver.received if r["event"]["type"] == "job.failed"]
    assert [r["status"] for r in retried] == [500, 204] and retried[0]["id"] == retried[1]["id"]
    events = {r["event"]["type"]: r["event"]["data"] for r in acked}
    assert events["batch.finished"] == {
        "batch_id": batch["id"], "status": "partially_failed", "total": 2, "succeeded": 1,
        "failed": 1, "cancelled": 0, "schedule_id": None}
    assert events["job.failed"]["error_code"] == "training-failed"
    assert events["job.failed"]["warnings"] == 0  # failed before training read the table
    succeeded = api.http.get(f"/v1/jobs/{events['job.succeeded']['job_id']}").json()
    assert events["job.succeeded"]["warnings"] == len(succeeded["warnings"]) > 0
    skipped = events["schedule.skipped"]
    assert skipped["schedule_id"] == schedule["id"] and skipped["reason_code"] == (
        "budget-exceeded")
    sample = ADULT_SAMPLE.read_text().splitlines()[1].split(",")
    for delivery in acked:  # ids and statuses, never data rows
        assert not any(f'"{v}"' in delivery["body"] for v in sample if len(v) > 3)
    assert api.http.get("/v1/webhook").json()["deliveries"] == {
        "pending": 0, "delivered": 4, "failed": 0}
    assert api.http.delete("/v1/webhook").status_code == 204
    assert api.http.get("/v1/webhook").status_code == 404


def test_a_slow_endpoint_does_not_hold_back_another_tenants_event(tmp_path: Path) -> None:
    from workers.periodic import PeriodicLoops

    slow, fast = Receiver(delay_s=8), Receiver()
    settings = Settings(data_dir=tmp_path, webhook_allowed_hosts="127.0.0.1",
                        webhook_timeout_s=3, webhook_every_s=0.3, scheduler=False)
    db: Database = unit_database(tmp_path / "hooks.db")
    with db.write() as s:
        s.add(Tenant(id="t2", name="t2"))
    set_endpoint(db, "t1", slow.url)
    _, fast.secret = set_endpoint(db, "t2", fast.url)
    with db.write() as s:  # the slow tenant's backlog comes first
        for i in range(5):
            enqueue_event(s, "t1", "job.succeeded", {"job_id": f"job_{i}"})
    loops = PeriodicLoops(settings, db, dispatcher=None)  # type: ignore[arg-type]
    loops.start()
    try:
        time.sleep(1)  # the slow endpoint's first delivery is waiting on its receiver
        with db.write() as s:
            enqueue_event(s, "t2", "job.succeeded", {"job_id": "job_fast"})
        created = time.time()
        _until(lambda: bool(fast.acked()), timeout=60)
        latency = fast.acked()[0]["at"] - created
        print(f"another tenant's event arrived {latency:.2f} s after it was created")
        assert latency < 5, latency
        with db.read() as s:  # one timeout, then the whole endpoint backs off
            tried = s.scalars(select(WebhookEvent.attempts).where(
                WebhookEvent.tenant_id == "t1").order_by(WebhookEvent.seq)).all()
        assert list(tried) == [1, 0, 0, 0, 0]
    finally:
        loops.stop()
        slow.stop()
        fast.stop()
        db.dispose()


def test_delivery_connects_to_the_address_it_checked(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name resolves to a public address for the check and to loopback
    afterwards. The delivery must go to the checked address (unreachable here), never to the
    loopback receiver, and resolve the name only once."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "hooks.rebind.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = "93.184.216.34" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    settings = Settings(data_dir=tmp_path, webhook_timeout_s=2, webhook_max_attempts=1)
    db: Database = unit_database(tmp_path / "hooks.db")
    port = receiver.url.split(":")[2].split("/")[0]
    set_endpoint(db, "t1", f"http://hooks.rebind.test:{port}/hook")
    with db.write() as s:
        enqueue_event(s, "t1", "job.succeeded", {"job_id": "job_1"})
    assert deliver_due(db, settings) == 0
    assert receiver.received == [] and lookups == ["hooks.rebind.test"]
    db.dispose()


def test_delivery_keeps_the_host_header_of_the_url(tmp_path: Path, receiver: Receiver) -> None:
    settings = Settings(data_dir=tmp_path, webhook_allowed_hosts="localhost")
    db: Database = unit_database(tmp_path / "hooks.db")
    url = receiver.url.replace("127.0.0.1", "localhost")
    _, receiver.secret = set_endpoint(db, "t1", url)
    with db.write() as s:
        enqueue_event(s, "t1", "job.succeeded", {"job_id": "job_1"})
    assert deliver_due(db, settings) == 1
    assert receiver.received[0]["host"] == url.split("/")[2]  # localhost:<port>
    db.dispose()


def test_hanging_endpoints_get_at_most_half_the_lanes(tmp_path: Path) -> None:
    """Two endpoints that hang, two lanes, a healthy tenant. Seen for the first time, the
    hanging ones take both lanes, but only one may run past slow_s (3 s here): the other is cut
    then, so the healthy event waits about 3 s, not the whole 6 s deadline. Once they have
    failed, they retry on one lane between them and the healthy tenant's next event goes at
    once (with both lanes theirs again, it would wait for a deadline)."""
    from synthgen.service.webhook_delivery import Deliveries

    hanging, healthy = Receiver(delay_s=20), Receiver()
    settings = Settings(data_dir=tmp_path, webhook_allowed_hosts="127.0.0.1",
                        webhook_concurrency=2, webhook_deadline_s=6, webhook_backoff_s=0.2,
                        webhook_max_attempts=50)
    db: Database = unit_database(tmp_path / "hooks.db")
    with db.write() as s:
        s.add_all([Tenant(id="t2", name="t2"), Tenant(id="t3", name="t3")])
    set_endpoint(db, "t1", hanging.url)
    set_endpoint(db, "t2", hanging.url)
    _, healthy.secret = set_endpoint(db, "t3", healthy.url)
    with db.write() as s:
        for tenant in ("t1", "t2"):
            for i in range(3):
                enqueue_event(s, tenant, "job.succeeded", {"job_id": f"job_{tenant}_{i}"})
    deliveries = Deliveries(db, settings)
    stop = threading.Event()

    def pump() -> None:
        while not stop.wait(0.1):
            deliveries.pump()

    def healthy_latency(n: int) -> float:
        with db.write() as s:
            enqueue_event(s, "t3", "job.succeeded", {"job_id": f"job_healthy_{n}"})
        created = time.time()
        _until(lambda: len(healthy.acked()) >= n, timeout=30)
        return float(healthy.acked()[n - 1]["at"] - created)

    def failed_once() -> bool:
        with db.read() as s:
            tried = s.scalars(select(WebhookEvent.tenant_id).where(
                WebhookEvent.last_error.is_not(None)).distinct()).all()
        return set(tried) == {"t1", "t2"}

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    try:
        _until(lambda: len(hanging.waiting) >= 2, timeout=30)
        first = healthy_latency(1)
        _until(failed_once, timeout=30)
        time.sleep(0.5)  # both retry (backoff 0.2 s): one runs, the other waits its turn
        second = healthy_latency(2)
        print(f"healthy tenant beside two hanging ones on two lanes: {first:.2f} s at first "
              f"contact (slow_s 3 s, deadline 6 s), then {second:.2f} s")
        assert first < 5, first
        assert second < 2, second
    finally:
        stop.set()
        pumping.join()
        deliveries.close()
        hanging.stop()
        healthy.stop()
        db.dispose()
