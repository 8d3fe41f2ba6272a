"""Preprocessing speed: schema inference + DP domain histograms + encoding, and decoding.

Times synthgen's preprocessing of UCI Adult (the core issue's bar: under 1 s on CPU) and of a
larger table made by repeating Adult (rows/s; issue 6 asks for >= 1 M rows/s on one core). The
baseline in the same run is a plain ``pandas.get_dummies`` one-hot encoding of the same table,
so the ratio is meaningful on a shared, noisy machine.

    python bench/preprocess_speed.py --data ../shared/data/adult --repeat 31 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from synthgen.privacy import BudgetPlan
from synthgen.privacy.domains import estimate_domains
from synthgen.schema import infer_schema
from synthgen.transform import TableEncoder


def best_of(fn, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(df: pd.DataFrame) -> dict[str, float]:
    state: dict[str, object] = {}

    def schema() -> None:
        state["schema"] = infer_schema(df)

    def domains() -> None:
        state["est"] = estimate_domains(df, state["schema"], BudgetPlan(1.0, 1e-6),  # type: ignore[arg-type]
                                        np.random.default_rng(0))

    def encode() -> None:
        state["enc"] = TableEncoder(state["est"].domains)  # type: ignore[attr-defined]
        state["x"] = state["enc"].transform(df)  # type: ignore[attr-defined]

    def decode() -> None:
        state["enc"].inverse_transform(state["x"])  # type: ignore[attr-defined]

    def baseline() -> None:
        pd.get_dummies(df, dummy_na=True)

    out = {name: best_of(fn) for name, fn in
           [("schema_s", schema), ("domains_s", domains), ("encode_s", encode),
            ("decode_s", decode), ("get_dummies_s", baseline)]}
    out["preprocess_s"] = out["schema_s"] + out["domains_s"] + out["encode_s"]
    out["rows"] = len(df)
    out["preprocess_rows_per_s"] = len(df) / out["preprocess_s"]
    out["decode_rows_per_s"] = len(df) / out["decode_s"]
    out["ratio_vs_get_dummies"] = out["preprocess_s"] / out["get_dummies_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/adult"))
    parser.add_argument("--repeat", type=int, default=31, help="copies of Adult for the large run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    adult = pd.read_csv(args.data / "adult.data", skipinitialspace=True, na_values=["?"])
    results = {"adult": measure(adult),
               "large": measure(pd.concat([adult] * args.repeat, ignore_index=True))}
    for name, r in results.items():
        print(f"{name:6s} rows={r['rows']:>9,} preprocess={r['preprocess_s']:.3f}s "
              f"({r['preprocess_rows_per_s'] / 1e6:.2f} M rows/s) decode={r['decode_s']:.3f}s "
              f"({r['decode_rows_per_s'] / 1e6:.2f} M rows/s) "
              f"get_dummies={r['get_dummies_s']:.3f}s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
