"""Reading a column's cells: what each one is (empty, a boolean, a number, a date or text) and
its text as the file holds it, whatever dtype the reader chose.

Nothing here decides anything about the output: the classes only pick each cell's key in its
column's DP histogram (:mod:`synthgen.privacy.domains`), where counts decide. The work is done
once per distinct value (a categorical's categories, or one factorisation), then gathered per row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from synthgen.schema import ColumnKind, cell_text

NULL, BOOLEAN, NUMBER, DATE, TEXT = 0, 1, 2, 3, 4

_NUMBER_TEXT = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_BOOL_WORDS = {"true": 1.0, "false": 0.0}
_TRUE_WORDS = frozenset({"true", "1", "yes", "t", "y"})


@dataclass
class Cells:
    """One column's cells, per row: class, value and text."""

    cls: np.ndarray  # int8: NULL, BOOLEAN, NUMBER, DATE or TEXT
    x: np.ndarray  # float64: numbers, dates as epoch seconds, booleans as 0/1; NaN otherwise
    text: np.ndarray  # int64: index into ``labels`` for TEXT cells, -1 otherwise
    labels: np.ndarray  # object: the distinct texts, in order of first appearance


def distinct(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """(codes per row, -1 for null; the distinct values in order of first appearance). One hash
    pass, none for a categorical (whose unused categories are left out)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy().astype(np.int64)
        seen = pd.unique(codes)
        seen = seen[seen >= 0]
        renumber = np.full(len(values.cat.categories) + 1, -1, dtype=np.int64)
        renumber[seen] = np.arange(len(seen))
        return renumber[codes], pd.Series(np.asarray(values.cat.categories.take(seen),
                                                     dtype=object))
    codes, uniques = pd.factorize(values)
    return codes.astype(np.int64, copy=False), pd.Series(np.asarray(uniques, dtype=object))


def _date_seconds(values: pd.Series) -> np.ndarray:
    parsed = pd.to_datetime(values, errors="coerce", format="ISO8601")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert(None)
    out = parsed.to_numpy("datetime64[s]").astype(np.float64)
    out[parsed.isna().to_numpy()] = np.nan
    return out


def _classify(uniques: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class, value, text) of each distinct non-null value."""
    n = len(uniques)
    cls = np.full(n, TEXT, dtype=np.int8)
    x = np.full(n, np.nan)
    objects = uniques.to_numpy(dtype=object)
    is_str = np.fromiter((isinstance(v, str) for v in objects), bool, n)
    text = np.array([v if isinstance(v, str) else cell_text(v) for v in objects], dtype=object)
    for i in np.flatnonzero(~is_str):  # values a reader typed: numbers, booleans, timestamps
        v = objects[i]
        if isinstance(v, bool | np.bool_):
            cls[i], x[i] = BOOLEAN, float(v)
        elif isinstance(v, int | float | np.number):
            cls[i], x[i] = NUMBER, float(v)
        elif isinstance(v, datetime | date | np.datetime64):
            cls[i], x[i] = DATE, _date_seconds(pd.Series([v]))[0]
    if is_str.any():
        s = pd.Series(text[is_str])
        lowered = s.str.strip().str.lower()
        word = lowered.map(_BOOL_WORDS).to_numpy(dtype=np.float64, na_value=np.nan)
        number = np.where(s.str.match(_NUMBER_TEXT).to_numpy(bool),
                          pd.to_numeric(s.where(s.str.match(_NUMBER_TEXT)), errors="coerce"),
                          np.nan)
        looks_dated = s.str.match(_ISO_DATE.pattern).to_numpy(bool)
        when = np.full(len(s), np.nan)
        if looks_dated.any():
            when[looks_dated] = _date_seconds(s[looks_dated])
        sub_cls = np.full(len(s), TEXT, dtype=np.int8)
        sub_x = np.full(len(s), np.nan)
        for klass, value in ((DATE, when), (NUMBER, number), (BOOLEAN, word)):
            hit = ~np.isnan(value)
            sub_cls[hit], sub_x[hit] = klass, value[hit]
        cls[is_str], x[is_str] = sub_cls, sub_x
    return cls, x, text


def read_cells(values: pd.Series) -> Cells:
    """Every cell of a column classified (see the module docstring)."""
    n = len(values)
    no_text = np.full(n, -1, dtype=np.int64)
    empty = np.array([], dtype=object)
    dtype = values.dtype
    if not isinstance(dtype, pd.CategoricalDtype) and not pd.api.types.is_string_dtype(dtype):
        if pd.api.types.is_datetime64_any_dtype(dtype):
            x, klass = _date_seconds(values), DATE
        else:  # booleans and numbers as the reader typed them
            x = values.to_numpy(dtype=np.float64, na_value=np.nan)
            klass = BOOLEAN if pd.api.types.is_bool_dtype(dtype) else NUMBER
        cls = np.where(np.isnan(x), NULL, klass).astype(np.int8)
        return Cells(cls, x, no_text, empty)
    codes, uniques = distinct(values)
    ucls, ux, utext = _classify(uniques)
    texts = utext[ucls == TEXT]
    labels, label_of_text = np.unique(texts, return_inverse=True) if texts.size else (empty, [])
    # first-appearance order for the labels (the same release however the column was read)
    order = pd.unique(np.asarray(label_of_text, dtype=np.int64))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(order))
    utext_index = np.full(len(uniques), -1, dtype=np.int64)
    utext_index[ucls == TEXT] = rank[np.asarray(label_of_text, dtype=np.int64)]
    labels = np.asarray(labels, dtype=object)[order] if len(order) else empty
    return Cells(
        np.append(ucls, np.int8(NULL))[codes],
        np.append(ux, np.nan)[codes],
        np.append(utext_index, -1)[codes],
        labels,
    )


