"""Empirical privacy audit: does the synthetic table sit closer to its training rows than to
real rows it never saw?

Differential privacy is the guarantee; this audit is a smoke test of the implementation, for the
data owner. It needs a *holdout*: real rows split off before training (the caller does that, see
:func:`synthgen.evaluate.split_holdout`). Against equal-size reference sets of training rows
(``T``, a random subsample; up to :data:`REFERENCE_DRAWS` disjoint ones, the figures averaged)
and holdout rows (``H``) it measures:

- ``dcr_share``: share of synthetic rows whose closest record is in ``T`` rather than ``H``
  (distance to closest record; ties count half). A generator that learned the population and
  not its rows gives 0.5; above ``DCR_SHARE_MAX`` fails (memorisation), below 0.5 the synthetic
  rows sit farther from the training rows than from unseen ones (no sign of copying).
- ``nndr``: median nearest-neighbour distance ratio (closest / second closest) of synthetic rows
  in ``T``; near 0 means synthetic rows sit on top of single training rows. ``nndr_holdout`` is
  the same in ``H``, the value to compare with.
- ``mia_auc``: a distance-based membership-inference attack. The attacker scores every row of
  ``T`` and ``H`` by its distance to the nearest synthetic row and guesses "was in training" for
  small distances; the ROC AUC of that guess. 0.5 is chance.
- ``exact_match_rate``: share of synthetic rows identical (on every learned column) to some
  training row, against ``exact_match_reference``: the share of holdout rows identical to some
  training row, i.e. the rate between two disjoint parts of the real table, which any fresh
  sample of the same population would show.

MOSTLY AI's QA report (DCR share, NNDR, identical matches) is the model for the first three.
Black-box attacks like these are loose: passing them is evidence of no gross leak, not a privacy
proof (arXiv 2405.10994).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from synthgen.evaluate.columns import CATEGORICAL, labels, values
from synthgen.evaluate.distances import RESOLUTION, RowEncoder, cross_nearest

MAX_REFERENCE_ROWS = 10_000
MAX_SYNTHETIC_ROWS = 10_000
REFERENCE_DRAWS = 5
# A share above this fails (synthetic rows nearer training rows than unseen ones); a share below
# 0.5 means they are farther from the training rows: no sign of copying, not a failure.
DCR_SHARE_MAX = 0.55
MIA_AUC_MAX = 0.55
_QUANTILES = np.linspace(0.0, 1.0, 21)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC of scores (higher = "positive"), ties counted half (Mann-Whitney)."""
    n1, n0 = len(positive), len(negative)
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([positive, negative]))
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auc_standard_error(a: float, n1: int, n0: int) -> float:
    """Hanley and McNeil (1982): how far chance alone moves an AUC on this many rows."""
    if n1 == 0 or n0 == 0 or not np.isfinite(a):
        return float("nan")
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0)
    return float(np.sqrt(max(var, 0.0)))


