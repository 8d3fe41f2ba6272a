"""Conditioned sampling on UCI Adult: speed against unconditioned sampling (same run, same
model), how closely conditioned rows follow the model (total variation distance against a large
unconditioned sample filtered to the condition), the share rebalancing gives, and TSTR on
``adult.test`` with and without rebalancing ``Y`` to 0.5.

    python bench/conditional.py --data ../shared/data/adult --epsilon 1 --seeds 0 1 2 \
        --speed-rows 2000 5000 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from utility import load_adult, tstr  # noqa: E402

from synthgen import Synthesizer  # noqa: E402

CASES: dict[str, dict] = {
    "sex=Female": {"conditions": {"sex": "Female"}},
    "Y=>50K": {"conditions": {"Y": ">50K"}},
    "sex=Female, Y=>50K": {"conditions": {"sex": "Female", "Y": ">50K"}},
    "age>=60": {"conditions": ["age>=60"]},
    "rebalance Y=>50K:0.5": {"rebalance": {"Y": {">50K": 0.5}}},
}


def tvd(a: pd.Series, b: pd.Series) -> float:
    if a.dtype.kind in "iuf":
        edges = np.unique(np.nanquantile(pd.concat([a, b]).astype(float), np.linspace(0, 1, 11)))
        if len(edges) < 2:  # one value only: one bin
            edges = np.append(edges, edges[-1] + 1)
        pa = np.append(np.histogram(a.dropna(), edges)[0], a.isna().sum())
        pb = np.append(np.histogram(b.dropna(), edges)[0], b.isna().sum())
        return float(0.5 * np.abs(pa / pa.sum() - pb / pb.sum()).sum())
    pa, pb = (x.astype(str).value_counts(normalize=True) for x in (a, b))
    return float(0.5 * pa.subtract(pb, fill_value=0).abs().sum())


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency)."""
    cells = [[str(c) for c in frame.columns]] + [
        [f"{v:,.4g}" if isinstance(v, float) else str(v) for v in row]
        for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join([lines[0], "| " + " | ".join("---" for _ in cells[0]) + " |", *lines[1:]])


def rate(synth: Synthesizer, rows: int, seed: int, **kwargs: object) -> tuple[float, pd.DataFrame]:
    t0 = time.perf_counter()
    out = synth.sample(rows, seed=seed, **kwargs)  # type: ignore[arg-type]
    return rows / (time.perf_counter() - t0), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--speed-rows", type=int, nargs="+", default=[20_000],
                        help="request sizes to time")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds per model")
    parser.add_argument("--speed-only", action="store_true", help="skip the TVD and TSTR parts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = load_adult(args.data / "adult.data")
    test = load_adult(args.data / "adult.test")
    speed_rows, tstr_rows, tvd_rows = [], [], []
    for seed in args.seeds:
        synth = Synthesizer(epsilon=args.epsilon, seed=seed, device="cpu").fit(train)
        # rounds of (unconditioned, each case): a case's slowdown is against the unconditioned
        # run of its own round, its figure the median over the rounds (a shared machine's
        # load changes within a minute)
        for rows in args.speed_rows:
            timed: dict[str, list[tuple[float, float]]] = {name: [] for name in CASES}
            for round_ in range(args.repeats):
                base, _ = rate(synth, rows, seed + round_)
                for name, kwargs in CASES.items():
                    r, _ = rate(synth, rows, seed + round_, **kwargs)
                    timed[name].append((r, base))
            for name, pairs in timed.items():
                speed_rows.append({
                    "rows": rows, "seed": seed, "case": name,
                    "rows/s": float(np.median([r for r, _ in pairs])),
                    "unconditioned rows/s": float(np.median([b for _, b in pairs])),
                    "slowdown": float(np.median([b / r for r, b in pairs]))})
        if args.speed_only:
            continue
        # two categorical conditions: 10,000 rows against a filtered unconditioned sample
        cond = {"sex": "Female", "Y": ">50K"}
        out = synth.sample(10_000, seed=seed + 100, conditions=cond)
        ref = synth.sample(400_000, seed=seed + 200)
        ref = ref[(ref["sex"] == "Female") & (ref["Y"] == ">50K")]
        worst = max((tvd(out[c], ref[c]), c) for c in out.columns if c not in cond)
        tvd_rows.append({"seed": seed, "honoured": float(((out["sex"] == "Female")
                                                          & (out["Y"] == ">50K")).mean()),
                         "reference rows": len(ref), "max TVD": worst[0], "column": worst[1]})
        plain = synth.sample(len(train), seed=seed + 300)
        balanced = synth.sample(len(train), seed=seed + 300, rebalance={"Y": {">50K": 0.5}})
        big = synth.sample(100_000, seed=seed + 400, rebalance={"Y": {">50K": 0.5}})
        for label, frame in (("unbalanced", plain), ("Y rebalanced to 0.5", balanced)):
            auc, f1 = tstr(frame, test)
            tstr_rows.append({"seed": seed, "output": label, "share >50K":
                              float((frame["Y"] == ">50K").mean()), "AUC": auc, "F1": f1,
                              "share on 100k": float((big["Y"] == ">50K").mean())
                              if label != "unbalanced" else float("nan")})
    pd.set_option("display.width", 200)
    speed = pd.DataFrame(speed_rows)
    print(f"\nSpeed, {args.threads} thread(s), CPU, medians of {args.repeats} rounds per "
          "model and size")
    print(markdown(speed))
    print(markdown(speed.groupby(["rows", "case"], sort=False)[
        ["rows/s", "unconditioned rows/s", "slowdown"]].mean().reset_index()))
    if args.speed_only:
        return
    print("\nTwo conditions (sex=Female, Y=>50K), 10,000 rows")
    print(markdown(pd.DataFrame(tvd_rows)))
    print("\nTSTR on adult.test (32,561 synthetic rows)")
    frame = pd.DataFrame(tstr_rows)
    print(markdown(frame))
    print(markdown(frame.groupby("output", sort=False)[["share >50K", "AUC", "F1"]].mean()
                   .reset_index()))


if __name__ == "__main__":
    main()
