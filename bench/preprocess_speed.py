"""Preprocessing speed: schema inference + DP domain histograms + encoding, and decoding.

Times synthgen's preprocessing of UCI Adult (the core issue's bar: under 1 s on CPU) and of a
larger table made by repeating Adult (rows/s; issue 6 asks for >= 1 M rows/s on one core), each
in two forms: text columns as categoricals (what ``synthgen.io.read_table`` returns) and as
Python strings (a plain ``pandas.read_csv``, as a caller of ``Synthesizer.fit`` may pass). The
baseline in the same run is a plain ``pandas.get_dummies`` one-hot encoding of the same table,
so the ratio is meaningful on a shared, noisy machine. Encoding is ``TableEncoder.encode`` (the
compact slots and scalars training keeps); decoding is ``TableEncoder.decode`` of them.

``--csv-mb N`` also writes Adult repeated to an N MB CSV and reads it with
``synthgen.io.read_table`` and with a plain ``pandas.read_csv``, each in a fresh process, and
reports their time and peak resident memory.

    python bench/preprocess_speed.py --data ../shared/data/adult --repeat 31 --threads 1
    python bench/preprocess_speed.py --data ../shared/data/adult --repeat 31 --csv-mb 1024
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthgen.privacy import BudgetPlan
from synthgen.privacy.domains import estimate_domains
from synthgen.schema import infer_schema
from synthgen.transform import TableEncoder


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(df: pd.DataFrame, decode_threads: int) -> dict[str, float]:
    state: dict[str, Any] = {}

    def schema() -> None:
        state["schema"] = infer_schema(df)

    def domains() -> None:
        state["est"] = estimate_domains(df, state["schema"], BudgetPlan(1.0, 1e-6),
                                        np.random.default_rng(0))

    def encode() -> None:
        state["enc"] = TableEncoder(state["est"].domains)
        state["x"] = state["enc"].encode(df)

    def decode() -> None:
        state["enc"].decode(state["x"].slots, state["x"].scalars)

    def decode_threads_() -> None:
        state["enc"].decode(state["x"].slots, state["x"].scalars, threads=decode_threads)

    def baseline() -> None:
        pd.get_dummies(df, dummy_na=True)

    steps = [("schema_s", schema), ("domains_s", domains), ("encode_s", encode),
             ("decode_s", decode), ("get_dummies_s", baseline)]
    if decode_threads > 1:
        steps.append(("decode_threads_s", decode_threads_))
    out: dict[str, float] = {name: best_of(fn) for name, fn in steps}
    out["preprocess_s"] = out["schema_s"] + out["domains_s"] + out["encode_s"]
    out["rows"] = len(df)
    out["preprocess_rows_per_s"] = len(df) / out["preprocess_s"]
    out["decode_rows_per_s"] = len(df) / out["decode_s"]
    out["ratio_vs_get_dummies"] = out["preprocess_s"] / out["get_dummies_s"]
    out["decode_ratio_vs_get_dummies"] = out["decode_s"] / out["get_dummies_s"]
    return out


def categorical_text(df: pd.DataFrame) -> pd.DataFrame:
    """Text columns as categoricals, as synthgen.io.read_table returns them."""
    return df.apply(lambda c: c.astype("category") if c.dtype == object else c)


_READERS = {
    "synthgen.io.read_table": "from synthgen.io import read_table as r; df = r(p, max_bytes=2**40)",
    "pandas.read_csv": "import pandas as pd; df = pd.read_csv(p, low_memory=False)",
}


def measure_reading(adult: pd.DataFrame, megabytes: int) -> dict[str, dict[str, float]]:
    """Time and peak memory of reading a large CSV, each reader in a fresh process."""
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        block = adult.to_csv(index=False, header=False).encode()
        with open(path, "wb") as f:
            f.write(",".join(adult.columns).encode() + b"\n")
            for _ in range(max(1, megabytes * 1024**2 // len(block))):
                f.write(block)
        size = path.stat().st_size
        for name, code in _READERS.items():
            script = (
                "import resource, sys, time; p = sys.argv[1]; t0 = time.perf_counter(); "
                f"{code}; t = time.perf_counter() - t0; "
                "m = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024; "
                "print(t, m, len(df), df.memory_usage(deep=True).sum())"
            )
            result = subprocess.run([sys.executable, "-c", script, str(path)], check=True,
                                    capture_output=True, text=True, env=dict(os.environ))
            seconds, peak, rows, table = result.stdout.split()
            out[name] = {"seconds": float(seconds), "peak_rss_bytes": float(peak),
                         "rows": float(rows), "table_bytes": float(table),
                         "file_bytes": float(size)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/adult"))
    parser.add_argument("--repeat", type=int, default=31, help="copies of Adult for the large run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--decode-threads", type=int, default=1,
                        help="also time decode(threads=N) when N > 1")
    parser.add_argument("--csv-mb", type=int, default=0, help="also read a CSV of this size")
    args = parser.parse_args()
    import torch  # only to pin its thread pool: preprocessing itself does not use torch

    torch.set_num_threads(args.threads)
    adult = pd.read_csv(args.data / "adult.data", skipinitialspace=True, na_values=["?"])
    large = pd.concat([adult] * args.repeat, ignore_index=True)
    tables = {"adult": adult, "large": large}
    results: dict[str, Any] = {}
    for name, table in tables.items():
        results[f"{name}_categorical"] = measure(categorical_text(table), args.decode_threads)
        results[f"{name}_strings"] = measure(table, args.decode_threads)
    for name, r in results.items():
        print(f"{name:18s} rows={r['rows']:>9,} preprocess={r['preprocess_s']:.3f}s "
              f"({r['preprocess_rows_per_s'] / 1e6:.2f} M rows/s, "
              f"{r['ratio_vs_get_dummies']:.2f}x get_dummies) decode={r['decode_s']:.3f}s "
              f"({r['decode_rows_per_s'] / 1e6:.2f} M rows/s, "
              f"{r['decode_ratio_vs_get_dummies']:.2f}x get_dummies) "
              f"get_dummies={r['get_dummies_s']:.3f}s")
    if args.csv_mb:
        results["reading"] = measure_reading(adult, args.csv_mb)
        for name, r in results["reading"].items():
            print(f"read {r['file_bytes'] / 1e6:.0f} MB with {name}: {r['seconds']:.1f}s, "
                  f"peak RSS {r['peak_rss_bytes'] / 1e6:.0f} MB, table "
                  f"{r['table_bytes'] / 1e6:.0f} MB ({r['rows']:,.0f} rows)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
