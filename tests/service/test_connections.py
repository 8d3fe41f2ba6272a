"""Connections for real: a PostgreSQL server started here on a free port, the service as a
subprocess. A connection's secret is never shown, a host outside the allowlist is refused, a
source dataset takes a snapshot per job (a new version when the table changed), a schedule
that reads a table and writes a table charges the source's budget each time and is refused
past the cap."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_server import PostgresServer
from sqlalchemy import select

from service.svc_helpers import Api, Service

FERNET_KEY = "x5xj2bOaTCGr5wMh6pqmWDm6gCfA6KoNMJ9yS66QkXg="  # test key: Fernet.generate_key()
ROWS = 300
PEOPLE = (
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    "CREATE TABLE people (id serial PRIMARY KEY, born date, member boolean, "
    "balance numeric(10,2), mood mood, city text)",
)
TYPES = ("SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale "
         "FROM information_schema.columns WHERE table_name = '{}' ORDER BY column_name")
FAST = {"epsilon": 1.0, "epochs": 1, "batch_size": 100, "seed": 7, "audit": False,
        "holdout_share": 0}


def _insert(start: int, stop: int) -> str:
    return (
        "INSERT INTO people (born, member, balance, mood, city) SELECT "
        "CASE WHEN g % 5 = 0 THEN NULL ELSE '1960-01-01'::date + (g * 37 % 15000) END, "
        "CASE WHEN g % 7 = 0 THEN NULL ELSE g % 3 = 0 END, "
        "CASE WHEN g % 6 = 0 THEN NULL ELSE round((g * 13 % 5000) / 3.0, 2) END, "
        "(ARRAY['sad','ok','happy'])[1 + g % 3]::mood, "
        "CASE WHEN g % 4 = 0 THEN NULL ELSE (ARRAY['Paris','Lyon','Nice','Lille'])[1 + g % 4] "
        f"END FROM generate_series({start}, {stop}) g")


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def _source(pg: PostgresServer) -> str:
    name = pg.create_database()
    pg.execute(name, *PEOPLE, _insert(1, ROWS))
    return name


def test_a_schedule_reads_and_writes_tables_and_charges_the_source_each_time(
        pg: PostgresServer, tmp_path: Path) -> None:
    from synthgen.service.budget import budget_view
    from synthgen.service.connections import create_connection, create_source_dataset
    from synthgen.service.db import Database, Dataset, Job, JobSnapshot, Schedule, Tenant
    from synthgen.service.runner import execute_job
    from synthgen.service.schedules import schedule_values, tick
    from synthgen.service.settings import Settings
    from synthgen.service.storage import Storage

    settings = Settings(data_dir=tmp_path, connection_key=FERNET_KEY, retain_uploads=False,
                        connection_allowed_hosts="127.0.0.1", device="cpu", train_threads=1,
                        lease_s=30)
    db = Database(settings.db_url)
    db.create_all()
    storage = Storage(settings.objects_url)
    source, target = _source(pg), pg.create_database()
    with db.write() as s:
        s.add(Tenant(id="t1", name="t1"))
    reads = create_connection(db, settings, "t1", pg.url(source), "crm")
    writes = create_connection(db, settings, "t1", pg.url(target), "analytics")
    dataset, created = create_source_dataset(
        db, storage, settings, "t1", reads.id, table="people", query=None, user_schema=None,
        budget_epsilon=2.0, budget_delta=None)
    assert created and dataset.rows == ROWS and dataset.version == 1
    again, created = create_source_dataset(  # one dataset (one budget) per source
        db, storage, settings, "t1", reads.id, table="people",
        query=None, user_schema=None, budget_epsilon=50.0, budget_delta=None)
    assert not created and again.id == dataset.id

    t0 = 1_700_000_000.0
    template = {"kind": "job", "jobs": [{
        "dataset_id": dataset.id, **FAST,
        "destination": {"connection_id": writes.id, "table": "people_synth",
                        "if_exists": "replace"}}]}
    with db.write() as s:
        s.add(Schedule(id="sch1", tenant_id="t1", name="nightly", template=template,
                       **schedule_values("* * * * *", "UTC", True, t0)))

    def fire(at: float) -> tuple[str, str]:
        fired = tick(db, now_s=at)
        assert len(fired) == 1
        if fired[0].status != "submitted":
            return fired[0].status, str(fired[0].reason_code)
        return execute_job(fired[0].job_ids[0], "worker-1", settings), fired[0].job_ids[0]

    outcome, first = fire(t0 + 60)
    assert outcome == "succeeded"
    written = pg.rows(target, TYPES.format("people_synth"))
    source_types = {r[0]: r[1:] for r in pg.rows(source, TYPES.format("people"))}
    assert {r[0]: r[1:] for r in written} == source_types
    count = pg.rows(target, "SELECT count(*) FROM people_synth")[0][0]
    assert isinstance(count, int) and 200 < count < 400

    pg.execute(source, _insert(ROWS + 1, ROWS + 60))  # the nightly refresh: new rows
    outcome, second = fire(t0 + 120)
    assert outcome == "succeeded"
    with db.read() as s:
        row = s.scalars(select(Dataset).where(Dataset.id == dataset.id)).one()
        jobs = {j.id: j for j in s.scalars(select(Job)).all()}
        snaps = {j.job_id: j.version for j in s.scalars(select(JobSnapshot)).all()}
        view = budget_view(s, row)
    # the first job read the content the dataset was created with (no new version); the
    # second a new version of the same dataset, under the same cap
    assert snaps == {first: 1, second: 2} and row.version == 2 and row.rows == ROWS + 60
    assert jobs[first].dataset_version == 1 and jobs[second].dataset_version == 2
    # the destination holds the rows of the job's own synthetic.csv (written in one pass)
    assert pg.rows(target, "SELECT count(*) FROM people_synth") == [(jobs[second].output_rows,)]
    charged = [jobs[first].charged_epsilon, jobs[second].charged_epsilon]
    assert all(c is not None and 0.5 < c <= 1.0 for c in charged)
    assert view["cap_epsilon"] == 2.0  # both snapshots' spend composed under one cap
    total = sum(c or 0.0 for c in charged)
    assert view["sum_of_charges"] == pytest.approx(total)
    assert {j["job_id"] for j in view["jobs"]} == {first, second}
    assert max(c or 0.0 for c in charged) < view["spent_epsilon"] <= total + 1e-9

    status, reason = fire(t0 + 180)  # past the source's cap: refused, nothing read
    assert (status, reason) == ("skipped", "budget-exceeded")
    with db.read() as s:
        assert s.scalar(select(Dataset.version).where(Dataset.id == dataset.id)) == 2
    db.dispose()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("connections"), {
        "SYNTHGEN_CONNECTION_KEY": FERNET_KEY,
        "SYNTHGEN_CONNECTION_ALLOWED_HOSTS": "127.0.0.1"})
    svc.start_api(log_level="info")
    yield svc
    svc.stop()


def test_connections_keep_their_secret_and_reach_only_allowed_hosts(
        pg: PostgresServer, service: Service) -> None:
    api = Api(service.url, service.key("conn-team"))
    other = Api(service.url, service.key("conn-other"))
    source, target = _source(pg), pg.create_database()
    wrong = "Wr0ng-pa55word-zz"
    seen: list[str] = []

    def post(path: str, body: dict[str, object], expect: int, who: Api = api
             ) -> dict[str, object]:
        r = who.http.post(path, json=body)
        seen.append(r.text)
        assert r.status_code == expect, r.text
        return dict(r.json())

    # outside the allowlist: a private address, a name, this server's own files
    for url in ("postgresql://u:pw@10.11.12.13:5432/db", "postgresql://u:pw@localhost/db",
                "sqlite:////etc/passwd", "file:///etc/"):
        refused = post("/v1/connections", {"url": url}, 422)
        assert str(refused["type"]).endswith("connection-refused"), refused
    reads = post("/v1/connections", {"url": pg.url(source), "name": "crm"}, 201)
    assert reads["display"] == pg.url(source).replace(pg.password, "***")
    writes = post("/v1/connections", {"url": pg.url(target)}, 201)
    bad = post("/v1/connections", {"url": pg.url(source, password=wrong)}, 201)
    assert post(f"/v1/connections/{reads['id']}/test", {}, 200) == {"ok": True}
    failed = post(f"/v1/connections/{bad['id']}/test", {}, 422)
    assert "password authentication failed" in str(failed["detail"])
    listed = api.http.get("/v1/connections")
    seen.append(listed.text)
    assert {c["id"] for c in listed.json()} == {reads["id"], writes["id"], bad["id"]}
    assert other.http.get(f"/v1/connections/{reads['id']}").status_code == 404

    dataset = post("/v1/datasets/from-connection",
                   {"connection_id": reads["id"], "table": "people"}, 201)
    assert dataset["rows"] == ROWS
    assert post("/v1/datasets/from-connection", {"connection_id": reads["id"],
                                                 "table": "people"}, 200)["id"] == dataset["id"]
    # the same source through another connection: the same dataset (its budget is the
    # source's, whoever reads it); another table through a connection that fails: refused
    assert post("/v1/datasets/from-connection", {"connection_id": bad["id"],
                                                 "table": "people"}, 200)["id"] == dataset["id"]
    refused = post("/v1/datasets/from-connection", {"connection_id": bad["id"],
                                                    "query": "SELECT * FROM people"}, 422)
    assert "password authentication failed" in str(refused["detail"])
    post("/v1/datasets/from-connection", {"connection_id": reads["id"], "table": "nobody"}, 422)
    post("/v1/jobs", {"dataset_id": dataset["id"], **FAST,
                      "destination": {"connection_id": "con_nope", "table": "x"}}, 422)
    job = post("/v1/jobs", {"dataset_id": dataset["id"], **FAST, "destination": {
        "connection_id": writes["id"], "table": "people_synth"}}, 202)
    done = api.wait(str(job["id"]), timeout=240)
    seen.append(str(done))
    assert done["status"] == "succeeded", done
    assert pg.rows(target, TYPES.format("people_synth")) == pg.rows(
        source, TYPES.format("people"))
    # a second job to the same table: if_exists=fail is refused before any budget is spent
    failing = post("/v1/jobs", {"dataset_id": dataset["id"], **FAST, "destination": {
        "connection_id": writes["id"], "table": "people_synth"}}, 202)
    ended = api.wait(str(failing["id"]), timeout=240)
    seen.append(str(ended))
    assert ended["status"] == "failed" and ended["error"]["code"] == "table-exists"
    assert ended["epsilon_charged"] == 0

    assert api.http.delete(f"/v1/connections/{reads['id']}").status_code == 409
    assert api.http.delete(f"/v1/connections/{bad['id']}").status_code == 204
    time.sleep(0.5)  # the log lines of the last requests
    logs = "".join(service.log(name) for name in ("api.log",))
    stored = service.query("SELECT secret, display FROM connections")
    for text in [*seen, logs, *(d for _, d in stored)]:
        assert pg.password not in text and wrong not in text
    assert all(pg.password not in secret for secret, _ in stored)  # encrypted at rest


def test_a_name_is_checked_at_each_use_and_postgres_connects_to_the_address_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from synthgen.service.connections import ConnectionRefused, check_reach, encrypt, url_of
    from synthgen.service.db import Connection
    from synthgen.service.settings import Settings

    answers = {"db.example.com": "93.184.216.34"}

    def resolve(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], 0))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    settings = Settings(connection_key=FERNET_KEY, connection_allowed_hosts="pg.internal")
    url = "postgresql://u:pw@db.example.com:5432/crm"
    assert check_reach(url, settings) == "sql"
    row = Connection(id="con_1", tenant_id="t", kind="sql", display="",
                     secret=encrypt(url, settings))
    assert url_of(row, settings) == url + "?hostaddr=93.184.216.34"
    answers["db.example.com"] = "127.0.0.1"  # rebound to loopback after it was created
    with pytest.raises(ConnectionRefused, match="private"):
        url_of(row, settings)
    allowed = "postgresql://u:pw@pg.internal/crm"  # the operator's: no lookup, no pinning
    assert check_reach(allowed, settings) == "sql"
    assert check_reach("s3://bucket/prefix/", settings) == "files"
    for refused in ("sqlite:////etc/passwd", "file:///etc/", "/etc/passwd",
                    "postgresql://u:pw@/crm"):
        with pytest.raises(ConnectionRefused):
            check_reach(refused, settings)