def match_key(text: Any) -> str:
    """The key a label is matched on: its text, numbers by value ("1", "1.0" and 1 are one)."""
    if not isinstance(text, str):
        return cell_text(text)
    if re.match(_NUMBER_TEXT, text):
        return cell_text(float(text))
    return text


# ----------------------------------------------------------------------------- encoder reads


def numeric_values(values: pd.Series, kind: ColumnKind) -> np.ndarray:
    """Float values of a numeric column (datetimes as seconds since the epoch), NaN for null and
    for cells that are not of the kind."""
    if isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object:
        # Text (as the reader's categoricals, or as strings): parse each distinct value once.
        codes, uniques = distinct(values)
        parsed = _parse_numbers(uniques, kind)
        return np.append(parsed, np.nan)[codes]  # code -1 (null) picks the trailing NaN
    return _parse_numbers(values, kind)


def _parse_numbers(values: pd.Series, kind: ColumnKind) -> np.ndarray:
    if kind is ColumnKind.DATETIME:
        if values.dtype == object:
            ucls, ux, _ = _classify(values)
            return np.where(ucls == DATE, ux, np.nan)
        return _date_seconds(values)
    if values.dtype == object:
        ucls, ux, _ = _classify(values)
        return np.where(ucls == NUMBER, ux, np.nan)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def category_labels(values: pd.Series, kind: ColumnKind) -> pd.Series:
    """Labels as the output will hold them: booleans for boolean columns; for the others, the
    cell's text (numbers as a CSV holds them: 1.0 read from an integer column is "1")."""
    if kind is ColumnKind.BOOLEAN:
        if pd.api.types.is_bool_dtype(values.dtype):
            return values
        return values.map(lambda v: v if pd.isna(v) else str(v).strip().lower() in _TRUE_WORDS)
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
            return values  # already text: no per-value work
    return values.map(lambda v: v if isinstance(v, str) or pd.isna(v) else cell_text(v))


def label_codes(values: pd.Series, kind: ColumnKind) -> tuple[np.ndarray, np.ndarray]:
    """Each row's label (see :func:`category_labels`) as a code into the distinct labels.

    Returns ``(codes, labels)``: int64 codes, -1 for null, and an object array of the distinct
    labels in order of first appearance. One hash pass over the column (none for a categorical
    column), and the labelling runs once per distinct value instead of once per row.
    """
    codes, uniques = distinct(values)
    labels = category_labels(uniques, kind)
    # Labelling may merge distinct values (1 and "1" are both the label "1").
    merged, labels_distinct = pd.factorize(labels)
    if len(labels_distinct) < len(labels):
        codes = np.append(merged, -1)[codes]
    return codes, np.asarray(labels_distinct, dtype=object)
