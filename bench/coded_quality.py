"""SDMetrics quality on the census-like coded table (issue 21): synthgen with and without a schema
written from the table's data dictionary, and smartnoise MST, at epsilon 1.

The table is ``tests/data/coded_1000x24.csv`` (1,000 rows x 24 columns, built from UCI Adult by
``bench/real_tables.py``: Adult's 9 category columns as integer codes, missing values as empty
cells; a number with codes ``INCOME`` (``N``, ``-``); survey-like code and count columns; a
continuous ``WEIGHT``). The schema is what its dictionary says, not read off the rows: each code
column's code list (Adult's category counts; REGION 1-4, URBAN and DIS 1-2, TENURE 1-3, HHTYPE
1-7), public bounds for Adult's numbers (as in ``bench/support.py``) and the counts (CHILDREN
0-8, FAMSIZE 1-9), ``INCOME`` an integer with the codes ``N`` and ``-``.

Scores: SDMetrics QualityReport overall, Column Shapes and Column Pair Trends (the mean 2-way
score), the code columns as categorical and the rest numerical (``INCOME``'s codes as missing).
MST (``bench/peers.py``) gets ``age``, ``fnlwgt``, ``hours-per-week`` and ``WEIGHT`` as continuous,
every other column as categorical (its private bounds fail on the mostly-zero money columns).

    python bench/coded_quality.py --seeds 0 1 2 --peer-python /work/main/.venv-peer/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "tests" / "data" / "coded_1000x24.csv"
CODES = {"workclass": 8, "education": 16, "marital-status": 7, "occupation": 14,
         "relationship": 6, "race": 5, "sex": 2, "native-country": 41, "Y": 2, "REGION": 4,
         "URBAN": 2, "TENURE": 3, "HHTYPE": 7, "DIS": 2}
NULLABLE = {"workclass", "occupation", "native-country", "TENURE"}
BOUNDS = {"age": (17, 90), "fnlwgt": (10000, 1500000), "education-num": (1, 16),
          "capital-gain": (0, 99999), "capital-loss": (0, 4356), "hours-per-week": (1, 99),
          "CHILDREN": (0, 8), "FAMSIZE": (1, 9)}


def dictionary_schema() -> dict[str, Any]:
    columns: list[dict[str, Any]] = []
    for name in pd.read_csv(TABLE, nrows=0).columns:
        if name in CODES:
            columns.append({"name": name, "kind": "categorical",
                            "categories": list(range(1, CODES[name] + 1)),
                            "nullable": name in NULLABLE})
        elif name in BOUNDS:
            lo, hi = BOUNDS[name]
            columns.append({"name": name, "kind": "integer", "lower": lo, "upper": hi})
        elif name == "INCOME":
            columns.append({"name": name, "kind": "integer", "codes": ["N", "-"]})
        else:
            columns.append({"name": name, "kind": "continuous"})
    return {"columns": columns}


def quality(real: pd.DataFrame, synthetic: pd.DataFrame) -> tuple[float, float, float]:
    from sdmetrics.reports.single_table import QualityReport

    categorical = set(CODES)
    metadata = {"columns": {c: {"sdtype": "categorical" if c in categorical else "numerical"}
                            for c in real.columns}}
    real, synthetic = real.copy(), synthetic[real.columns].copy()
    for frame in (real, synthetic):
        for c in real.columns:
            values = pd.to_numeric(frame[c], errors="coerce")
            frame[c] = values.astype(object).where(values.notna()) if c in categorical else values
    report = QualityReport()
    report.generate(real, synthetic, metadata, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    return (float(report.get_score()), float(props["Column Shapes"]),
            float(props["Column Pair Trends"]))


def run_synthgen(out: Path, seed: int, schema: Path | None, threads: int) -> None:
    subprocess.run([sys.executable, "-m", "synthgen", "run", str(TABLE), "--epsilon", "1",
                    "--seed", str(seed), "--out", str(out), "-q", "--threads", str(threads),
                    *(["--schema", str(schema)] if schema else [])],
                   check=True, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def run_mst(python: str, out: Path) -> None:
    # smartnoise's private bounds fail on the mostly-zero money columns at 1,000 rows
    # ("BinTransformer could not find bounds"): MST takes every column but four as categorical
    continuous = ["age", "fnlwgt", "hours-per-week", "WEIGHT"]
    categorical = [c for c in pd.read_csv(TABLE, nrows=0).columns if c not in continuous]
    subprocess.run([python, str(ROOT / "bench" / "peers.py"), "mst", "--input", str(TABLE),
                    "--output", str(out), "--epsilon", "1", "--delta", "1e-6",
                    "--categorical", *categorical, "--continuous", *continuous], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cases", nargs="+", default=["schema", "no-schema", "mst"],
                        choices=["schema", "no-schema", "mst"])
    parser.add_argument("--peer-python", default="/work/main/.venv-peer/bin/python")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    real = pd.read_csv(TABLE)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "schema.json"
        schema.write_text(json.dumps(dictionary_schema(), indent=1))
        for case in args.cases:
            for seed in args.seeds:
                out = Path(tmp) / f"{case}{seed}.csv"
                t0 = time.perf_counter()
                if case == "mst":
                    try:
                        run_mst(args.peer_python, out)
                    except subprocess.CalledProcessError:  # smartnoise's private bounds
                        print(f"mst       seed {seed}: failed", flush=True)
                        continue
                else:
                    run_synthgen(out, seed, schema if case == "schema" else None, args.threads)
                score, shapes, pairs = quality(real, pd.read_csv(out))
                row = {"case": case, "seed": seed, "quality": score, "shapes": shapes,
                       "pairs": pairs, "seconds": time.perf_counter() - t0}
                results.append(row)
                print(f"{case:9s} seed {seed}: quality {score:.3f} (shapes {shapes:.3f}, "
                      f"pairs {pairs:.3f}), {row['seconds']:.0f} s", flush=True)
    for case in args.cases:
        rows = [r for r in results if r["case"] == case]
        if not rows:
            continue
        print(f"{case:9s} mean: quality {sum(r['quality'] for r in rows) / len(rows):.3f}, "
              f"pairs {sum(r['pairs'] for r in rows) / len(rows):.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