def row_hashes(df: pd.DataFrame, kinds: dict[str, str]) -> np.ndarray:
    """One 64-bit hash per row of its canonical values (so 3 and 3.0, True and "True" agree)."""
    canon: dict[str, Any] = {}
    for name, sdtype in kinds.items():
        if sdtype == CATEGORICAL:
            canon[name] = pd.Series(labels(df[name]), dtype=object).fillna("\x00missing")
        else:
            canon[name] = pd.Series(np.round(values(df[name], sdtype), 9) + 0.0)  # -0.0 -> 0.0
    frame = pd.DataFrame(canon)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def _sample(df: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(df) <= n:
        return df
    return df.iloc[np.sort(rng.choice(len(df), size=n, replace=False))]


def _ratio(two: np.ndarray) -> np.ndarray:
    """Nearest / second nearest distance; 1 where both are 0 (duplicates: no single row)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(two[:, 1] > 0, two[:, 0] / two[:, 1], 1.0)


def _share_closer(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a < b) + 0.5 * np.mean(a == b))


def privacy_audit(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    kinds: dict[str, str],
    *,
    seed: int | None = 0,
    max_reference_rows: int = MAX_REFERENCE_ROWS,
    max_synthetic_rows: int = MAX_SYNTHETIC_ROWS,
) -> dict[str, Any]:
    """The audit section of a report (see the module docstring); for the data owner only."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    size = min(len(holdout), len(train), max_reference_rows)
    if size < 2 or len(synthetic) == 0:
        raise ValueError("the audit needs at least 2 training rows, 2 holdout rows and one "
                         "synthetic row")
    # Up to REFERENCE_DRAWS disjoint training reference sets, each as large as the holdout's:
    # which training rows land in one set moves a single DCR share by about 0.015 on Adult;
    # averaging over draws takes most of that out, and the attack gets more members.
    draws = max(1, min(REFERENCE_DRAWS, len(train) // size))
    order = rng.permutation(len(train))[: draws * size]
    ref_trains = [train.iloc[np.sort(order[k * size : (k + 1) * size])] for k in range(draws)]
    ref_holdout = _sample(holdout, size, rng)
    syn = _sample(synthetic, max_synthetic_rows, rng)
    encoder = RowEncoder.fit(pd.concat([*ref_trains, ref_holdout], ignore_index=True), kinds)
    e_holdout, e_syn = encoder.transform(ref_holdout), encoder.transform(syn)

    # outsider_d / member_d: each reference row's distance to its nearest synthetic row.
    to_holdout, outsider_d = cross_nearest(e_syn, e_holdout, 2)
    shares, to_trains, member_ds = [], [], []
    for ref in ref_trains:
        to_train, member_d = cross_nearest(e_syn, encoder.transform(ref), 2)
        shares.append(_share_closer(to_train[:, 0], to_holdout[:, 0]))
        to_trains.append(to_train)
        member_ds.append(member_d)
    dcr_share = float(np.mean(shares))
    to_train = np.concatenate(to_trains)
    nndr_train, nndr_holdout = _ratio(to_train), _ratio(to_holdout)
    # The attacker: a real row close to some synthetic row was probably a training row.
    members = np.concatenate(member_ds)
    mia = auc(-members, -outsider_d)

    h_train = row_hashes(train, kinds)
    exact = float(np.isin(row_hashes(synthetic, kinds), h_train).mean())
    reference = float(np.isin(row_hashes(holdout, kinds), h_train).mean())

    checks = [
        _check("dcr_share", dcr_share, f"at most {DCR_SHARE_MAX}", dcr_share <= DCR_SHARE_MAX),
        _check("mia_auc", mia, f"at most {MIA_AUC_MAX}", mia <= MIA_AUC_MAX),
        _check("exact_match_rate", exact, "at most exact_match_reference", exact <= reference),
    ]
    return {
        "holdout_rows": len(holdout),
        "training_rows": len(train),
        "reference_rows": size,
        "reference_draws": draws,
        "synthetic_rows": len(syn),
        "synthetic_rows_exact_match": len(synthetic),
        "dcr_share": dcr_share,
        "dcr_train_median": float(np.median(to_train[:, 0])),
        "dcr_holdout_median": float(np.median(to_holdout[:, 0])),
        "dcr_quantiles": {
            "q": np.round(_QUANTILES, 3).tolist(),
            "train": np.round(np.quantile(to_train[:, 0], _QUANTILES), 6).tolist(),
            "holdout": np.round(np.quantile(to_holdout[:, 0], _QUANTILES), 6).tolist(),
        },
        "nndr": float(np.median(nndr_train)),
        "nndr_holdout": float(np.median(nndr_holdout)),
        "nndr_p10": float(np.quantile(nndr_train, 0.1)),
        "nndr_holdout_p10": float(np.quantile(nndr_holdout, 0.1)),
        "mia_auc": mia,
        "mia_auc_se": auc_standard_error(mia, len(members), size),
        "exact_match_rate": exact,
        "exact_match_reference": reference,
        "checks": checks,
        "distance": (
            "Euclidean on rows where each numerical column is its mid-rank among the reference "
            "rows (plus a missing flag) and each categorical column a one-hot vector scaled so "
            f"that two labels are at distance 1; rounded to {RESOLUTION:g}"
        ),
        "seconds": time.perf_counter() - t0,
    }


def _check(metric: str, value: float, expected: str, passed: bool) -> dict[str, Any]:
    return {"metric": metric, "value": value, "expected": expected, "passed": bool(passed)}


def canary_attack(
    inserted: pd.DataFrame,
    withheld: pd.DataFrame,
    synthetic: pd.DataFrame,
    kinds: dict[str, str],
    reference: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """How exposed planted outlier rows are.

    ``inserted`` canaries were in the training table, ``withheld`` ones (drawn the same way)
    were not. ``auc`` is the membership attack restricted to canaries (0.5: the synthetic table
    tells them apart no better than chance); ``reproduced`` counts inserted canaries that occur
    verbatim in the synthetic table. ``reference`` (real rows) fixes the distance encoding;
    by default the canaries themselves.
    """
    base = reference if reference is not None else pd.concat([inserted, withheld])
    encoder = RowEncoder.fit(base, kinds)
    e_syn = encoder.transform(synthetic)
    d_in = cross_nearest(encoder.transform(inserted), e_syn, 1)[0][:, 0]
    d_out = cross_nearest(encoder.transform(withheld), e_syn, 1)[0][:, 0]
    reproduced = np.isin(row_hashes(inserted, kinds), row_hashes(synthetic, kinds))
    return {
        "inserted": len(inserted),
        "withheld": len(withheld),
        "auc": auc(-d_in, -d_out),
        "reproduced": int(reproduced.sum()),
        "inserted_distance_median": float(np.median(d_in)),
        "withheld_distance_median": float(np.median(d_out)),
    }
