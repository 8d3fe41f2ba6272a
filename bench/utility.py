"""Utility of synthgen on UCI Adult at several epsilons and table sizes, beside a peer.

Trains on adult.data (32,561 rows, '?' as missing; ``--rows N`` subsamples N of them with the
seed) through the CLI on a plain CSV, generates as many rows, then reports (a) SDMetrics
QualityReport overall score (and its two properties) against the real training table and (b)
train-on-synthetic / test-on-real: HistGradientBoostingClassifier (native categorical features,
random_state=0) predicting Y on adult.test; ROC AUC and F1. Also the spent epsilon from the
report and the wall time of the whole `synthgen run`. ``--peer mst`` runs smartnoise-synth's MST
on the same table, epsilon and delta in the same run (``bench/peers.py``; ``--peer-python``
names a Python that has smartnoise-synth), and the summary gives synthgen minus the peer.

    python bench/utility.py --data ../shared/data/adult --epsilons 1 3 10
    python bench/utility.py --rows 3000 --schema examples/adult_schema.json --epsilons 1 \
        --peer mst --peer-python .venv-peer/bin/python
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "Y"


def load_adult(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SystemExit(f"error: {path} not found. These benchmarks read UCI Adult (CC BY 4.0): "
                         "put adult.data and adult.test from the UCI repository in one folder "
                         "and give it with --data")
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


def quality(real: pd.DataFrame, synthetic: pd.DataFrame) -> tuple[float, float, float]:
    """SDMetrics QualityReport: (overall, column shapes, column pair trends)."""
    from sdmetrics.reports.single_table import QualityReport

    metadata = {"columns": {
        c: {"sdtype": "categorical" if real[c].dtype == object else "numerical"}
        for c in real.columns
    }}
    report = QualityReport()
    synthetic = synthetic[real.columns].copy()
    for c in real.columns:  # the real table's types, so both sides are read alike
        if real[c].dtype == object:
            synthetic[c] = synthetic[c].astype(object).where(synthetic[c].notna())
        else:
            synthetic[c] = pd.to_numeric(synthetic[c], errors="coerce")
    report.generate(real, synthetic, metadata, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    return (float(report.get_score()), float(props["Column Shapes"]),
            float(props["Column Pair Trends"]))


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far: on a shared machine
    the wall time grows with the load, the CPU time far less."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_peer(args: argparse.Namespace, train_csv: Path, train: pd.DataFrame, eps: float,
             out: Path) -> tuple[float, float]:
    categorical = [c for c in train.columns if train[c].dtype == object]
    continuous = [c for c in train.columns if c not in categorical]
    t0, c0 = time.perf_counter(), children_cpu()
    subprocess.run(
        [args.peer_python, str(Path(__file__).with_name("peers.py")), args.peer,
         "--input", str(train_csv), "--output", str(out), "--epsilon", str(eps),
         "--delta", "1e-6", "--categorical", *categorical, "--continuous", *continuous],
        check=True,
    )
    return time.perf_counter() - t0, children_cpu() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/adult"))
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=None,
                        help="subsample adult.data to this many rows (seeded by --seeds)")
    parser.add_argument("--schema", type=Path, default=None,
                        help="a schema file passed to synthgen run (public facts)")
    parser.add_argument("--peer", choices=["mst"], default=None,
                        help="run this peer on the same table and epsilon (bench/peers.py)")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="the Python that has the peer installed")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="extra arguments for synthgen run")
    args = parser.parse_args()

    full = load_adult(args.data / "adult.data")
    test = load_adult(args.data / "adult.test")
    schema = ["--schema", str(args.schema)] if args.schema else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        real_auc, real_f1 = tstr(full, test)
        rows.append({"model": "real data", "epsilon": float("inf"), "auc": real_auc,
                     "f1": real_f1, "quality": float("nan"), "spent": float("nan"),
                     "seconds": float("nan")})
        for eps in args.epsilons:
            for seed in args.seeds:
                train = full if args.rows is None else full.sample(
                    args.rows, random_state=seed).reset_index(drop=True)
                plain = Path(tmp) / f"adult{seed}.csv"
                train.to_csv(plain, index=False)  # plain CSV: header row, empty cells missing
                out, report = Path(tmp) / f"syn{eps}.csv", Path(tmp) / f"rep{eps}.json"
                t0, c0 = time.perf_counter(), children_cpu()
                # All rows train (the protocol); --holdout-share 0 turns off the report's audit
                # split, which would otherwise keep 10% of the rows out of training.
                subprocess.run(
                    [sys.executable, "-m", "synthgen", "run", str(plain), "--epsilon", str(eps),
                     "--out", str(out), "--report", str(report), "--seed", str(seed),
                     "--holdout-share", "0", "--quiet", *schema, *args.extra],
                    check=True,
                )
                seconds, cpu = time.perf_counter() - t0, children_cpu() - c0
                synthetic = pd.read_csv(out)
                rep = json.loads(report.read_text())
                # the run's own wall and CPU seconds per stage (owner-only evaluation file)
                owner = report.with_name(report.stem + "-evaluation.json")
                stages = (json.loads(owner.read_text()).get("timings", {}) if owner.is_file()
                          else {})
                auc, f1 = tstr(synthetic, test)
                score, shapes, pairs = quality(train, synthetic)
                rows.append({"model": "synthgen", "epsilon": eps, "seed": seed, "auc": auc,
                             "f1": f1, "quality": score, "shapes": shapes, "pairs": pairs,
                             "spent": rep["epsilon"], "train_rows": len(train),
                             "seconds": seconds, "cpu_seconds": cpu,
                             "stages": {k: round(v, 2) for k, v in stages.items()}})
                print(json.dumps(rows[-1]), flush=True)
                if args.peer:
                    peer_out = Path(tmp) / f"peer{eps}.csv"
                    seconds, cpu = run_peer(args, plain, train, eps, peer_out)
                    synthetic = pd.read_csv(peer_out)
                    auc, f1 = tstr(synthetic, test)
                    score, shapes, pairs = quality(train, synthetic)
                    rows.append({"model": args.peer, "epsilon": eps, "seed": seed, "auc": auc,
                                 "f1": f1, "quality": score, "shapes": shapes, "pairs": pairs,
                                 "spent": eps, "train_rows": len(train), "seconds": seconds,
                                 "cpu_seconds": cpu})
                    print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    metrics = ["auc", "f1", "quality", "shapes", "pairs", "spent", "seconds", "cpu_seconds"]
    runs = table[table.model != "real data"]
    summary = runs.groupby(["model", "epsilon"])[metrics].agg(["mean", "min"])
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    if args.peer:  # synthgen minus the peer, seed by seed (same table, same epsilon)
        ours = runs[runs.model == "synthgen"].set_index(["epsilon", "seed"])
        peer = runs[runs.model == args.peer].set_index(["epsilon", "seed"])
        diff = (ours[["auc", "quality", "pairs"]] - peer[["auc", "quality", "pairs"]])
        print(f"synthgen minus {args.peer}, mean over seeds:")
        print(diff.groupby("epsilon").mean().to_string(float_format=lambda v: f"{v:+.3f}"))
        # issue 26's bar reads this ratio (same table, epsilon and machine, one after the other)
        ratio = ours["seconds"] / peer["seconds"]
        for (eps, seed), r in ratio.items():
            print(f"wall time synthgen / {args.peer}: epsilon {eps:g} seed {seed}: "
                  f"{ours['seconds'][(eps, seed)]:.1f} s / {peer['seconds'][(eps, seed)]:.1f} s"
                  f" = {r:.3f}")
        print(f"wall time synthgen / {args.peer}, all runs: "
              f"{ours['seconds'].sum() / peer['seconds'].sum():.3f}; CPU seconds: "
              f"{ours['cpu_seconds'].sum():.1f} / {peer['cpu_seconds'].sum():.1f} = "
              f"{ours['cpu_seconds'].sum() / peer['cpu_seconds'].sum():.3f}")
    print(json.dumps({"rows": args.rows, "results": rows, "numpy": np.__version__}))


if __name__ == "__main__":
    main()
