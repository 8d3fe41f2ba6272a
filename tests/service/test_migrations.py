"""Schema migrations: a database made by the release before them upgrades and keeps its rows;
the revisions build exactly the schema the models describe."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.svc_helpers import BASE_ENV, ROOT, Api, Service
from synthgen.service.db import Base, Database
from synthgen.service.migrate import MigrationError, check_current, head, upgrade

OLD_DB = ROOT / "tests" / "data" / "service_db_29ed3d9.sqlite"
OLD = json.loads((ROOT / "tests" / "data" / "service_db_29ed3d9.json").read_text())


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute(sql))


def test_database_of_the_previous_release_upgrades_and_keeps_its_jobs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(OLD_DB, data / "synthgen.db")
    jobs_before = _rows(data / "synthgen.db", "SELECT id, state, epsilon, charged_epsilon, "
                        "idempotency_key FROM jobs ORDER BY seq")
    assert [j[0] for j in jobs_before] == OLD["jobs"]
    env = {**BASE_ENV, "PATH": str(Path(sys.executable).parent), "SYNTHGEN_DATA_DIR": str(data)}
    done = subprocess.run([sys.executable, "-m", "synthgen", "db", "upgrade"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"database at revision {head()} (was 0001)" in done.stdout
    assert _rows(data / "synthgen.db", "SELECT version_num FROM alembic_version") == [(head(),)]
    assert _rows(data / "synthgen.db", "SELECT id, state, epsilon, charged_epsilon, "
                 "idempotency_key FROM jobs ORDER BY seq") == jobs_before
    # Revision 0003: every old job has its own secret holdout seed (the runner calls int() on
    # it) and no output attempt (its outputs are served from the job's folder, where they were).
    seeds = _rows(data / "synthgen.db", "SELECT holdout_seed, output_attempt FROM jobs")
    assert len({seed for seed, _ in seeds}) == len(OLD["jobs"])
    assert all(isinstance(seed, int) and 0 <= seed < 2**62 for seed, _ in seeds)
    assert {attempt for _, attempt in seeds} == {None}
    old_job = data / "objects" / "tenants" / OLD["tenant"] / "jobs" / OLD["jobs"][0]
    old_job.mkdir(parents=True)
    (old_job / "synthetic.csv").write_text("a,b\n1,2\n")
    (old_job / "report.json").write_text('{"epsilon": 0.5}')
    again = subprocess.run([sys.executable, "-m", "synthgen", "db", "upgrade"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and f"(was {head()})" in again.stdout

    service = Service(data, {"SYNTHGEN_LOCAL_WORKERS": "0"})  # serve it: nothing lost
    try:
        service.start_api()
        api = Api(service.url, OLD["key"])
        listed = api.http.get("/v1/jobs").json()["items"]
        assert [j["id"] for j in listed] == OLD["jobs"][::-1]
        assert listed[-1]["status"] == "succeeded" and listed[-1]["epsilon_charged"] == 0.5
        assert listed[-1]["id"] == OLD["jobs"][0]
        csv = api.http.get(f"/v1/jobs/{OLD['jobs'][0]}/synthetic.csv")
        assert csv.status_code == 200 and csv.text == "a,b\n1,2\n"
        assert api.http.get(f"/v1/jobs/{OLD['jobs'][0]}/report").json() == {"epsilon": 0.5}
        batches = api.http.get("/v1/batches").json()["items"]
        assert [b["id"] for b in batches] == [OLD["batch"]]
    finally:
        service.stop()


def test_the_revisions_build_the_schema_of_the_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert upgrade(db) == (None, head())
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"the models changed without a migration: {diff}"
    finally:
        db.dispose()


def test_a_database_behind_is_refused_unless_migrated(tmp_path: Path) -> None:
    shutil.copy(OLD_DB, tmp_path / "old.db")
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with pytest.raises(MigrationError, match="synthgen db upgrade"):
            check_current(db)
        upgrade(db)
        check_current(db)
    finally:
        db.dispose()


def test_a_database_older_than_the_baseline_is_not_stamped(tmp_path: Path) -> None:
    path = tmp_path / "older.db"
    shutil.copy(OLD_DB, path)
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE datasets DROP COLUMN budget_policy")
    db = Database(f"sqlite:///{path}")
    try:
        with pytest.raises(MigrationError, match="lacks budget_policy"):
            upgrade(db)
        assert _rows(path, "SELECT name FROM sqlite_master WHERE name = 'alembic_version'") == []
    finally:
        db.dispose()
