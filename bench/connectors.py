"""Connectors: a PostgreSQL table to a PostgreSQL table, against the same table from a CSV file.

Starts its own PostgreSQL cluster on a free port (tests/pg_server.py), fills a table of ROWS rows
(DATE, BOOLEAN, NUMERIC(10,2), an enum, TEXT, INTEGER, NULLs) with generate_series, exports it
to a CSV, then times, each in its own process (peak RSS from wait4):

1. reading only: ``read_source(postgresql://..., table=...)`` (server-side cursor, chunks of
   50,000) against ``read_table(people.csv)``;
2. the whole run at epsilon 1: ``synthgen run postgresql://... --table people --to-sql ...
   --to-table people_synth`` against ``synthgen run people.csv -o synthetic.csv``, with the same
   ``--epochs``, ``--seed`` and ``--delta`` (1/(10 n)).

Training is the same work in both arms (the same rows, steps and model size), so ``--epochs``
only scales the part they share: on a small contended machine a fraction of an epoch keeps the
1 M-row pair to minutes, and the figure that counts is the ratio of the two arms in one run. The
load average (1 min) before and after each arm is printed with it.

    python bench/connectors.py --rows 1000000 --epochs 0.1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pg_server import PostgresServer  # noqa: E402

TABLE = (
    "CREATE TYPE plan AS ENUM ('free', 'basic', 'pro', 'enterprise')",
    "CREATE TABLE people (id bigserial PRIMARY KEY, born date, member boolean, "
    "balance numeric(10,2), plan plan, city text, visits integer NOT NULL, "
    "income numeric(12,2))",
)


def fill(rows: int) -> str:
    return (
        "INSERT INTO people (born, member, balance, plan, city, visits, income) SELECT "
        "CASE WHEN random() < 0.1 THEN NULL ELSE '1940-01-01'::date "
        "+ (random() * 25000)::int END, "
        "CASE WHEN random() < 0.05 THEN NULL ELSE random() < 0.3 END, "
        "CASE WHEN random() < 0.1 THEN NULL ELSE round((random() * 9000)::numeric, 2) END, "
        "(ARRAY['free','basic','pro','enterprise'])[1 + floor(random() * random() * 4)::int]"
        "::plan, "
        "CASE WHEN random() < 0.2 THEN NULL ELSE 'city_' || floor(random() * 40)::int END, "
        "floor(random() * random() * 30)::int, "
        "round((20000 + random() * random() * 180000)::numeric, 2) "
        f"FROM generate_series(1, {rows})")


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Wall seconds, peak RSS (MiB), exit status and the load average (1 min) before and
    after, of one process."""
    before = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        print(f"FAILED ({status}): {' '.join(command[:6])}...\n{err[-2000:]}", file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, status, f"{before:.1f} / {os.getloadavg()[0]:.1f}"


def write_pair(source: str, target: str, csv: Path) -> None:
    """Write the table read from ``source`` to a CSV file, then to ``target`` through COPY and
    through batched INSERTs (the path every other database takes), in chunks of 50,000 rows
    as a run writes them; check that both tables hold the same rows."""
    import synthgen.sources as sources
    from synthgen.io import write_csv

    table = sources.read_source(source, table="people")
    chunks = [sources.conform(table.frame.iloc[i:i + 50_000], table.types)
              for i in range(0, len(table.frame), 50_000)]
    walls = {}
    t0 = time.perf_counter()
    write_csv(iter(chunks), csv)
    walls["CSV file"] = time.perf_counter() - t0
    for name, copy in (("PostgreSQL table, COPY", True), ("PostgreSQL table, INSERT", False)):
        copyable = sources._copyable
        if not copy:
            sources._copyable = lambda target: False
        t0 = time.perf_counter()
        sources.write_sql(iter(chunks), target, "people_copy" if copy else "people_insert",
                          types=table.types, source_dialect=table.dialect)
        walls[name] = time.perf_counter() - t0
        sources._copyable = copyable
    cols = "id, born, member, balance, plan::text, city, visits, income"
    from sqlalchemy import create_engine, text

    engine = create_engine(target.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        apart = conn.execute(text(
            f"SELECT (SELECT count(*) FROM (SELECT {cols} FROM people_copy EXCEPT ALL "
            f"SELECT {cols} FROM people_insert) a) + (SELECT count(*) FROM (SELECT {cols} FROM "
            f"people_insert EXCEPT ALL SELECT {cols} FROM people_copy) b)")).scalar()
    engine.dispose()
    print(f"\n| write {len(table.frame):,} rows (load {os.getloadavg()[0]:.1f}) | wall s |")
    print("| --- | ---: |")
    for name, wall in walls.items():
        print(f"| {name} | {wall:.1f} |")
    print(f"\nrows that differ between the COPY and the INSERT tables: {apart}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--read-only", action="store_true", help="only the reading part")
    parser.add_argument("--write-only", action="store_true",
                        help="only the writing part: the table to a CSV file, to a PostgreSQL "
                        "table through COPY and through INSERTs (one process)")
    args = parser.parse_args()

    pg = PostgresServer()
    pg.start()
    work = Path(tempfile.mkdtemp(prefix="synthgen-bench-"))
    try:
        source, target = pg.create_database("crm"), pg.create_database("analytics")
        t0 = time.perf_counter()
        pg.execute(source, *TABLE, fill(args.rows), "ANALYZE people")
        fill_s = time.perf_counter() - t0
        csv = work / "people.csv"
        import psycopg

        t0 = time.perf_counter()
        with psycopg.connect(pg.url(source)) as conn, conn.cursor() as cur, \
                open(csv, "wb") as out, \
                cur.copy("COPY people TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            for block in copy:
                out.write(block)
        export_s = time.perf_counter() - t0
        print(f"table: {args.rows:,} rows x 8 columns; filled in {fill_s:.1f} s; CSV "
              f"{csv.stat().st_size / 1e6:.1f} MB exported in {export_s:.1f} s")
        if args.write_only:
            write_pair(pg.url(source), pg.url(target), work / "written.csv")
            return
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        py = sys.executable
        reads = {
            "read PostgreSQL table": [py, "-c", "import sys; from synthgen.sources import "
                                      "read_source; read_source(sys.argv[1], table='people')",
                                      pg.url(source)],
            "read CSV file": [py, "-c", "import sys; from synthgen.io import read_table; "
                              "read_table(sys.argv[1])", str(csv)],
        }
        rows: list[tuple[str, float, float, int, str]] = []
        for name, command in reads.items():
            rows.append((name, *measure(command, env)))
        if not args.read_only:
            common = ["--epsilon", "1", "--epochs", str(args.epochs), "--seed", "0",
                      "--delta", f"{1 / (10 * args.rows):.1e}", "--threads",
                      str(args.threads), "-q"]
            runs = {
                "run PostgreSQL -> PostgreSQL": [
                    py, "-m", "synthgen", "run", pg.url(source), "--table", "people",
                    "--to-sql", pg.url(target), "--to-table", "people_synth", *common],
                "run CSV -> CSV": [py, "-m", "synthgen", "run", str(csv), "-o",
                                   str(work / "synthetic.csv"), *common],
            }
            for name, command in runs.items():
                rows.append((name, *measure(command, env)))
            written = pg.rows(target, "SELECT count(*) FROM people_synth")[0][0]
            print(f"destination table: {written:,} rows")
        print()
        print(f"| what ({args.rows:,} rows, --epochs {args.epochs:g}) | wall s | "
              "peak RSS MiB | exit | load before / after |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, wall, rss, status, load in rows:
            print(f"| {name} | {wall:.1f} | {rss:.0f} | {status} | {load} |")
        walls = {row[0]: row[1] for row in rows}
        if "run CSV -> CSV" in walls:
            print(f"\nPostgreSQL -> PostgreSQL / CSV -> CSV: "
                  f"{walls['run PostgreSQL -> PostgreSQL'] / walls['run CSV -> CSV']:.2f}x")
    finally:
        pg.stop()
        for path in work.iterdir():
            path.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
