"""How the evaluation reads a column: by value (numerical, datetime) or by label (categorical).

The evaluation compares a real and a synthetic table whose dtypes may differ (a boolean column
read back as text, whole numbers as floats), so every comparison goes through the canonical forms
here: float64 values (datetimes as seconds) or text labels with ``None`` for a missing value.
The kinds use SDMetrics' sdtype names, because the quality scores follow SDMetrics' definitions.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from synthgen.privacy.domains import numeric_values
from synthgen.schema import ColumnKind, infer_kind

NUMERICAL = "numerical"
DATETIME = "datetime"
CATEGORICAL = "categorical"

# synthgen's column kinds (ColumnKind values) -> SDMetrics sdtypes; "drop" columns are not learned
# (they come out empty), so they are left out of every comparison.
_FROM_SYNTHGEN = {
    "integer": NUMERICAL,
    "continuous": NUMERICAL,
    "datetime": DATETIME,
    "categorical": CATEGORICAL,
    "boolean": CATEGORICAL,
}


def evaluation_kinds(
    real: pd.DataFrame, kinds: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The sdtype of every evaluated column, in table order.

    ``kinds`` maps column names to synthgen kinds (the report's ``columns``); without it the kinds
    are inferred the way ``synthgen run`` infers them.
    """
    out: dict[str, str] = {}
    for name in real.columns:
        kind = kinds.get(name) if kinds is not None else infer_kind(str(name), real[name]).value
        if kind in _FROM_SYNTHGEN:
            out[str(name)] = _FROM_SYNTHGEN[kind]
    return out


def values(series: pd.Series, sdtype: str) -> np.ndarray:
    """float64 values of a numerical or datetime column, NaN where missing or unparseable."""
    if pd.api.types.is_bool_dtype(series.dtype):
        series = series.astype("Int64")
    # The encoder's own reading of numbers and dates, so both sides parse a value alike.
    return numeric_values(series, ColumnKind.DATETIME if sdtype == DATETIME else (
        ColumnKind.CONTINUOUS))


def _label(value: object) -> str:
    # Whole floats print as integers so that 3 and 3.0 are one label (a column of codes read
    # once as int and once, with a missing value, as float).
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def labels(series: pd.Series) -> np.ndarray:
    """Text labels of a categorical column (object array), ``None`` where missing."""
    missing = series.isna().to_numpy()
    out = np.full(len(series), None, dtype=object)
    if (~missing).any():
        # Per distinct value, not per row: a column of mixed types cannot be sorted by np.unique.
        present = pd.Series(series.to_numpy(dtype=object)[~missing])
        out[~missing] = present.map({v: _label(v) for v in present.unique()}).to_numpy()
    return out


def label_codes(*arrays: np.ndarray) -> tuple[list[np.ndarray], list[str | None]]:
    """Integer codes over the union of labels of several label arrays (``None`` is a label)."""
    keyed = [np.where(pd.isna(a), "\x00missing", a).astype(str) for a in arrays]
    vocabulary, inverse = np.unique(np.concatenate(keyed), return_inverse=True)
    parts: list[np.ndarray] = []
    start = 0
    for a in keyed:
        parts.append(inverse[start : start + len(a)])
        start += len(a)
    names: list[str | None] = [None if v == "\x00missing" else str(v) for v in vocabulary]
    return parts, names
