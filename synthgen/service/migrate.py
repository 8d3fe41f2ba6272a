"""Schema migrations (Alembic; the revisions live in ``migrations/versions``).

Revision 0001 is the schema of the release before migrations existed. A database made by it has
every table but no ``alembic_version``: :func:`upgrade` stamps it 0001 (after checking that its
tables have 0001's columns), then applies the later revisions. A new database gets them all. A
change to the tables in :mod:`synthgen.service.db` needs a new revision; a test compares the
upgraded schema with the models and fails when one is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

BASELINE = "0001"
# Columns of 0001 that a database made by an older build may lack (then it cannot be stamped).
_BASELINE_COLUMNS = {"datasets": {"version", "budget_policy"},
                     "jobs": {"dataset_version", "batch_id"}}


class Database(Protocol):
    """What migrations need of :class:`synthgen.service.db.Database` (not imported: its
    ``create_all`` runs these migrations, and the two modules would import each other)."""

    @property
    def write_engine(self) -> Engine: ...


class MigrationError(RuntimeError):
    """The database cannot be upgraded (or is not at the revision this release needs)."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    return str(ScriptDirectory.from_config(_config()).get_current_head())


def current(db: Database) -> str | None:
    with db.write_engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the database to ``revision``; returns (revision before, revision after)."""
    with db.write_engine.connect() as conn:
        # SQLite: a revision that alters a column rebuilds the table (copy, drop, rename), and a
        # table others reference (jobs) cannot be dropped with foreign keys on. The pragma is a
        # no-op inside a transaction, so it is set before BEGIN, the keys are checked before
        # COMMIT, and it is set back before the connection returns to the pool.
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            _foreign_keys(conn, on=False)
        try:
            with conn.begin():
                before = MigrationContext.configure(conn).get_current_revision()
                config = _config(conn)
                if before is None and inspect(conn).has_table("jobs"):
                    _check_baseline(conn)
                    command.stamp(config, BASELINE)
                    before = BASELINE
                command.upgrade(config, revision)
                after = MigrationContext.configure(conn).get_current_revision()
                if sqlite and (broken := conn.exec_driver_sql("PRAGMA foreign_key_check")
                               .fetchall()):
                    raise MigrationError(f"the upgrade would break foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                _foreign_keys(conn, on=True)
    return before, after


def _foreign_keys(conn: Connection, on: bool) -> None:
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _check_baseline(conn: Connection) -> None:
    inspector = inspect(conn)
    for table, needed in _BASELINE_COLUMNS.items():
        have = {c["name"] for c in inspector.get_columns(table)}
        if missing := needed - have:
            raise MigrationError(
                f"the database predates revision {BASELINE}: table {table} lacks "
                f"{', '.join(sorted(missing))}; add them by hand (docs/service.md, 'Upgrading "
                "a database') and run synthgen db upgrade again")


def check_current(db: Database) -> None:
    """Refuse to run on a database that is not at this release's revision."""
    found, wanted = current(db), head()
    if found != wanted:
        raise MigrationError(f"the database is at revision {found or 'none'}, this release "
                             f"needs {wanted}: run 'synthgen db upgrade' first")
