"""Scale: a 1 M-row, 50-column table through `synthgen run` to epsilon 1, end to end.

Writes an Adult-like table of ``--rows`` rows and ``--columns`` columns (half numeric: skewed
amounts, integer ages and counts; half categorical with 2 to 60 values; a few columns with 3 %
missing cells; all driven by 4 shared latent factors so the columns are correlated) as a CSV,
then runs the CLI's `run` command in this process on it, exactly as a user would:

    synthgen run table.csv --epsilon 1 --out synthetic.csv --report report.json --device cuda

and prints the wall time of the whole command (read, DP preprocessing, training, sampling every
row back to a CSV, the report with its evaluation and audit), the stages' times from the
report, and the peak GPU memory PyTorch allocated.

    python bench/scale.py --rows 1000000 --columns 50 --device cuda --json

The last line with --json is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from synthgen.cli import app  # noqa: E402


def make_table(rows: int, columns: int, seed: int) -> pd.DataFrame:
    """Correlated mixed-type columns, vectorised (a few seconds for 1 M x 50)."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((rows, 4), dtype=np.float32)
    out: dict[str, object] = {}
    for j in range(columns):
        w = rng.standard_normal(4).astype(np.float32)
        mix = latent @ (w / np.linalg.norm(w)) * 0.8 + 0.6 * rng.standard_normal(
            rows, dtype=np.float32)
        kind = j % 4
        if kind == 0:  # a skewed amount with cents
            values: np.ndarray = np.round(np.exp(3 + 1.2 * mix), 2)
            name = f"amount_{j}"
        elif kind == 1:  # an integer age- or count-like column
            values = np.clip(np.round(40 + 13 * mix), 17, 90).astype(np.int64)
            name = f"age_{j}"
        else:  # a categorical column with uneven frequencies
            k = int(rng.integers(2, 61))
            edges = np.sort(rng.standard_normal(k - 1)) * 1.2
            labels = np.array([f"v{j}_{i}" for i in range(k)], dtype=object)
            values = labels[np.searchsorted(edges, mix)]
            name = f"cat_{j}"
        if j % 7 == 3:  # some missing cells
            missing = rng.random(rows) < 0.03
            values = values.astype(object if values.dtype == object else np.float64)
            values[missing] = None if values.dtype == object else np.nan
        out[name] = values
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--columns", type=int, default=50)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    ap.add_argument("--epochs", type=float, default=None, help="default: synthgen's")
    ap.add_argument("--no-report", action="store_true", help="skip --report (and its audit)")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress bar from the run")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        table = make_table(args.rows, args.columns, args.seed)
        source = work / "table.csv"
        pa_csv.write_csv(pa.Table.from_pandas(table, preserve_index=False), source)
        make_s = time.perf_counter() - t0
        csv_mb = source.stat().st_size / 2**20
        print(f"wrote {args.rows:,} x {args.columns} ({csv_mb:.0f} MB) in {make_s:.1f} s",
              flush=True)
        del table

        report = work / "report.json"
        cmd = ["run", str(source), "--epsilon", str(args.epsilon), "--out",
               str(work / "synthetic.csv"), "--device", args.device, "--seed", str(args.seed),
               *(["--quiet"] if args.quiet else [])]
        if args.epochs is not None:
            cmd += ["--epochs", str(args.epochs)]
        if not args.no_report:
            cmd += ["--report", str(report)]
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        app(cmd, standalone_mode=False)
        wall_s = time.perf_counter() - t0
        doc = json.loads(report.read_text()) if report.exists() else {}
        out_rows = sum(1 for _ in (work / "synthetic.csv").open()) - 1

    result: dict[str, object] = {
        "end_to_end_s": round(wall_s, 1),
        "rows": args.rows,
        "columns": args.columns,
        "csv_mb": round(csv_mb, 1),
        "make_table_s": round(make_s, 1),
        "output_rows": out_rows,
        "epsilon_spent": doc.get("epsilon"),
        # the owner-only evaluation keeps the stages' times (the public report has none)
        "timings": (json.loads((work / "evaluation.json").read_text()).get("timings")
                    if (work / "evaluation.json").exists() else None),
        "training": {k: doc.get("training", {}).get(k) for k in
                     ("steps", "expected_batch_size", "noise_multiplier", "epochs")},
        "peak_gpu_mb": (round(torch.cuda.max_memory_allocated() / 2**20, 1)
                        if args.device == "cuda" else None),
        "device": (torch.cuda.get_device_name() if args.device == "cuda" else "cpu"),
        "torch": torch.__version__,
    }
    print(f"{args.rows:,} rows x {args.columns} columns ({csv_mb:.0f} MB CSV) to epsilon "
          f"{args.epsilon:g} on {result['device']}: {wall_s:.1f} s end to end; peak GPU memory "
          f"{result['peak_gpu_mb']} MB")
    if args.json:
        print(json.dumps(result, default=str))
    return result


if __name__ == "__main__":
    main()
