"""Does every column look right? Issue 21's realism benchmark on messy tables of our own.

Builds, with a fixed seed, the tables people bring (written as CSVs the way their tools write
them), runs ``synthgen run`` on each at epsilon 1 with no schema (the command a new user types),
and checks the synthetic file column by column against the input:

- ``crm`` (2,000 rows): customer id, name, ISO signup date, ``mm/dd/yyyy`` last-order date,
  ``$1,234.50`` balance, age, 5-digit ZIP codes with leading zeros, ``is_active`` True/False with
  25 % missing, a 4-value segment, free-text notes, a one-decimal score; 5-30 % missing per column;
- ``survey`` (1,000 rows): integer-coded answers and numbers with an ``N`` code;
- ``transactions`` (3,000 rows): timestamps and two-decimal amounts;
- ``dates300`` / ``dates500`` (300 / 500 rows): a ``datetime`` column in 2015-2024 (``dates500``
  with a kinds-only schema declaring it, as in the issue).

Per column: kept (any non-empty synthetic cell), the input's format (the first of a list of
regular expressions that >= 95 % of its non-empty cells match) and the share of non-empty
synthetic cells in it, the null-share gap, the share of values outside the real range (numbers,
money, dates), the top value's share gap (the real column's most frequent value, its share of the
non-empty cells in each), the 1st / 99th percentiles, real and synthetic, for dates the total
variation distance of the month-of-year shares (``mTVD``), and the distinct values per
non-empty cell, synthetic over real (``dist``: a column decoded at a few positions per bin
shows as a few values repeated). For the CRM the
issue's bars, each PASS or FAIL. ``--peer mst`` runs smartnoise-synth's MST on the same tables
(its categorical-ish columns: at most 100 distinct values; bench/peers.py, in
``--peer-python``) in the same run, with the same checks.

    python bench/realism.py --seed 0 --peer mst --peer-python /work/main/.venv-peer/bin/python
    python bench/realism.py --tables crm --write-dir /tmp/realism   # keep the CSVs

The checks read the real table (this is a benchmark, not the product).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

FIRST = ["Anna", "Ben", "Chloé", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jon", "Kim",
         "Lena", "Marco", "Nora", "Omar", "Paula", "Quinn", "Rosa", "Sam", "Tara"]
LAST = ["Smith", "Jones", "Garcia", "Müller", "Rossi", "Dubois", "Khan", "Lee", "Novak", "Silva",
        "Brown", "Wilson", "Martin", "Lopez", "Clark", "Young", "Hall", "Allen"]
WORDS = ["called", "about", "invoice", "renewal", "asked", "discount", "late", "payment",
         "happy", "upgrade", "plan", "support", "ticket", "closed", "follow", "up", "next",
         "week", "email", "sent"]


def _missing(rng: np.random.Generator, values: pd.Series, share: float) -> pd.Series:
    out = values.astype(object).copy()
    out[rng.random(len(out)) < share] = None
    return out


def crm(seed: int, rows: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    signup = pd.Timestamp("2016-01-01") + pd.to_timedelta(rng.integers(0, 365 * 7, rows), "D")
    last = signup + pd.to_timedelta(rng.integers(0, 900, rows), "D")
    # ZIP codes: 60 of them, a third in the 0xxxx range (New England, New Jersey, Puerto Rico)
    zips = np.array([f"{z:05d}" for z in np.concatenate([
        rng.integers(1000, 9999, 20), rng.integers(10000, 99999, 40)])])
    zp = rng.dirichlet(np.full(len(zips), 2.0))
    balance = np.round(rng.lognormal(6.5, 1.1, rows), 2)
    flag = rng.choice(["True", "False"], rows, p=[0.7, 0.3])
    notes = [" ".join(rng.choice(WORDS, rng.integers(3, 9))) for _ in range(rows)]
    df = pd.DataFrame({
        "customer_id": [f"C{100000 + i}" for i in rng.permutation(rows)],
        "name": [f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(rows)],
        "signup_date": signup.strftime("%Y-%m-%d"),
        "last_order": last.strftime("%m/%d/%Y"),
        "balance": [f"${b:,.2f}" for b in balance],
        "age": np.clip(np.round(rng.normal(44, 14, rows)), 18, 90).astype(int).astype(str),
        "zip": rng.choice(zips, rows, p=zp),
        "is_active": flag,
        "segment": rng.choice(["Consumer", "Small Business", "Enterprise", "Public Sector"], rows,
                              p=[0.5, 0.3, 0.15, 0.05]),
        "notes": notes,
        "score": [f"{s:.1f}" for s in np.clip(rng.normal(6.5, 1.8, rows), 0, 10)],
    })
    for column, share in (("name", 0.05), ("signup_date", 0.05), ("last_order", 0.12),
                          ("balance", 0.08), ("age", 0.10), ("zip", 0.06), ("is_active", 0.25),
                          ("segment", 0.05), ("notes", 0.30), ("score", 0.15)):
        df[column] = _missing(rng, df[column], share)
    return df


def survey(seed: int, rows: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 1)
    hours = rng.choice([20, 25, 30, 35, 38, 40, 45, 50, 60], rows,
                       p=[.05, .05, .08, .1, .12, .35, .1, .1, .05]).astype(object)
    employed = rng.choice([1, 2, 3], rows, p=[0.7, 0.1, 0.2])
    hours[employed != 1] = "N"
    income = np.round(rng.lognormal(10.4, 0.6, rows), -2).astype(int).astype(object)
    income[rng.random(rows) < 0.12] = "N"
    df = pd.DataFrame({
        "resp_id": np.arange(1, rows + 1),
        "REGION": rng.choice([1, 2, 3, 4], rows, p=[0.2, 0.25, 0.35, 0.2]),
        "EDU": rng.choice([1, 2, 3, 4, 5, 6], rows, p=[.05, .15, .3, .25, .15, .1]),
        "EMPLOYED": employed,
        "SATISF": rng.choice([1, 2, 3, 4, 5], rows, p=[.05, .1, .25, .4, .2]),
        "AGE": np.clip(np.round(rng.normal(45, 15, rows)), 16, 95).astype(int),
        "HOURS": hours,
        "INCOME": income,
        "HHSIZE": np.clip(rng.poisson(1.6, rows) + 1, 1, 9),
    })
    df["SATISF"] = _missing(rng, df["SATISF"].astype(str), 0.07)
    return df


def transactions(seed: int, rows: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 2)
    start = pd.Timestamp("2023-01-01")
    seconds = np.sort(rng.integers(0, 365 * 86400, rows))
    stamp = start + pd.to_timedelta(seconds, "s")
    category = rng.choice(["grocery", "fuel", "restaurant", "travel", "online", "pharmacy",
                           "utilities", "other"], rows, p=[.25, .12, .15, .05, .2, .08, .1, .05])
    scale = {"grocery": 3.5, "fuel": 3.8, "restaurant": 3.3, "travel": 5.5, "online": 3.6,
             "pharmacy": 3.0, "utilities": 4.5, "other": 3.5}
    amount = np.round([rng.lognormal(scale[c], 0.7) for c in category], 2)
    return pd.DataFrame({
        "txn_id": [f"T{i:08d}" for i in rng.permutation(rows)],
        "timestamp": stamp.strftime("%Y-%m-%d %H:%M:%S"),
        "amount": [f"{a:.2f}" for a in amount],
        "category": category,
        "channel": rng.choice(["card", "online", "transfer"], rows, p=[.6, .3, .1]),
        "country": rng.choice(["US", "CA", "GB", "DE", "FR"], rows, p=[.6, .1, .1, .1, .1]),
    })


def dates(seed: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed + rows)
    day = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3652, rows), "D")
    return pd.DataFrame({
        "datetime": day.strftime("%Y-%m-%d"),
        "group": rng.choice(["a", "b", "c"], rows, p=[.5, .3, .2]),
        "count": rng.poisson(4, rows),
    })


TABLES: dict[str, Callable[[int], pd.DataFrame]] = {
    "crm": crm, "survey": survey, "transactions": transactions,
    "dates300": lambda s: dates(s, 300), "dates500": lambda s: dates(s, 500),
}
# dates500 as in the issue: a kinds-only schema declaring the datetime column
SCHEMAS = {"dates500": {"columns": [{"name": "datetime", "kind": "datetime"}]}}

# ----------------------------------------------------------------------------- formats

FORMATS: list[tuple[str, str]] = [
    ("bool True/False", r"(True|False)"),
    ("ISO date", r"\d{4}-\d{2}-\d{2}"),
    ("ISO date-time", r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}"),
    ("mm/dd/yyyy", r"\d{2}/\d{2}/\d{4}"),
    ("$#,##0.00", r"-?\$\d{1,3}(,\d{3})*\.\d{2}"),
    ("5-digit code", r"\d{5}"),
    ("integer", r"-?\d+"),
    ("0.0", r"-?\d+\.\d"),
    ("0.00", r"-?\d+\.\d{2}"),
    ("integer or N", r"(-?\d+|N)"),
]


def _format_of(cells: pd.Series) -> tuple[str, str] | None:
    """The first format that >= 95 % of the non-empty cells are written in."""
    for name, pattern in FORMATS:
        if cells.str.fullmatch(pattern).mean() >= 0.95:
            return name, pattern
    return None


def _values(cells: pd.Series, fmt: str | None) -> pd.Series | None:
    """Numbers (dates as days) from cells written in ``fmt``; None for text."""
    if fmt in ("ISO date", "ISO date-time", "mm/dd/yyyy"):
        parsed = pd.to_datetime(cells, errors="coerce",
                                format="%m/%d/%Y" if fmt == "mm/dd/yyyy" else "ISO8601")
        return (parsed - pd.Timestamp("1970-01-01")).dt.total_seconds() / 86400
    if fmt in ("$#,##0.00", "integer", "0.0", "0.00", "integer or N"):
        return pd.to_numeric(cells.str.replace(r"[$,]", "", regex=True), errors="coerce")
    return None


@dataclass
class ColumnCheck:
    table: str
    model: str
    column: str
    kept: bool
    fmt: str
    format_share: float | None
    null_real: float
    null_gap: float
    outside: float | None
    top_value: str
    top_gap: float
    p1_real: float | None
    p1_syn: float | None
    p99_real: float | None
    p99_syn: float | None
    # dates: the total variation distance of the month-of-year shares (where in the year the
    # dates fall; a year-wide bin decoded at one position piles them on a few days)
    month_tvd: float | None = None
    # distinct non-empty synthetic values over the real column's (per non-empty cell): a
    # column decoded at a few positions shows as a few values repeated
    distinct: float | None = None


def _text(path: Path) -> pd.DataFrame:
    """A CSV's cells as written (empty cells as missing)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def check_columns(table: str, model: str, real: pd.DataFrame, syn: pd.DataFrame
                  ) -> list[ColumnCheck]:
    out = []
    for column in real.columns:
        r = real[column]
        s = syn[column] if column in syn.columns else pd.Series([None] * len(syn), dtype=object)
        r_cells, s_cells = r.dropna(), s.dropna()
        found = _format_of(r_cells)
        fmt_name, pattern = found if found else ("text", None)
        share = (float(s_cells.str.fullmatch(pattern).mean()) if pattern and len(s_cells)
                 else None)
        rv, sv = _values(r_cells, fmt_name), _values(s_cells, fmt_name)
        outside = p1r = p1s = p99r = p99s = None
        if rv is not None and sv is not None and rv.notna().any():
            lo, hi = rv.min(), rv.max()
            sv_num = sv.dropna()
            outside = float(((sv_num < lo) | (sv_num > hi)).mean()) if len(sv_num) else None
            p1r, p99r = (float(v) for v in rv.quantile([0.01, 0.99]))
            if len(sv_num):
                p1s, p99s = (float(v) for v in sv_num.quantile([0.01, 0.99]))
        month_tvd = distinct = None
        if fmt_name in ("ISO date", "ISO date-time", "mm/dd/yyyy") and len(s_cells):
            def months(cells: pd.Series, fmt: str = fmt_name) -> pd.Series:
                days = _values(cells, fmt)
                assert days is not None
                stamps = pd.Timestamp("1970-01-01") + pd.to_timedelta(days.dropna(), "D")
                return stamps.dt.month.value_counts(normalize=True)
            month_tvd = 0.5 * float(months(r_cells).subtract(months(s_cells), fill_value=0)
                                    .abs().sum())
        if len(s_cells) and len(r_cells):
            distinct = (s_cells.nunique() / len(s_cells)) / (r_cells.nunique() / len(r_cells))
        top = r_cells.value_counts(normalize=True)
        top_value = str(top.index[0]) if len(top) else ""
        top_real = float(top.iloc[0]) if len(top) else 0.0
        top_syn = float((s_cells == top_value).mean()) if len(s_cells) else 0.0
        out.append(ColumnCheck(
            table, model, column, kept=len(s_cells) > 0, fmt=fmt_name, format_share=share,
            null_real=float(r.isna().mean()), null_gap=float(s.isna().mean() - r.isna().mean()),
            outside=outside, top_value=top_value, top_gap=top_syn - top_real,
            p1_real=p1r, p1_syn=p1s, p99_real=p99r, p99_syn=p99s, month_tvd=month_tvd,
            distinct=distinct))
    return out


