"""MySQL/MariaDB as a source and a destination, for real: a server started here on a free port
(tests/mysql_server.py), reached through SQLAlchemy's PyMySQL dialect.

What is MySQL-specific is checked here, in seconds: the column types read as declared kinds
(``BOOLEAN`` is ``TINYINT(1)`` there, ``DECIMAL`` arrives as ``Decimal``), a destination table
created with the source's types, append and replace, a read-only session, a password never
shown. The run between the two (training, sampling, ``conform``) is the same code for every
database and is run end to end against PostgreSQL in tests/test_sources.py.

Skips (with the reason) when PyMySQL or the server binaries are missing; that skip is not one of
conftest's ALLOWED_SKIPS, so under ``SYNTHGEN_NO_SKIP=1`` (``.ci/run``, which installs
``mariadb-server`` where missing) it fails instead of passing unseen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mysql_server import MySQLServer
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.errors import InputError
from synthgen.schema import ColumnKind
from synthgen.sources import SourceError, conform, read_source, write_sql

runner = CliRunner()
ROWS = 300
PEOPLE = (
    "CREATE TABLE people (id int AUTO_INCREMENT PRIMARY KEY, born date, member boolean, "
    "balance decimal(10,2), mood enum('sad','ok','happy'), city text, visits int NOT NULL)")
COLUMNS = ("SELECT column_name, column_type FROM information_schema.columns "
           "WHERE table_schema = DATABASE() AND table_name = '{}' ORDER BY column_name")


def people_rows() -> list[tuple[object, ...]]:
    """Every nullable column has NULLs (a fifth to a ninth of the rows)."""
    rows: list[tuple[object, ...]] = []
    for g in range(1, ROWS + 1):
        rows.append((
            None if g % 5 == 0 else pd.Timestamp("1960-01-01").date()
            + pd.Timedelta(days=g * 37 % 15000),
            None if g % 7 == 0 else int(g % 3 == 0),
            None if g % 6 == 0 else round((g * 13 % 5000) / 3.0, 2),
            None if g % 9 == 0 else ("sad", "ok", "happy")[g % 3],
            None if g % 4 == 0 else ("Paris", "Lyon", "Nice", "Lille")[g % 4],
            g % 10))
    return rows


@pytest.fixture(scope="module")
def my() -> Iterator[MySQLServer]:
    server = MySQLServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def source_db(my: MySQLServer) -> str:
    import pymysql

    name = my.create_database()
    my.execute(name, PEOPLE)
    conn = pymysql.connect(host="127.0.0.1", port=my.port, user=my.user,
                           password=my.password, database=name, autocommit=True)
    with conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO people (born, member, balance, mood, city, visits) "
                        "VALUES (%s, %s, %s, %s, %s, %s)", people_rows())
    return name


def test_a_mysql_table_round_trips_to_a_table_with_the_same_column_types(
        my: MySQLServer, source_db: str) -> None:
    table = read_source(my.url(source_db), table="people", chunk_rows=64)  # 5 chunks
    assert table.frame.shape == (ROWS, 7)
    assert table.schema is not None
    kinds = {c.name: c.kind for c in table.schema.columns}
    assert kinds == {"id": ColumnKind.DROP, "born": ColumnKind.DATETIME,
                     "member": ColumnKind.BOOLEAN,  # TINYINT(1): MySQL's BOOLEAN
                     "balance": ColumnKind.CONTINUOUS, "mood": ColumnKind.CATEGORICAL,
                     "visits": ColumnKind.INTEGER}  # city: TEXT, its kind from DP counts
    assert table.schema["mood"].categories == ["sad", "ok", "happy"]
    assert table.schema["visits"].nullable is False and table.schema["born"].nullable is None
    frame = table.frame
    assert str(frame["born"].dtype) == "datetime64[ns]"
    assert str(frame["member"].dtype) == "boolean"
    assert str(frame["balance"].dtype) == "float64"  # DECIMAL arrives as Decimal: converted
    assert (frame[["born", "member", "balance", "mood", "city"]].isna().sum() > 0).all()

    # rows shaped as a run's sample is (more decimals, a time of day, plain objects), in the
    # source's types through conform(), written in chunks to a new table
    fake = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    fake["balance"] = fake["balance"] + 0.001234
    fake["born"] = fake["born"] + pd.Timedelta(hours=13)
    fake["mood"] = fake["mood"].astype(object)
    target = my.create_database()
    chunks = [conform(fake.iloc[i:i + 100], table.types) for i in range(0, ROWS, 100)]
    # a mysql:// URL without a driver goes through PyMySQL (mysqlclient is not installed)
    destination = my.url(target, driver="mysql")
    assert write_sql(chunks, destination, "people_synth", types=table.types,
                     source_dialect=table.dialect) == ROWS

    assert my.rows(target, COLUMNS.format("people_synth")) == my.rows(
        source_db, COLUMNS.format("people"))  # date, tinyint(1), decimal(10,2), enum, text, int
    back = my.rows(target, "SELECT born, member, balance, mood, city, visits FROM people_synth")
    assert len(back) == ROWS
    assert {r[3] for r in back} == {None, "sad", "ok", "happy"}
    assert {r[1] for r in back} == {None, 0, 1}
    assert all(r[2] is None or r[2] == round(r[2], 2) for r in back)  # type: ignore[call-overload]
    for column in range(5):  # NULLs travel in every nullable column
        assert any(r[column] is None for r in back)
    source = my.rows(source_db, "SELECT born, member, balance, mood, city, visits FROM people")
    # conform() rounded the balances to DECIMAL(10,2) and the dates to days: the same rows
    assert sorted(map(repr, back)) == sorted(map(repr, source))

    with pytest.raises(InputError, match="already exists"):
        write_sql([frame], destination, "people_synth", types=table.types)
    assert write_sql([frame.iloc[:50]], destination, "people_synth", if_exists="append") == 50
    assert my.rows(target, "SELECT count(*) FROM people_synth") == [(ROWS + 50,)]
    assert write_sql([frame.iloc[:40]], destination, "people_synth", if_exists="replace",
                     types=table.types, source_dialect=table.dialect) == 40
    again = read_source(destination, table="people_synth", min_rows=1)
    assert len(again.frame) == 40 and again.schema is not None
    assert again.schema["member"].kind is ColumnKind.BOOLEAN
    assert np.array_equal(again.frame["member"].isna(), frame["member"].iloc[:40].isna())


def test_a_mysql_query_cannot_write_and_a_password_is_never_shown(
        my: MySQLServer, source_db: str, tmp_path: Path) -> None:
    url = my.url(source_db)
    query = read_source(url, query="SELECT born, balance, mood FROM people WHERE visits < 5")
    assert len(query.frame) == ROWS // 2
    assert query.schema is None  # MySQL's result metadata declares nothing: kinds by DP counts

    # a SELECT that writes through a function: the session is read-only
    my.execute(source_db, "CREATE TABLE seen (n int)",
               "CREATE FUNCTION bump() RETURNS int MODIFIES SQL DATA "
               "BEGIN INSERT INTO seen VALUES (1); RETURN 1; END")
    with pytest.raises(SourceError, match="READ ONLY") as refused:
        read_source(url, query="SELECT bump() AS b, visits FROM people")
    assert my.password not in str(refused.value)
    assert my.rows(source_db, "SELECT count(*) FROM seen") == [(0,)]

    wrong = "Wr0ng-my-s3cret"
    result = runner.invoke(app, ["run", my.url(source_db, password=wrong), "--table",
                                 "people", "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2, result.output
    assert "Access denied" in result.output
    assert wrong not in result.output and "***" in result.output
    assert not (tmp_path / "o.csv").exists()
    # a destination that cannot be reached is found before any row is read
    result = runner.invoke(app, ["run", url, "--table", "people", "--to-sql",
                                 my.url(source_db, password=wrong), "--to-table", "x"])
    assert result.exit_code == 2 and "Access denied" in result.output
    assert wrong not in result.output and my.password not in result.output
