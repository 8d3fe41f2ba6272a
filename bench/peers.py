"""Peer synthesizers for the utility benchmark, run as a script in any Python that has them.

smartnoise-synth (MIT) pulls jax and pins its own numpy range, so the benchmark may run it from
a separate virtual environment (``bench/utility.py --peer-python``):

    python3 -m venv .venv-peer && .venv-peer/bin/pip install smartnoise-synth
    .venv-peer/bin/python bench/peers.py mst --input train.csv --output out.csv --epsilon 1 \
        --categorical workclass education ... --continuous age fnlwgt ...

MST takes a share of epsilon (``--preprocessor-share``, default 0.1, smartnoise's own
recommendation) to estimate the continuous columns' bounds privately, and bins them for its
marginals. Same table, same epsilon, same delta as synthgen's run.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd


def run_mst(train: pd.DataFrame, epsilon: float, delta: float, categorical: list[str],
            continuous: list[str], preprocessor_share: float) -> pd.DataFrame:
    from snsynth import Synthesizer

    synth = Synthesizer.create("mst", epsilon=epsilon, delta=delta, verbose=False)
    data = train.copy()
    for c in categorical:  # MST needs every category as a value: missing as its own label
        data[c] = data[c].astype(object).where(data[c].notna(), "<NA>")
    synth.fit(data, categorical_columns=categorical, continuous_columns=continuous,
              preprocessor_eps=epsilon * preprocessor_share, nullable=True)
    out = synth.sample(len(train))
    for c in categorical:
        out[c] = out[c].where(out[c] != "<NA>")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("peer", choices=["mst"])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--epsilon", type=float, required=True)
    parser.add_argument("--delta", type=float, default=1e-6)
    parser.add_argument("--categorical", nargs="*", default=[])
    parser.add_argument("--continuous", nargs="*", default=[])
    parser.add_argument("--preprocessor-share", type=float, default=0.1)
    parser.add_argument("--as-text", action="store_true",
                        help="read every cell as written (ZIP codes keep their leading zeros)")
    args = parser.parse_args()
    train = (pd.read_csv(args.input, dtype=str, keep_default_na=False, na_values=[""])
             if args.as_text else pd.read_csv(args.input))
    t0 = time.perf_counter()
    out = run_mst(train, args.epsilon, args.delta, args.categorical, args.continuous,
                  args.preprocessor_share)
    out.to_csv(args.output, index=False)
    print(f"{args.peer}: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
