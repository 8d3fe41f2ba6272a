"""Real tables, read correctly and privately: issue 10's bars.

Builds a census-style coded table from UCI Adult (1,000 rows x 24 columns: categories stored as
integer codes, missing values as empty cells, a number with codes "N"/"-" and a few synthetic
survey columns), then runs, each at epsilon 1 through ``read_table`` + ``Synthesizer`` (what
``synthgen run`` does):

1. ``index``: the table written by ``DataFrame.to_csv()`` (index column, empty first header cell):
   it runs, and the index never appears as a learned column;
2. ``coded+schema``: the coded table with a schema listing the codes (half as JSON strings, half
   as numbers): no ``Other`` in any closed declared column, no empty cell in a column declared
   non-nullable;
3. ``readme``: README's first command (examples/adult_sample.csv + examples/adult_schema.json):
   no ``Other``, no empty cell in a non-nullable declared column;
4. ``coded``: the coded table without a schema: columns dropped (bar: at most 2, none of the
   low-cardinality integer columns).

    python bench/real_tables.py --data ../shared/data/adult --seeds 0 1 2
    python bench/real_tables.py --write-sample tests/data/coded_1000x24.csv
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthgen import Synthesizer
from synthgen.io import read_table
from synthgen.privacy.cells import match_key
from synthgen.schema import ColumnKind, TableSchema, load_schema, parse_schema

ROOT = Path(__file__).resolve().parents[1]
CODED = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
         "native-country", "Y"]
# low-cardinality integer columns of the coded table (codes and counts)
LOW_CARDINALITY = [*[c for c in CODED if c != "native-country"], "education-num", "CHILDREN",
                   "FAMSIZE", "REGION", "URBAN", "TENURE", "HHTYPE", "DIS"]


def coded_table(adult: pd.DataFrame, rows: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Adult's categories as integer codes (1 = most frequent), plus survey-like columns."""
    rng = np.random.default_rng(seed)
    df = adult.sample(rows, random_state=seed).reset_index(drop=True)
    for name in CODED:
        order = {v: i + 1 for i, v in enumerate(adult[name].value_counts().index)}
        df[name] = df[name].map(order).astype("Int64")  # missing stays missing
    df["CHILDREN"] = rng.poisson(1.1, rows).clip(0, 8)
    df["FAMSIZE"] = (df["CHILDREN"] + rng.integers(1, 3, rows)).clip(1, 9)
    df["REGION"] = rng.choice([1, 2, 3, 4], rows, p=[0.2, 0.25, 0.35, 0.2])
    df["URBAN"] = rng.choice([1, 2], rows, p=[0.7, 0.3])
    tenure = rng.choice([1, 2, 3], rows, p=[0.6, 0.3, 0.1]).astype(object)
    tenure[rng.random(rows) < 0.08] = None
    df["TENURE"] = tenure
    df["HHTYPE"] = rng.choice(np.arange(1, 8), rows, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05])
    df["DIS"] = rng.choice([1, 2], rows, p=[0.12, 0.88])
    # a number with codes: N (not applicable, 30 %), "-" (refused, 2 %), else dollars
    income = np.round(np.exp(rng.normal(10, 0.7, rows)), -2).astype(np.int64).astype(str)
    u = rng.random(rows)
    df["INCOME"] = np.where(u < 0.3, "N", np.where(u < 0.32, "-", income))
    df["WEIGHT"] = np.round(rng.gamma(4, 25, rows), 2)
    return df


def coded_schema(table: pd.DataFrame) -> TableSchema:
    """The code lists as a publisher documents them: every other column's codes as numbers."""
    columns: list[dict[str, Any]] = []
    for i, name in enumerate(CODED):
        values = sorted(int(v) for v in table[name].dropna().unique())
        codes: list[Any] = [str(v) for v in values] if i % 2 else values
        columns.append({"name": name, "kind": "categorical", "categories": codes,
                        "nullable": bool(table[name].isna().any())})
    return parse_schema({"columns": columns})


def _checks(out: pd.DataFrame, schema: TableSchema | None) -> dict[str, Any]:
    """`Other` cells in closed declared columns, empty cells in non-nullable declared ones."""
    other, empty = {}, {}
    for spec in schema.columns if schema else []:
        if spec.kind is not ColumnKind.CATEGORICAL or spec.categories is None:
            continue
        col = out[spec.name].astype(object)
        if not spec.other:  # a cell outside the closed list is an Other bucket's output
            declared = {match_key(c) for c in spec.categories}
            other[spec.name] = int((~col.dropna().map(match_key).isin(declared)).sum())
        if not spec.nullable:
            empty[spec.name] = int(col.isna().sum())
    return {"other_cells": sum(other.values()), "empty_cells": sum(empty.values()),
            "other_by_column": {k: v for k, v in other.items() if v},
            "empty_by_column": {k: v for k, v in empty.items() if v}}


def run(path: Path, schema: TableSchema | None, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    table = read_table(path)
    synth = Synthesizer(epsilon=1.0, schema=schema, seed=seed, device="cpu").fit(table)
    out = synth.sample(len(table), seed=seed)
    dropped = [d.name for d in synth.domains if d.source == "dropped"]
    return {
        "rows": len(table), "columns": len(table.columns),
        "learned_columns": [d.name for d in synth.domains if d.source != "dropped"],
        "dropped": dropped,
        "index_learned": any(c.startswith("Unnamed") or not c for c in out.columns),
        "warnings": synth.info["warnings"],
        "preprocessing_share": synth.info["preprocessing_share"],
        "epsilon": synth.report()["epsilon"],
        "seconds": time.perf_counter() - t0,
        **_checks(out, schema),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/adult"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--write-sample", type=Path, help="write the coded table here and stop")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # as synthgen run on 2 cores (see cli._set_threads)
    adult = pd.read_csv(args.data / "adult.data", skipinitialspace=True, na_values=["?"])
    table = coded_table(adult)
    if args.write_sample:
        table.to_csv(args.write_sample, index=False)
        return
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        plain, indexed = Path(tmp) / "coded.csv", Path(tmp) / "indexed.csv"
        table.to_csv(plain, index=False)
        table.to_csv(indexed)  # pandas' default: the index as an unnamed first column
        cases = {
            "index": (indexed, None),
            "coded+schema": (plain, coded_schema(table)),
            "readme": (ROOT / "examples" / "adult_sample.csv",
                       load_schema(ROOT / "examples" / "adult_schema.json")),
            "coded": (plain, None),
        }
        for seed in args.seeds:
            for name, (path, schema) in cases.items():
                r = run(path, schema, seed)
                results.setdefault(name, []).append(r)
                low = [c for c in r["dropped"] if c in LOW_CARDINALITY]
                print(f"{name:13s} seed {seed}: {r['rows']} x {r['columns']}, share "
                      f"{r['preprocessing_share']:.2f}, dropped {len(r['dropped'])} "
                      f"{r['dropped']} (low-cardinality: {low}), index learned "
                      f"{r['index_learned']}, Other cells {r['other_cells']}, empty cells in "
                      f"non-nullable {r['empty_cells']}, eps {r['epsilon']:.3f}, "
                      f"{r['seconds']:.1f} s")
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
