"""Utility of synthgen on UCI Adult at several epsilons (the core issue's protocol).

Trains on adult.data (32,561 rows, '?' as missing) through the CLI on a plain CSV, generates as
many rows, then reports (a) SDMetrics QualityReport overall score against the real training table
and (b) train-on-synthetic / test-on-real: HistGradientBoostingClassifier (native categorical
features, random_state=0) predicting Y on adult.test; ROC AUC and F1. Also the spent epsilon from
the report and the wall time of the whole `synthgen run`.

    python bench/utility.py --data ../shared/data/adult --epsilons 1 3 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "Y"


def load_adult(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, skipinitialspace=True, na_values=["?"])
    df[TARGET] = df[TARGET].str.rstrip(".")
    return df


def tstr(synthetic: pd.DataFrame, test: pd.DataFrame) -> tuple[float, float]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import f1_score, roc_auc_score

    features = [c for c in test.columns if c != TARGET]
    categorical = [c for c in features if test[c].dtype == object]

    def prepare(frame: pd.DataFrame) -> pd.DataFrame:
        x = frame[features].copy()
        for c in categorical:
            cats = sorted(test[c].dropna().unique())
            x[c] = pd.Categorical(x[c], categories=cats)
        for c in features:
            if c not in categorical:
                x[c] = pd.to_numeric(x[c], errors="coerce")
        return x

    y_syn = (synthetic[TARGET].astype(str) == ">50K").astype(int)
    y_test = (test[TARGET] == ">50K").astype(int)
    if y_syn.nunique() < 2:
        return 0.5, 0.0
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(prepare(synthetic), y_syn)
    proba = model.predict_proba(prepare(test))[:, 1]
    return float(roc_auc_score(y_test, proba)), float(f1_score(y_test, proba >= 0.5))


def quality(real: pd.DataFrame, synthetic: pd.DataFrame) -> float:
    from sdmetrics.reports.single_table import QualityReport

    metadata = {"columns": {
        c: {"sdtype": "categorical" if real[c].dtype == object else "numerical"}
        for c in real.columns
    }}
    report = QualityReport()
    report.generate(real, synthetic[real.columns], metadata, verbose=False)
    return float(report.get_score())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/adult"))
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="extra arguments for synthgen run")
    args = parser.parse_args()

    train = load_adult(args.data / "adult.data")
    test = load_adult(args.data / "adult.test")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "adult.csv"
        train.to_csv(plain, index=False)  # a plain CSV: header row, empty cells for missing
        real_auc, real_f1 = tstr(train, test)
        rows.append({"model": "real data", "epsilon": float("inf"), "auc": real_auc,
                     "f1": real_f1, "quality": float("nan"), "spent": float("nan"),
                     "seconds": float("nan")})
        for eps in args.epsilons:
            for seed in args.seeds:
                out, report = Path(tmp) / f"syn{eps}.csv", Path(tmp) / f"rep{eps}.json"
                t0 = time.perf_counter()
                # All rows train (the protocol); --holdout-share 0 turns off the report's audit
                # split, which would otherwise keep 10% of the rows out of training.
                subprocess.run(
                    [sys.executable, "-m", "synthgen", "run", str(plain), "--epsilon", str(eps),
                     "--out", str(out), "--report", str(report), "--seed", str(seed),
                     "--holdout-share", "0", "--quiet", *args.extra],
                    check=True,
                )
                seconds = time.perf_counter() - t0
                synthetic = pd.read_csv(out)
                rep = json.loads(report.read_text())
                auc, f1 = tstr(synthetic, test)
                rows.append({"model": "synthgen", "epsilon": eps, "seed": seed, "auc": auc,
                             "f1": f1, "quality": quality(train, synthetic),
                             "spent": rep["epsilon"], "train_rows": rep["rows"],
                             "seconds": seconds})
                print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    summary = table[table.model == "synthgen"].groupby("epsilon")[
        ["auc", "f1", "quality", "spent", "seconds"]].agg(["mean", "min"])
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    print(json.dumps({"results": rows, "numpy": np.__version__}))


if __name__ == "__main__":
    main()
