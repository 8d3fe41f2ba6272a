"""Webhook soak: hostile receivers beside a healthy one, against a real ``synthgen serve``.

Starts ``synthgen serve`` (embedded engine, no training processes) on a free loopback port with a
fresh data folder and the production webhook settings (deadline 15 s, 64 lanes; only the loopback
host allowed and the delivery pass every 0.3 s), then gives one tenant each receiver below, all
threads of this process on 127.0.0.1:

* ``healthy``  (1 tenant): answers 204 at once;
* ``drip``     (8 tenants): answer one byte every 5 s (the chaos run's attack);
* ``hang``     (4 tenants): read the request and never answer;
* ``huge``     (2 tenants): answer 200 with a 2 GiB body, sent as fast as the API reads;
* ``fail500``  (4 tenants): answer 500 at once;
* ``refused``  (2 tenants): nothing listens on their port.

For ``--seconds`` every tenant gets an event every ``--every`` seconds (written into the
server's outbox, as a job's settlement would), the healthy tenant's latency (event written ->
request received) is measured, the API's resident memory is sampled every 50 ms, and each
hostile connection's hold time is recorded. Prints a table. Bounded in time (the run, then at
most 20 s for the last deliveries) and in bytes (a huge receiver stops at 2 GiB).

    python bench/webhook_soak.py --seconds 60
    python bench/webhook_soak.py --seconds 60 --concurrency 8
"""

from __future__ import annotations

import argparse
import os
import select as select_io
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthgen.service.db import Database, Tenant  # noqa: E402
from synthgen.service.keys import create_key  # noqa: E402
from synthgen.service.webhooks import enqueue_event  # noqa: E402

GIB = 1024**3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_server(data_dir: Path, port: int, concurrency: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SYNTHGEN_DATA_DIR": str(data_dir), "SYNTHGEN_LOCAL_WORKERS": "0",
           "SYNTHGEN_WEBHOOK_CONCURRENCY": str(concurrency),
           "SYNTHGEN_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "SYNTHGEN_WEBHOOK_EVERY_S": "0.3",
           "SYNTHGEN_SCHEDULER": "false", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "synthgen", "serve", "--port", str(port),
                             "--log-level", "warning"], cwd=ROOT, env=env,
                            stdout=open(data_dir / "api.log", "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the API did not start; see api.log")


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length and (chunk := conn.recv(65536)):
        body += chunk


def _peer_closed(conn: socket.socket, seconds: float, stop: threading.Event) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        ready, _, _ = select_io.select([conn], [], [], 0.05)
        if ready and not conn.recv(1, socket.MSG_PEEK):
            return True
    return stop.is_set()


