"""The Python API against ``synthgen run`` on the same table, beside busy processes.

Both run as fresh processes (imports included) on examples/adult_sample.csv with its schema at
epsilon 1, with N busy processes (``while 1: pass``) beside them, in alternating order:
``synthgen run ... --quiet`` and a script doing ``Synthesizer(epsilon=1, schema=...).fit(df)``
then ``sample()``. Neither is given a thread count: each takes the library's default (the cores
the busy processes leave free, synthgen/threads.py). The bar (issue 24): the API within 1.3x of
the CLI.

    python bench/api_vs_cli.py [--busy 2] [--repeats 1] [--epochs E]
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
TABLE = ROOT / "examples" / "adult_sample.csv"
SCHEMA = ROOT / "examples" / "adult_schema.json"

API = """
import sys, time
t0 = time.perf_counter()
import pandas as pd
from synthgen import Synthesizer
from synthgen.schema import load_schema
synth = Synthesizer(epsilon=1, schema=load_schema(sys.argv[2]), {epochs}progress=False)
t1 = time.perf_counter()
synth.fit(pd.read_csv(sys.argv[1]))
t2 = time.perf_counter()
synth.sample().to_csv(sys.argv[3], index=False)
print(f"fit {{t2 - t1:.1f}} s, threads {{synth._threads_used}}", file=sys.stderr)
"""


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{argv[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--busy", type=int, default=2, help="busy processes beside the runs")
    ap.add_argument("--repeats", type=int, default=1, help="pairs of runs (alternating order)")
    ap.add_argument("--epochs", type=float, default=None, help="override (default: 30)")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "SYNTHGEN_TRAIN_THREADS"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    epochs = f"epochs={args.epochs}, " if args.epochs is not None else ""
    busy = [subprocess.Popen([sys.executable, "-c", "while 1: pass"])
            for _ in range(args.busy)]
    results: dict[str, list[float]] = {"cli": [], "api": []}
    try:
        time.sleep(1.0)  # the busy processes are running when the first default is measured
        with tempfile.TemporaryDirectory() as tmp:
            cli = [sys.executable, "-m", "synthgen", "run", str(TABLE), "--schema", str(SCHEMA),
                   "--epsilon", "1", "--out", f"{tmp}/cli.csv", "--quiet",
                   *(["--epochs", str(args.epochs)] if args.epochs is not None else [])]
            api = [sys.executable, "-c", API.format(epochs=epochs), str(TABLE), str(SCHEMA),
                   f"{tmp}/api.csv"]
            for i in range(args.repeats):
                order = [("cli", cli), ("api", api)] if i % 2 == 0 else [("api", api),
                                                                          ("cli", cli)]
                for name, argv in order:
                    wall, last = timed(argv, env)
                    results[name].append(wall)
                    print(f"{name}: {wall:.1f} s  ({last})", flush=True)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    cli_s = sum(results["cli"]) / len(results["cli"])
    api_s = sum(results["api"]) / len(results["api"])
    print(f"mean: cli {cli_s:.1f} s, api {api_s:.1f} s, api/cli {api_s / cli_s:.2f}x "
          f"({args.busy} busy processes, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