# ----------------------------------------------------------------------------- the CRM's bars

# identifiers and free text: dropped by design (no value repeats enough to be released)
EXPECTED_DROPS = {"customer_id", "name", "notes", "resp_id", "txn_id"}
LEARNABLE_CRM = ["signup_date", "last_order", "balance", "age", "zip", "is_active", "segment",
                 "score"]


def crm_bars(real: pd.DataFrame, syn: pd.DataFrame, checks: list[ColumnCheck]
             ) -> list[tuple[str, str, bool]]:
    """The issue's bars on the CRM export: (bar, measured, passed)."""
    by = {c.column: c for c in checks}
    syn = syn.reindex(columns=real.columns)  # a column the model did not give: all empty
    bars: list[tuple[str, str, bool]] = []
    dropped = [c for c in LEARNABLE_CRM if not by[c].kept]
    bars.append(("every learnable column kept", f"{8 - len(dropped)}/8 kept"
                 + (f" (dropped: {', '.join(dropped)})" if dropped else ""), not dropped))
    gaps = {c: abs(by[c].null_gap) for c in LEARNABLE_CRM}
    worst = max(gaps, key=lambda c: gaps[c])
    bars.append(("null share within 0.06 of the real one",
                 f"worst {worst} {gaps[worst]:.3f}", gaps[worst] <= 0.06))
    zips = syn["zip"].dropna().astype(str)
    five = float(zips.str.fullmatch(r"\d{5}").mean()) if len(zips) else 0.0
    among = float(zips.isin(set(real["zip"].dropna())).mean()) if len(zips) else 0.0
    bars.append(("ZIP codes all 5-digit and among the real values",
                 f"{five:.1%} 5-digit, {among:.1%} real", len(zips) > 0 and five == among == 1))
    shares = {c: by[c].format_share or 0.0 for c in ("signup_date", "last_order", "balance")}
    low = min(shares, key=lambda c: shares[c])
    bars.append((">= 99 % of dates and amounts in the input's format",
                 ", ".join(f"{c} {v:.1%}" for c, v in shares.items()), shares[low] >= 0.99))
    within = []
    for column, fmt in (("signup_date", "ISO date"), ("last_order", "mm/dd/yyyy")):
        rv = _values(real[column].dropna(), fmt)
        sv = _values(syn[column].dropna().astype(str), fmt)
        if rv is None or sv is None or not sv.notna().any():
            within.append((column, 0.0))
            continue
        sv = sv.dropna()
        within.append((column, float(((sv >= rv.min() - 365) & (sv <= rv.max() + 365)).mean())))
    bars.append(("dates within a year of the real range",
                 ", ".join(f"{c} {v:.1%}" for c, v in within), all(v == 1 for _, v in within)))
    rb = _values(real["balance"].dropna(), "$#,##0.00")
    sb = _values(syn["balance"].dropna().astype(str), "$#,##0.00")
    ratio = (float(sb.median() / rb.median()) if rb is not None and sb is not None
             and sb.notna().any() else float("nan"))
    bars.append(("median amount within 0.7-1.4x", f"{ratio:.2f}x", 0.7 <= ratio <= 1.4))
    rs = real["segment"].dropna().value_counts(normalize=True)
    ss = syn["segment"].dropna().value_counts(normalize=True)
    tvd = 0.5 * float(rs.subtract(ss, fill_value=0).abs().sum()) if len(ss) else 1.0
    bars.append(("segment TVD <= 0.1", f"{tvd:.3f}", tvd <= 0.1))
    return bars