class Receiver:
    """One loopback server; ``answer`` runs per connection after the request is read."""

    def __init__(self, kind: str, answer: Callable[[Receiver, socket.socket], None]) -> None:
        self.kind, self.answer = kind, answer
        self.stop = threading.Event()
        self.holds: list[float] = []  # seconds each connection stayed open
        self.arrivals: list[float] = []  # monotonic time each request was read
        self.sent = 0  # body bytes (huge)
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        opened = time.monotonic()
        with conn:
            try:
                _read_request(conn)
                with self.lock:
                    self.arrivals.append(time.monotonic())
                self.answer(self, conn)
            except OSError:
                pass
        with self.lock:
            self.holds.append(time.monotonic() - opened)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def healthy(r: Receiver, conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")


def drip(r: Receiver, conn: socket.socket) -> None:
    for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n":
        if _peer_closed(conn, 5, r.stop):
            return
        conn.sendall(bytes([byte]))


def hang(r: Receiver, conn: socket.socket) -> None:
    _peer_closed(conn, 3600, r.stop)


def huge(r: Receiver, conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (2 * GIB))
    block, sent = b"\0" * (1024 * 1024), 0
    while sent < 2 * GIB and not r.stop.is_set():
        conn.sendall(block)
        sent += len(block)
        with r.lock:
            r.sent += len(block)


def fail500(r: Receiver, conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")


KINDS: list[tuple[str, int, Callable[[Receiver, socket.socket], None] | None]] = [
    ("healthy", 1, healthy), ("drip", 8, drip), ("hang", 4, hang), ("huge", 2, huge),
    ("fail500", 4, fail500), ("refused", 2, None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between a tenant's "
                        "events")
    parser.add_argument("--concurrency", type=int, default=64, help="SYNTHGEN_WEBHOOK_"
                        "CONCURRENCY (8: the old pool's size, fewer lanes than hostile tenants)")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="webhook-soak-"))
    port = free_port()
    proc = start_server(data_dir, port, args.concurrency)
    db = Database(f"sqlite:///{data_dir / 'synthgen.db'}")
    receivers: list[Receiver] = []
    tenants: list[tuple[str, str, Receiver | None]] = []  # (kind, tenant id, receiver)
    try:
        for kind, count, answer in KINDS:
            for i in range(count):
                receiver = Receiver(kind, answer) if answer else None
                target = receiver.port if receiver else free_port()  # nothing listens there
                if receiver:
                    receivers.append(receiver)
                tenant_id, key = create_key(db, f"{kind}-{i}")
                r = httpx.put(f"http://127.0.0.1:{port}/v1/webhook", timeout=30,
                              headers={"Authorization": f"Bearer {key}"},
                              json={"url": f"http://127.0.0.1:{target}/hook"})
                r.raise_for_status()
                tenants.append((kind, tenant_id, receiver))
        healthy_receiver = next(r for k, _, r in tenants if k == "healthy")
        assert healthy_receiver is not None
        written: list[float] = []  # monotonic time each healthy event was written
        rss: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                rss.append(rss_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        rss.append(rss_mb(proc.pid))
        sampler.start()
        start = time.monotonic()
        seq = 0
        while time.monotonic() - start < args.seconds:
            with db.write() as s:
                for _kind, tenant_id, _ in tenants:
                    enqueue_event(s, tenant_id, "job.succeeded", {"job_id": f"job_{seq}"})
            written.append(time.monotonic())  # committed: deliverable from now
            seq += 1
            time.sleep(max(0.0, args.every - (time.monotonic() - written[-1])))
        # the last healthy events: at most 20 s more
        deadline = time.monotonic() + 20
        while len(healthy_receiver.arrivals) < len(written) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        sampler.join()
        with db.read() as s:
            names = {t.id: t.name.split("-")[0] for t in s.scalars(select(Tenant))}
            rows = [tuple(r) for r in s.execute(text(
                "SELECT tenant_id, state, count(*), sum(attempts) FROM webhook_events "
                "GROUP BY tenant_id, state"))]
        report(args, tenants, written, healthy_receiver, rss, names, rows)
    finally:
        for receiver in receivers:
            receiver.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        db.dispose()


def report(args: argparse.Namespace, tenants: list[tuple[str, str, Receiver | None]],
           written: list[float], healthy_receiver: Receiver, rss: list[float],
           names: dict[str, str], rows: list[tuple[str, str, int, int]]) -> None:
    arrivals = healthy_receiver.arrivals
    latencies = [a - w for w, a in zip(written, arrivals, strict=False)]
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0

    print(f"\nwebhook soak: {args.seconds:g} s, an event per tenant every {args.every:g} s, "
          f"{len(tenants)} tenants on 127.0.0.1 (deadline 15 s, {args.concurrency} lanes)\n")
    print(f"healthy tenant: {len(arrivals)} of {len(written)} events delivered; latency "
          f"p50 {statistics.median(latencies) if latencies else 0:.2f} s, p95 {pct(0.95):.2f} s, "
          f"max {max(latencies, default=0):.2f} s")
    print(f"API resident memory: start {rss[0]:.0f} MB, peak {max(rss):.0f} MB "
          f"(+{max(rss) - rss[0]:.0f} MB), end {rss[-1]:.0f} MB\n")
    print(f"{'kind':<9} {'tenants':>7} {'delivered':>9} {'pending':>8} {'failed':>7} "
          f"{'attempts':>8} {'conns':>6} {'hold p50 s':>10} {'hold max s':>10} {'body MiB':>9}")
    by_kind: dict[str, dict[str, int]] = {}
    for tenant_id, state, count, attempts in rows:
        kind = names.get(tenant_id, "?")
        totals = by_kind.setdefault(kind, {"delivered": 0, "pending": 0, "failed": 0,
                                           "attempts": 0})
        totals[state] = totals.get(state, 0) + int(count)
        totals["attempts"] += int(attempts or 0)
    for kind, count, _ in KINDS:
        recs = [r for k, _, r in tenants if k == kind and r is not None]
        holds = sorted(h for r in recs for h in r.holds)
        totals = by_kind.get(kind, {})
        print(f"{kind:<9} {count:>7} {totals.get('delivered', 0):>9} "
              f"{totals.get('pending', 0):>8} {totals.get('failed', 0):>7} "
              f"{totals.get('attempts', 0):>8} {len(holds):>6} "
              f"{statistics.median(holds) if holds else 0:>10.2f} "
              f"{max(holds, default=0):>10.2f} {sum(r.sent for r in recs) / 2**20:>9.1f}")


if __name__ == "__main__":
    main()
