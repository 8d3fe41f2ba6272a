"""Statistical quality: SDMetrics' Quality Report scores, computed without importing sdmetrics.

The definitions are SDMetrics' (single-table ``QualityReport``, sdmetrics 0.32), and
``tests/test_report_quality.py`` checks that the scores agree with sdmetrics itself:

- Column Shapes: ``KSComplement`` (1 - the two-sample Kolmogorov-Smirnov statistic) for numerical
  and datetime columns, ``TVComplement`` (1 - total variation distance of the label frequencies,
  missing values left out) for categorical ones.
- Column Pair Trends: ``CorrelationSimilarity`` (1 - |Pearson real - Pearson synthetic| / 2) for
  two numerical columns; otherwise ``ContingencySimilarity`` (1 - total variation distance of the
  2-D contingency table, missing values as a label), a numerical column being cut into 10
  equal-width bins of its own table's range first, as SDMetrics does.
- A pair counts towards the Column Pair Trends score only when the real data has a relationship
  to keep: |Pearson| > 0.5, or Cramer's V > 0.3 (SDMetrics' default thresholds); every pair is
  still scored and listed.
- The overall score is the mean of the two property scores.

Why not call sdmetrics: importing it imports ``copulas``, which is under the Business Source
License that the architecture keeps out of the service's runtime path; it also takes seconds to
import. sdmetrics stays a test dependency, as the reference these scores are checked against.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp, pearsonr
from scipy.stats.contingency import association

from synthgen.evaluate.columns import CATEGORICAL, label_codes, labels, values

# SDMetrics rounds numerical values to this many decimals before the KS test.
_MAX_DECIMALS = sys.float_info.dig
_CONTINGENCY_BINS = 10
REAL_CORRELATION_THRESHOLD = 0.5
REAL_ASSOCIATION_THRESHOLD = 0.3
# Distribution plots: how many of the worst columns, and how finely.
WORST_COLUMNS = 4
_NUMERIC_PLOT_BINS = 24
_TOP_LABELS = 12


@dataclass
class _Column:
    """One column of both tables in the forms the metrics need."""

    name: str
    sdtype: str
    real: np.ndarray  # float values, or label codes shared with ``synthetic``
    synthetic: np.ndarray
    vocabulary: list[str | None] | None = None  # label of each code (categorical)

    @property
    def continuous(self) -> bool:
        return self.sdtype != CATEGORICAL


def _prepare(real: pd.DataFrame, synthetic: pd.DataFrame, kinds: dict[str, str]) -> list[_Column]:
    columns = []
    for name, sdtype in kinds.items():
        if sdtype == CATEGORICAL:
            (r, s), vocabulary = label_codes(labels(real[name]), labels(synthetic[name]))
            columns.append(_Column(name, sdtype, r, s, vocabulary))
        else:
            columns.append(_Column(name, sdtype, values(real[name], sdtype),
                                   values(synthetic[name], sdtype)))
    return columns


def _nan(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


# ----------------------------------------------------------------------------- metrics


def ks_complement(real: np.ndarray, synthetic: np.ndarray) -> float:
    r = np.round(real[~np.isnan(real)], _MAX_DECIMALS)
    s = np.round(synthetic[~np.isnan(synthetic)], _MAX_DECIMALS)
    if r.size == 0 or s.size == 0:
        return float("nan")
    return 1.0 - float(ks_2samp(r, s).statistic)


def tv_complement(real: np.ndarray, synthetic: np.ndarray, missing: int | None) -> float:
    """On codes; the code ``missing`` (if any) is left out, as SDMetrics drops nulls."""
    if missing is not None:
        real, synthetic = real[real != missing], synthetic[synthetic != missing]
    if real.size == 0 or synthetic.size == 0:
        return float("nan")
    size = int(max(real.max(), synthetic.max())) + 1
    p = np.bincount(real, minlength=size) / real.size
    q = np.bincount(synthetic, minlength=size) / synthetic.size
    return 1.0 - 0.5 * float(np.abs(p - q).sum())


def correlation_similarity(a: _Column, b: _Column) -> tuple[float, float, float]:
    """(score, real correlation, synthetic correlation); NaN when a column is constant."""
    def corr(x: np.ndarray, y: np.ndarray) -> float:
        keep = ~(np.isnan(x) | np.isnan(y))
        x, y = x[keep], y[keep]
        if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
            return float("nan")
        return float(pearsonr(x, y).statistic)

    real = corr(a.real, b.real)
    synthetic = corr(a.synthetic, b.synthetic)
    return 1.0 - abs(real - synthetic) / 2.0, real, synthetic


def _contingency_codes(column: _Column, which: str) -> np.ndarray:
    data = getattr(column, which)
    if not column.continuous:
        return data
    present = data[~np.isnan(data)]
    # SDMetrics bins each table by its own range (np.histogram_bin_edges, 10 bins); np.digitize
    # puts both the maximum and missing values in the last index.
    edges = np.histogram_bin_edges(present, bins=_CONTINGENCY_BINS) if present.size else (
        np.array([0.0, 1.0]))
    return np.digitize(data, bins=edges)


def contingency_similarity(a: _Column, b: _Column) -> tuple[float, float]:
    """(score, Cramer's V of the real table)."""
    rx, ry = _contingency_codes(a, "real"), _contingency_codes(b, "real")
    sx, sy = _contingency_codes(a, "synthetic"), _contingency_codes(b, "synthetic")
    width = int(max(ry.max(initial=0), sy.max(initial=0))) + 1
    r_cells = rx.astype(np.int64) * width + ry
    s_cells = sx.astype(np.int64) * width + sy
    cells = int(max(r_cells.max(initial=0), s_cells.max(initial=0))) + 1
    dense = cells <= 4_000_000
    if not dense:  # two wide label columns: count only the cells that occur
        _, inverse = np.unique(np.concatenate([r_cells, s_cells]), return_inverse=True)
        r_cells, s_cells = inverse[: r_cells.size], inverse[r_cells.size :]
        cells = int(inverse.max(initial=0)) + 1
    real = np.bincount(r_cells, minlength=cells)
    p = real / max(r_cells.size, 1)
    q = np.bincount(s_cells, minlength=cells) / max(s_cells.size, 1)
    score = 1.0 - 0.5 * float(np.abs(p - q).sum())
    rows = int(rx.max(initial=0)) + 1
    if dense:
        table = np.pad(real, (0, max(rows * width - real.size, 0)))[: rows * width]
        table = table.reshape(rows, width)
    else:
        table = _table(rx, ry)
    return score, _cramers_v(table)


def _table(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xs, xi = np.unique(x, return_inverse=True)
    ys, yi = np.unique(y, return_inverse=True)
    table = np.zeros((xs.size, ys.size), dtype=np.int64)
    np.add.at(table, (xi, yi), 1)
    return table


def _cramers_v(table: np.ndarray) -> float:
    """Cramer's V over the keys that occur (SDMetrics builds the table from the real rows)."""
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    if table.sum() == 0 or min(table.shape) < 2:
        return float("nan")
    return float(association(table, method="cramer"))


# ----------------------------------------------------------------------------- the report


def _missing_code(column: _Column) -> int | None:
    if column.vocabulary is None or None not in column.vocabulary:
        return None
    return column.vocabulary.index(None)


def _missing_share(column: _Column, which: str) -> float:
    data = getattr(column, which)
    if data.size == 0:
        return 0.0
    if column.continuous:
        return float(np.isnan(data).mean())
    code = _missing_code(column)
    return 0.0 if code is None else float((data == code).mean())


def quality_report(
    real: pd.DataFrame, synthetic: pd.DataFrame, kinds: dict[str, str]
) -> dict[str, Any]:
    """Column Shapes, Column Pair Trends, per-column detail and plot data for the worst columns.

    ``real`` is the table the model was trained on; the result describes real data and is for
    the data owner only.
    """
    columns = _prepare(real, synthetic, kinds)
    shapes: list[dict[str, Any]] = []
    for c in columns:
        if c.continuous:
            score, metric = ks_complement(c.real, c.synthetic), "KSComplement"
        else:
            score, metric = tv_complement(c.real, c.synthetic, _missing_code(c)), "TVComplement"
        shapes.append({"column": c.name, "sdtype": c.sdtype, "metric": metric,
                       "score": _nan(score)})

    pairs: list[dict[str, Any]] = []
    for a, b in itertools.combinations(columns, 2):
        real_corr = synthetic_corr = real_assoc = float("nan")
        if a.continuous and b.continuous:
            score, real_corr, synthetic_corr = correlation_similarity(a, b)
            metric = "CorrelationSimilarity"
            counts = abs(real_corr) > REAL_CORRELATION_THRESHOLD
        else:
            (score, real_assoc), metric = contingency_similarity(a, b), "ContingencySimilarity"
            counts = real_assoc > REAL_ASSOCIATION_THRESHOLD
        pairs.append({"column_1": a.name, "column_2": b.name, "metric": metric,
                      "score": _nan(score), "real_correlation": _nan(real_corr),
                      "synthetic_correlation": _nan(synthetic_corr),
                      "real_association": _nan(real_assoc), "counted": bool(counts)})

    shape_score = _mean(s["score"] for s in shapes)
    pair_score = _mean(p["score"] for p in pairs if p["counted"])
    per_column = []
    for c, shape in zip(columns, shapes, strict=True):
        involved = [p["score"] for p in pairs if c.name in (p["column_1"], p["column_2"])]
        per_column.append({
            **shape,
            "pair_trends_mean": _mean(involved),
            "real_missing_share": _missing_share(c, "real"),
            "synthetic_missing_share": _missing_share(c, "synthetic"),
        })
    ranked = sorted((p for p in per_column if p["score"] is not None), key=lambda p: p["score"])
    worst = [p["column"] for p in ranked[:WORST_COLUMNS]]
    by_name = {c.name: c for c in columns}
    return {
        "method": "SDMetrics QualityReport definitions (sdmetrics 0.32), computed by synthgen",
        "score": _mean([shape_score, pair_score]),
        "column_shapes": shape_score,
        "column_pair_trends": pair_score,
        "real_rows": len(real),
        "synthetic_rows": len(synthetic),
        "columns": per_column,
        "pairs": pairs,
        "worst_columns": worst,
        "distributions": [distribution(by_name[name]) for name in worst],
    }


def _mean(scores: Any) -> float | None:
    kept = [float(s) for s in scores if s is not None and np.isfinite(s)]
    return float(np.mean(kept)) if kept else None


def distribution(column: _Column) -> dict[str, Any]:
    """Real and synthetic shares per bin (numerical) or per label (categorical), for a plot."""
    if column.continuous:
        real = column.real[~np.isnan(column.real)]
        synthetic = column.synthetic[~np.isnan(column.synthetic)]
        if real.size:
            # The central 99% of the real values: one extreme value would squash the plot.
            lo, hi = np.quantile(real, [0.005, 0.995])
        else:
            lo, hi = 0.0, 1.0
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, _NUMERIC_PLOT_BINS + 1)

        def shares(x: np.ndarray, n: int) -> list[float]:
            counts = np.histogram(np.clip(x, lo, hi), bins=edges)[0]
            return (counts / max(n, 1)).tolist()

        return {
            "column": column.name, "sdtype": column.sdtype, "edges": edges.tolist(),
            "real": shares(real, column.real.size),
            "synthetic": shares(synthetic, column.synthetic.size),
            "real_missing": _missing_share(column, "real"),
            "synthetic_missing": _missing_share(column, "synthetic"),
        }
    assert column.vocabulary is not None
    size = len(column.vocabulary)
    p = np.bincount(column.real, minlength=size) / max(column.real.size, 1)
    q = np.bincount(column.synthetic, minlength=size) / max(column.synthetic.size, 1)
    order = [int(i) for i in np.argsort(-p, kind="stable")]
    named = [i for i in order if column.vocabulary[i] is not None]
    top = named[:_TOP_LABELS]
    rest = named[_TOP_LABELS:]
    missing = _missing_code(column)
    out_labels = [str(column.vocabulary[i]) for i in top]
    real_shares = [float(p[i]) for i in top]
    synthetic_shares = [float(q[i]) for i in top]
    if rest:
        out_labels.append("(other labels)")
        real_shares.append(float(p[rest].sum()))
        synthetic_shares.append(float(q[rest].sum()))
    if missing is not None:
        out_labels.append("(missing)")
        real_shares.append(float(p[missing]))
        synthetic_shares.append(float(q[missing]))
    return {"column": column.name, "sdtype": column.sdtype, "labels": out_labels,
            "real": real_shares, "synthetic": synthetic_shares}