# ----------------------------------------------------------------------------- runs


def run_synthgen(src: Path, out: Path, seed: int, epsilon: float, schema: Path | None,
                 epochs: float | None) -> tuple[float, list[str]]:
    command = [sys.executable, "-m", "synthgen", "run", str(src), "--epsilon", str(epsilon),
               "--out", str(out), "--seed", str(seed)]  # not --quiet: it hides the warnings
    if schema is not None:
        command += ["--schema", str(schema)]
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"synthgen run failed on {src.name}: {done.stderr.strip()}")
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning")]
    return time.perf_counter() - t0, warnings


def mst_columns(real: pd.DataFrame, max_values: int = 100) -> list[str]:
    """The categorical-ish columns MST is run on: at most ``max_values`` distinct values."""
    return [c for c in real.columns if real[c].nunique(dropna=True) <= max_values]


def run_mst(python: str, real: pd.DataFrame, workdir: Path, name: str, epsilon: float
            ) -> tuple[pd.DataFrame, float, list[str]]:
    columns = mst_columns(real)
    src, out = workdir / f"{name}-mst-in.csv", workdir / f"{name}-mst.csv"
    real[columns].to_csv(src, index=False)
    t0 = time.perf_counter()
    subprocess.run([python, str(Path(__file__).with_name("peers.py")), "mst", "--input",
                    str(src), "--output", str(out), "--epsilon", str(epsilon), "--delta",
                    "1e-6", "--as-text", "--categorical", *columns],
                   check=True, capture_output=True)
    return _text(out), time.perf_counter() - t0, columns


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def print_checks(checks: list[ColumnCheck]) -> None:
    head = (f"{'column':<13} {'kept':<4} {'format':<15} {'fmt%':>6} {'null':>5} {'gap':>6} "
            f"{'out%':>6} {'top':>14} {'topgap':>6} {'p1 real/syn':>21} {'p99 real/syn':>21} "
            f"{'mTVD':>5} {'dist':>5}")
    print(head)
    for c in checks:
        dates = c.fmt in ("ISO date", "ISO date-time", "mm/dd/yyyy")
        def q(v: float | None, dates: bool = dates) -> str:
            if v is None:
                return "-"
            if dates:
                return (pd.Timestamp("1970-01-01") + pd.Timedelta(days=v)).strftime("%Y-%m-%d")
            return f"{v:.4g}"
        kept = "yes" if c.kept else ("no*" if c.column in EXPECTED_DROPS else "NO")
        print(f"{c.column:<13} {kept:<4} {c.fmt:<15} "
              f"{_fmt(c.format_share, '6.1%') if c.format_share is not None else '     -'} "
              f"{c.null_real:5.2f} {c.null_gap:+6.3f} "
              f"{_fmt(c.outside, '6.1%') if c.outside is not None else '     -'} "
              f"{c.top_value[:14]:>14} {c.top_gap:+6.3f} "
              f"{q(c.p1_real) + '/' + q(c.p1_syn):>21} {q(c.p99_real) + '/' + q(c.p99_syn):>21} "
              f"{_fmt(c.month_tvd, '5.3f'):>5} {_fmt(c.distinct, '5.2f'):>5}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="the tables' and the runs' seed")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES))
    parser.add_argument("--epochs", type=float, default=None,
                        help="synthgen's epochs (default: synthgen's own)")
    parser.add_argument("--peer", choices=["mst"], default=None,
                        help="also run smartnoise MST on each table's categorical-ish columns")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="a Python that has smartnoise-synth (e.g. .venv-peer/bin/python)")
    parser.add_argument("--write-dir", type=Path, default=None,
                        help="keep the real and synthetic CSVs here")
    parser.add_argument("--json", type=Path, default=None, help="write every check here")
    args = parser.parse_args()

    every: list[dict[str, Any]] = []
    bars_all: dict[str, list[tuple[str, str, bool]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.write_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in args.tables:
            table = TABLES[name](args.seed)
            src = work / f"{name}.csv"
            table.to_csv(src, index=False)
            real = _text(src)
            schema = None
            if name in SCHEMAS:
                schema = work / f"{name}-schema.json"
                schema.write_text(json.dumps(SCHEMAS[name]))
            out = work / f"{name}-synthgen.csv"
            seconds, warned = run_synthgen(src, out, args.seed, args.epsilon, schema,
                                           args.epochs)
            syn = _text(out)
            print(f"\n== {name}: {len(real):,} rows x {real.shape[1]} columns, synthgen "
                  f"epsilon {args.epsilon:g}{' with a kinds-only schema' if schema else ''}, "
                  f"{seconds:.0f} s")
            for line in warned:
                print(f"   {line}")
            checks = check_columns(name, "synthgen", real, syn)
            print_checks(checks)
            every += [vars(c) for c in checks]
            if name == "crm":
                bars = crm_bars(real, syn, checks)
                bars_all["synthgen"] = bars
                print("CRM bars (issue 21):")
                for bar, measured, passed in bars:
                    print(f"  {'PASS' if passed else 'FAIL'}  {bar}: {measured}")
            if args.peer == "mst":
                mst, seconds, columns = run_mst(args.peer_python, real, work, name,
                                                args.epsilon)
                print(f"-- {name}: MST on {len(columns)} categorical-ish columns, {seconds:.0f} s")
                mst_checks = check_columns(name, "mst", real[columns], mst)
                print_checks(mst_checks)
                every += [vars(c) for c in mst_checks]
                if name == "crm":  # the columns MST was not given count as dropped
                    bars = crm_bars(real, mst, check_columns(name, "mst", real, mst))
                    bars_all["mst"] = bars
                    print("CRM bars (issue 21), MST:")
                    for bar, measured, passed in bars:
                        print(f"  {'PASS' if passed else 'FAIL'}  {bar}: {measured}")
    print("\n(no*: an identifier or free text, dropped by design)")
    for model, bars in bars_all.items():
        print(f"CRM bars passed, {model}: {sum(ok for _, _, ok in bars)}/{len(bars)}")
    if args.json:
        args.json.write_text(json.dumps({"checks": every, "crm_bars": bars_all}, indent=1))


if __name__ == "__main__":
    main()
