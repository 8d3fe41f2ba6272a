"""Numbers keep their support and shape (issue 21): the README example's numeric columns.

Runs ``synthgen run examples/adult_sample.csv --epsilon 1`` (3,000 rows) per seed, with the
schema as shipped (kinds only, no bounds) and with public bounds declared (age 17-90, hours
1-99, capital-gain 0-99,999, capital-loss 0-4,356, education-num 1-16, fnlwgt 10,000-1,500,000),
and checks each output against the bars:

- ``age``: max <= 100, at most 0.5 % over 90 (with bounds also at least 5 % over 58);
- ``hours-per-week``: 1st percentile <= 20, 99th >= 60;
- ``education-num``: 1st percentile <= 5, 99th >= 15;
- non-zero share of ``capital-gain`` in 4-13 %, of ``capital-loss`` in 2-9 %.

Prints one row per run (the figures and which bars failed), the input's own figures, and a
JSON line with everything.

    python bench/support.py --seeds 0 1 2
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

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "adult_sample.csv"
SCHEMA = ROOT / "examples" / "adult_schema.json"
BOUNDS = {"age": (17, 90), "hours-per-week": (1, 99), "capital-gain": (0, 99999),
          "capital-loss": (0, 4356), "education-num": (1, 16), "fnlwgt": (10000, 1500000)}


def figures(df: pd.DataFrame) -> dict[str, float]:
    def col(name: str) -> pd.Series:
        return pd.to_numeric(df[name], errors="coerce").dropna()

    age, hours, edu = col("age"), col("hours-per-week"), col("education-num")
    return {
        "age_max": float(age.max()),
        "age_over_90": float((age > 90).mean()),
        "age_over_58": float((age > 58).mean()),
        "hours_p1": float(np.percentile(hours, 1)),
        "hours_p99": float(np.percentile(hours, 99)),
        "edu_p1": float(np.percentile(edu, 1)),
        "edu_p99": float(np.percentile(edu, 99)),
        "gain_nonzero": float((col("capital-gain") != 0).mean()),
        "loss_nonzero": float((col("capital-loss") != 0).mean()),
    }


def failures(f: dict[str, float], bounds: bool) -> list[str]:
    bars = {
        "age_max": f["age_max"] <= 100,
        "age_over_90": f["age_over_90"] <= 0.005,
        "hours_p1": f["hours_p1"] <= 20,
        "hours_p99": f["hours_p99"] >= 60,
        "edu_p1": f["edu_p1"] <= 5,
        "edu_p99": f["edu_p99"] >= 15,
        "gain_nonzero": 0.04 <= f["gain_nonzero"] <= 0.13,
        "loss_nonzero": 0.02 <= f["loss_nonzero"] <= 0.09,
    }
    if bounds:
        bars["age_over_58"] = f["age_over_58"] >= 0.05
    return [name for name, ok in bars.items() if not ok]


def bounded_schema(path: Path) -> None:
    schema = json.loads(SCHEMA.read_text())
    for column in schema["columns"]:
        if column["name"] in BOUNDS:
            column["lower"], column["upper"] = BOUNDS[column["name"]]
    path.write_text(json.dumps(schema, indent=1))


def run(schema: Path, seed: int, out: Path, threads: int) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "synthgen", "run", str(SAMPLE), "--schema", str(schema),
                    "--epsilon", "1", "--seed", str(seed), "--out", str(out), "-q",
                    "--threads", str(threads)], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cases", nargs="+", default=["kinds", "bounds"],
                        choices=["kinds", "bounds"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    real = figures(pd.read_csv(SAMPLE))
    print("input:", ", ".join(f"{k} {v:.4g}" for k, v in real.items()))
    results: list[dict[str, Any]] = []
    header = ("case", "seed", *real, "failed")
    print(" | ".join(header))
    with tempfile.TemporaryDirectory() as tmp:
        bounded = Path(tmp) / "bounds.json"
        bounded_schema(bounded)
        for case in args.cases:
            schema = SCHEMA if case == "kinds" else bounded
            for seed in args.seeds:
                out = Path(tmp) / f"{case}{seed}.csv"
                seconds = run(schema, seed, out, args.threads)
                f = figures(pd.read_csv(out))
                failed = failures(f, case == "bounds")
                results.append({"case": case, "seed": seed, **f, "failed": failed,
                                "seconds": seconds})
                print(" | ".join([case, str(seed), *(f"{v:.4g}" for v in f.values()),
                                  ",".join(failed) or "-"]), flush=True)
    print(json.dumps({"input": real, "runs": results}))


if __name__ == "__main__":
    main()
