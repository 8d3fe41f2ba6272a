"""Sources and destinations for real: a PostgreSQL server and moto's S3 server started here on
free ports, SQLite files. A table's column types travel from source to destination, a query
cannot write, a password is never shown, and the read stops at the limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from pg_server import PostgresServer
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.errors import InputError
from synthgen.io import ReadLimits, TableTooLarge
from synthgen.schema import ColumnKind
from synthgen.sources import (
    SourceError,
    conform,
    mask,
    mask_words,
    merge_schemas,
    read_source,
    scrub,
    write_path,
    write_sql,
)

runner = CliRunner()
ROWS = 400
PEOPLE = (
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    "CREATE TABLE people (id serial PRIMARY KEY, born date, member boolean, "
    "balance numeric(10,2), mood mood, city text, visits integer NOT NULL)",
    # every nullable column has NULLs (a fifth to a ninth of the rows)
    f"INSERT INTO people (born, member, balance, mood, city, visits) SELECT "
    "CASE WHEN g % 5 = 0 THEN NULL ELSE '1960-01-01'::date + (g * 37 % 15000) END, "
    "CASE WHEN g % 7 = 0 THEN NULL ELSE g % 3 = 0 END, "
    "CASE WHEN g % 6 = 0 THEN NULL ELSE round((g * 13 % 5000) / 3.0, 2) END, "
    "CASE WHEN g % 9 = 0 THEN NULL ELSE (ARRAY['sad','ok','happy'])[1 + g % 3]::mood END, "
    "CASE WHEN g % 4 = 0 THEN NULL ELSE (ARRAY['Paris','Lyon','Nice','Lille'])[1 + g % 4] END, "
    f"g % 10 FROM generate_series(1, {ROWS}) g",
)
TYPES = ("SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale "
         "FROM information_schema.columns WHERE table_name = '{}' ORDER BY column_name")


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def source_db(pg: PostgresServer) -> str:
    name = pg.create_database()
    pg.execute(name, *PEOPLE)
    return name


def test_a_table_round_trips_to_a_table_with_the_same_column_types(
        pg: PostgresServer, source_db: str, tmp_path: Path) -> None:
    target = pg.create_database()
    report = tmp_path / "report.json"
    result = runner.invoke(app, [
        "run", pg.url(source_db), "--table", "people", "--epsilon", "1", "--epochs", "1",
        "--seed", "0", "--to-sql", pg.url(target), "--to-table", "people_synth",
        "--report", str(report), "--no-audit", "-q"])
    assert result.exit_code == 0, result.output
    assert pg.password not in result.output

    source_types = {r[0]: r[1:] for r in pg.rows(source_db, TYPES.format("people"))}
    written = {r[0]: r[1:] for r in pg.rows(target, TYPES.format("people_synth"))}
    assert written == source_types  # DATE, BOOLEAN, NUMERIC(10,2), the enum, TEXT, INTEGER
    rows = pg.rows(target, "SELECT born, member, balance, mood::text, city, visits "
                           "FROM people_synth")
    assert abs(len(rows) - ROWS) < 100  # the DP row count
    moods = {r[3] for r in rows}
    assert moods - {None} <= {"sad", "ok", "happy"} and len(moods - {None}) >= 2
    assert all(r[2] is None or r[2] == round(r[2], 2) for r in rows)  # type: ignore[call-overload]
    assert all(r[5] is not None for r in rows)  # NOT NULL: declared, never null
    assert any(None in r[:5] for r in rows)  # NULLs travel too

    doc = json.loads(report.read_text())
    assert pg.password not in report.read_text()
    assert "***" in doc["run"]["input"]  # (the command line's URLs: mask_words, below)
    histograms = next(e for e in doc["ledger"] if e["mechanism"] == "gaussian_histograms")
    decided = histograms["params"]["decided_by_counts"]
    # the database's types declared these kinds (no budget); only the text column's kind
    # and the enum's absence of discovered categories come from counts
    for declared in ("born", "member", "balance", "mood", "visits"):
        assert "kind" not in decided.get(declared, [])
    assert "kind" in decided["city"]
    assert histograms["params"]["discovered_category_columns"] == 1  # city only, not mood
    assert "visits" not in decided  # NOT NULL integer: kind and nullability both declared

    again = runner.invoke(app, [  # the table exists now: refused before any row is read
        "run", pg.url(source_db), "--table", "people", "--to-sql", pg.url(target),
        "--to-table", "people_synth"])
    assert again.exit_code == 2 and "already exists" in again.output
    assert pg.password not in again.output


def test_the_database_types_are_a_declared_schema_under_the_users(
        pg: PostgresServer, source_db: str) -> None:
    table = read_source(pg.url(source_db), table="people", chunk_rows=64)
    assert table.frame.shape == (ROWS, 7)  # read in 7 chunks
    assert table.schema is not None
    kinds = {c.name: c.kind for c in table.schema.columns}
    assert kinds == {"id": ColumnKind.DROP, "born": ColumnKind.DATETIME,
                     "member": ColumnKind.BOOLEAN, "balance": ColumnKind.CONTINUOUS,
                     "mood": ColumnKind.CATEGORICAL, "visits": ColumnKind.INTEGER}
    assert table.schema["mood"].categories == ["sad", "ok", "happy"]
    assert table.schema["visits"].nullable is False and table.schema["born"].nullable is None
    assert str(table.frame["born"].dtype) == "datetime64[ns]"
    assert str(table.frame["member"].dtype) == "boolean"

    query = read_source(pg.url(source_db), query="SELECT born, balance, mood, city "
                                                  "FROM people WHERE visits < 5;")
    assert query.schema is not None and len(query.frame) == ROWS // 2
    assert {c.name: c.kind for c in query.schema.columns} == {
        "born": ColumnKind.DATETIME, "balance": ColumnKind.CONTINUOUS,
        "mood": ColumnKind.CATEGORICAL}
    assert query.schema["mood"].categories == ["sad", "ok", "happy"]

    from synthgen.schema import ColumnSpec, TableSchema

    mine = TableSchema(columns=[ColumnSpec(name="mood", kind=ColumnKind.DROP)])
    merged = merge_schemas(query.schema, mine)
    assert merged is not None and merged["mood"].kind is ColumnKind.DROP
    assert merged["born"].kind is ColumnKind.DATETIME

    synthetic = pd.DataFrame({"balance": [1.23456, None], "born": pd.to_datetime(
        ["2020-01-02 13:45", None])})
    shaped = conform(synthetic, query.types)
    assert shaped["balance"].iloc[0] == 1.23
    assert str(shaped["born"].iloc[0]) == "2020-01-02 00:00:00"


def test_a_query_cannot_write(pg: PostgresServer, source_db: str) -> None:
    url = pg.url(source_db)
    with pytest.raises(InputError, match="read-only"):
        read_source(url, query="DELETE FROM people")
    with pytest.raises(InputError, match="read-only"):
        read_source(url, query="SELECT 1; DROP TABLE people")
    # a writing statement behind a SELECT: the read-only transaction refuses it
    with pytest.raises(SourceError) as refused:
        read_source(url, query="WITH gone AS (DELETE FROM people RETURNING *) "
                               "SELECT * FROM gone")
    assert pg.password not in str(refused.value)
    # a SELECT that writes through a function: refused by the read-only transaction
    with pytest.raises(SourceError, match="read-only transaction"):
        read_source(url, query="SELECT setval('people_id_seq', 100000)")
    assert pg.rows(source_db, "SELECT count(*), max(id) FROM people") == [(ROWS, ROWS)]
    assert pg.rows(source_db, "SELECT last_value FROM people_id_seq") == [(ROWS,)]


def test_the_read_stops_at_the_limits(pg: PostgresServer, source_db: str) -> None:
    with pytest.raises(TableTooLarge, match="rows"):
        read_source(pg.url(source_db), table="people", chunk_rows=50,
                    limits=ReadLimits(max_rows=100))
    with pytest.raises(TableTooLarge, match="columns"):
        read_source(pg.url(source_db), table="people", limits=ReadLimits(max_columns=3))
    with pytest.raises(InputError, match="no table"):
        read_source(pg.url(source_db), table="nobody")


def test_a_password_is_never_printed(pg: PostgresServer, source_db: str,
                                     tmp_path: Path) -> None:
    wrong = "Wr0ng-s3cret-value"
    result = runner.invoke(app, ["run", pg.url(source_db, password=wrong), "--table",
                                 "people", "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2, result.output
    assert "password authentication failed" in result.output
    assert wrong not in result.output and "***" in result.output
    assert not (tmp_path / "o.csv").exists()
    # a destination that cannot be reached is found before any work
    result = runner.invoke(app, ["run", pg.url(source_db), "--table", "people", "--to-sql",
                                 pg.url(source_db, password=wrong), "--to-table", "x"])
    assert result.exit_code == 2 and wrong not in result.output
    assert pg.password not in result.output
    assert mask("postgresql://u:p%40ss@h/db") == "postgresql://u:***@h/db"
    assert mask_words(["run", "postgresql://u:pw@h/db", "--table", "t"]) == [
        "run", "postgresql://u:***@h/db", "--table", "t"]
    assert "p@ss" not in scrub("failed for p@ss at postgresql://u:p%40ss@h/db",
                               "postgresql://u:p%40ss@h/db")


def test_sqlite_table_to_sqlite_table_replace_and_append(tmp_path: Path) -> None:
    import sqlalchemy as sa

    src = f"sqlite:///{tmp_path / 'src.db'}"
    engine = sa.create_engine(src)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (day DATE, flag BOOLEAN, amount NUMERIC(8,2), "
                             "name TEXT, n INTEGER NOT NULL)"))
        conn.execute(sa.text("INSERT INTO t VALUES (:d, :f, :a, :s, :n)"), [
            {"d": f"2021-01-{1 + i % 28:02d}", "f": i % 2, "a": i * 1.25,
             "s": None if i % 5 == 0 else f"n{i % 3}", "n": i} for i in range(60)])
    engine.dispose()
    table = read_source(src, table="t")
    assert table.schema is not None and table.schema["day"].kind is ColumnKind.DATETIME
    assert table.schema["flag"].kind is ColumnKind.BOOLEAN
    assert table.schema["amount"].kind is ColumnKind.CONTINUOUS
    assert table.frame["name"].isna().sum() == 12

    dst = f"sqlite:///{tmp_path / 'dst.db'}"
    frame = table.frame
    assert write_sql([frame.iloc[:30], frame.iloc[30:]], dst, "copy", types=table.types,
                     source_dialect="sqlite") == 60
    with pytest.raises(InputError, match="already exists"):
        write_sql([frame], dst, "copy", types=table.types)
    assert write_sql([frame], dst, "copy", if_exists="append") == 60
    back = read_source(dst, table="copy")
    assert len(back.frame) == 120 and back.frame["name"].isna().sum() == 24
    assert write_sql([frame.iloc[:25]], dst, "copy", if_exists="replace",
                     types=table.types, source_dialect="sqlite") == 25
    assert len(read_source(dst, table="copy", min_rows=1).frame) == 25
    assert back.schema is not None and back.schema["day"].kind is ColumnKind.DATETIME


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from service.svc_helpers import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.start()
    yield server
    server.stop()


def test_a_bucket_folder_in_and_parquet_out(s3: object, pg: PostgresServer, source_db: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    env: dict[str, str] = s3.env  # type: ignore[attr-defined]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": env["AWS_ENDPOINT_URL"],
                                                   "skip_instance_cache": True})
    bucket = s3.bucket  # type: ignore[attr-defined]
    people = read_source(pg.url(source_db), table="people").frame
    assert write_path([people.iloc[:150]], f"s3://{bucket}/people/part-1.csv") == 150
    assert write_path([people.iloc[150:]], f"s3://{bucket}/people/part-2.csv") == 250
    folder = read_source(f"s3://{bucket}/people/")
    assert len(folder.frame) == ROWS and list(folder.frame.columns) == list(people.columns)
    assert folder.schema is None  # a file declares nothing: its kinds come from DP counts
    with pytest.raises(TableTooLarge):
        read_source(f"s3://{bucket}/people/", limits=ReadLimits(max_rows=200))
    with pytest.raises(InputError, match="does not exist"):
        read_source(f"s3://{bucket}/nothing.csv")

    result = runner.invoke(app, ["run", f"s3://{bucket}/people/", "--epsilon", "1",
                                 "--epochs", "1", "--seed", "0", "--rows", "50",
                                 "--out", f"s3://{bucket}/out/synthetic.parquet", "-q"])
    assert result.exit_code == 0, result.output
    with fsspec.open(f"s3://{bucket}/out/synthetic.parquet", "rb") as handle:
        back = pd.read_parquet(handle)
    assert len(back) == 50 and list(back.columns) == list(people.columns)


def test_a_postgresql_destination_gets_the_same_rows_through_copy(
        pg: PostgresServer, source_db: str) -> None:
    # write_sql sends PostgreSQL chunks through COPY ... FROM STDIN as text: every value must
    # arrive as the source holds it (booleans, dates, decimals, the enum, NULLs, empty text)
    table = read_source(pg.url(source_db), table="people")
    frame = table.frame.copy()
    frame["visits"] = frame["visits"].astype("float64")  # as a sample may give an integer
    frame.loc[frame["city"].isna(), "city"] = None
    frame["city"] = frame["city"].astype(object)
    frame.loc[3, "city"] = ""  # an empty string stays one, apart from NULL
    frame.loc[5, "city"] = 'a "quoted", two-line\nvalue'
    target = pg.create_database()
    chunks = [conform(frame.iloc[i:i + 150], table.types) for i in range(0, ROWS, 150)]
    assert write_sql(chunks, pg.url(target), "people_copy", types=table.types,
                     source_dialect=table.dialect) == ROWS
    columns = "id, born, member, balance, mood::text, visits"
    assert pg.rows(target, f"SELECT {columns} FROM people_copy ORDER BY id") == pg.rows(
        source_db, f"SELECT {columns} FROM people ORDER BY id")
    cities = {r[0]: r[1] for r in pg.rows(target, "SELECT id, city FROM people_copy")}
    assert cities[frame.loc[3, "id"]] == "" and cities[frame.loc[5, "id"]] == frame.loc[5, "city"]
    assert sum(v is None for v in cities.values()) == frame["city"].isna().sum()
