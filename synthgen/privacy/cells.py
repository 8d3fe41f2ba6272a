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

from synthgen.formats import CODE, TEXT_KEY, CellFormat, value_keys
from synthgen.formats import DATE as DATE_FORMAT
from synthgen.formats import NUMBER as NUMBER_FORMAT
from synthgen.schema import ColumnKind, cell_text

# the class of a non-empty cell (empty cells are counted apart)
BOOLEAN, NUMBER, DATE, TEXT = 1, 2, 3, 4

_NUMBER_TEXT = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_NUMBER_RE = re.compile(_NUMBER_TEXT)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_BOOL_WORDS = {"true": 1.0, "false": 0.0}
_TRUE_WORDS = frozenset({"true", "1", "yes", "t", "y"})


@dataclass
class Cells:
    """A column's cells as entries: its distinct non-empty values with the rows holding each
    (a numeric column with many distinct values: its non-empty cells, one row each), and its
    empty cells counted apart. Per entry: class, value and text."""

    cls: np.ndarray  # int8: BOOLEAN, NUMBER, DATE or TEXT
    x: np.ndarray  # float64: numbers, dates as epoch seconds, booleans as 0/1; NaN otherwise
    text: np.ndarray  # int64: index into ``labels`` for TEXT entries, -1 otherwise
    labels: np.ndarray  # object: the distinct texts, in order of first appearance
    rows: np.ndarray | None  # int64: rows holding each entry; None: one each
    nulls: int  # empty cells
    source: pd.Series  # the entries as the reader typed them, or (with ``kept``) the column
    kept: np.ndarray | None = None  # bool per row of ``source``: the cells that are entries

    def count(self, key: np.ndarray, size: int,
              of: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Rows per key (int64, ``size`` keys) from the key of each entry in ``of``."""
        if self.rows is None:
            return np.bincount(key, minlength=size)
        # float weights add whole numbers exactly (up to 2**53 rows)
        return np.bincount(key, weights=self.rows[of], minlength=size).astype(np.int64)

    def of_class(self, klass: int) -> np.ndarray | slice:
        """The entries of a class: a slice (no copy) when every entry is of it."""
        hit = self.cls == klass
        return slice(None) if hit.all() else hit

    def entries(self) -> pd.Series:
        return self.source if self.kept is None else self.source[self.kept]


def _first_seen(codes: np.ndarray, present: int) -> np.ndarray:
    """The distinct non-negative codes in order of first appearance, given how many there are:
    read off the shortest prefix of the column that holds them all (a hash pass over a few
    thousand rows where every value shows up early, the whole column only where one is late)."""
    stop = 4096
    while True:
        seen = pd.unique(codes[:stop])
        seen = seen[seen >= 0]
        if len(seen) >= present or stop >= len(codes):
            return seen
        stop *= 8


def _counted(values: pd.Series) -> tuple[pd.Series, np.ndarray, int]:
    """(the distinct non-null values in order of first appearance, the rows holding each, the
    null cells). One hash pass and one count, none of them per row for a categorical."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        per = np.bincount(codes.astype(np.intp) + 1, minlength=len(values.cat.categories) + 1)
        order = _first_seen(codes, int(np.count_nonzero(per[1:])))
        return (pd.Series(np.asarray(values.cat.categories.take(order), dtype=object)),
                per[1:][order], int(per[0]))
    codes, uniques = pd.factorize(values)
    per = np.bincount(codes + 1, minlength=len(uniques) + 1)
    return pd.Series(np.asarray(uniques, dtype=object)), per[1:], int(per[0])


def distinct(values: pd.Series, *, first_seen: bool = True) -> tuple[np.ndarray, pd.Series]:
    """(codes per row, -1 for null; the distinct values in order of first appearance). One hash
    pass, none for a categorical (whose unused categories are left out). Without
    ``first_seen``, a categorical's own codes and categories (in their order, unused ones
    included): for lookups that do not depend on the order."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        if not first_seen:
            return codes, pd.Series(np.asarray(values.cat.categories, dtype=object))
        codes = codes.astype(np.int64)
        seen = pd.unique(codes)
        seen = seen[seen >= 0]
        renumber = np.full(len(values.cat.categories) + 1, -1, dtype=np.int64)
        renumber[seen] = np.arange(len(seen))
        return renumber[codes], pd.Series(np.asarray(values.cat.categories.take(seen),
                                                     dtype=object))
    codes, uniques = pd.factorize(values)
    return codes.astype(np.int64, copy=False), pd.Series(np.asarray(uniques, dtype=object))


# An integer column is read by value (each row's offset from the smallest value) when its
# values span at most this many times its rows (or _MIN_SPAN): a count per value is then one
# bincount, with no hashing and no per-row float work.
_SPAN_PER_ROW = 2
_MIN_SPAN = 1 << 16


@dataclass(frozen=True)
class IntegerValues:
    """An integer column read by value: each row's offset from the smallest value, and the
    offsets present (ascending) with the rows holding each."""

    offset: np.ndarray  # intp per row
    lo: int
    present: np.ndarray  # intp
    rows: np.ndarray  # int64

    @property
    def values(self) -> np.ndarray:
        """The values present, as float64 (what each of their cells reads as)."""
        return (self.present + self.lo).astype(np.float64)

    def per_row(self, per_value: np.ndarray) -> np.ndarray:
        """A row array from one entry per value present."""
        table = np.empty(int(self.present[-1]) + 1, dtype=per_value.dtype)
        table[self.present] = per_value
        return table[self.offset]


def integer_values(values: pd.Series) -> IntegerValues | None:
    """``values`` read by value, or None: not a plain integer column, or too wide a span."""
    dtype = values.dtype
    if not isinstance(dtype, np.dtype) or not (
            dtype.kind == "i" or (dtype.kind == "u" and dtype.itemsize < 8)) or not len(values):
        return None
    array = values.to_numpy()
    lo, hi = int(array.min()), int(array.max())
    if hi - lo > max(_SPAN_PER_ROW * len(array), _MIN_SPAN):
        return None
    offset = array.astype(np.intp) - lo
    per = np.bincount(offset, minlength=hi - lo + 1)
    present = np.flatnonzero(per)
    return IntegerValues(offset, lo, present, per[present])


def _date_seconds(values: pd.Series) -> np.ndarray:
    parsed = pd.to_datetime(values, errors="coerce", format="ISO8601")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert(None)
    out = parsed.to_numpy("datetime64[s]").astype(np.float64)
    out[parsed.isna().to_numpy()] = np.nan
    return out


# Formats that change how a cell is classified. A boolean spelling does not: "yes"/"no" and
# "Y"/"N" are text, released as a two-value category and written back as they were (a number
# column whose code is N must not turn boolean); only declared boolean columns read them as
# booleans (category_labels).
_FORMAT_CLASS = {NUMBER_FORMAT: NUMBER, DATE_FORMAT: DATE}


def _classify(uniques: pd.Series, fmt: CellFormat | None = None,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class, value, text) of each distinct non-null value. With a column's released
    ``fmt``, text in that format is read by it (``$1,234.50`` a number, ``03/15/2021`` a date,
    ``yes`` a boolean), and a ``code`` column's digit strings stay text (``02139``)."""
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
        # What pandas' str.strip/lower/match and map do, in plain loops: per distinct value
        # there are few, and pandas' fixed cost per call was a third of Adult's DP histograms.
        strings = text[is_str]
        s = pd.Series(strings)
        word = np.array([_BOOL_WORDS.get(v.strip().lower(), np.nan) for v in strings],
                        dtype=np.float64)
        numeric = np.array([_NUMBER_RE.match(v) is not None for v in strings], dtype=bool)
        number = np.full(len(s), np.nan)
        if numeric.any():
            number = np.where(numeric, pd.to_numeric(s.where(numeric), errors="coerce"), np.nan)
        looks_dated = np.array([_ISO_DATE.match(v) is not None for v in strings], dtype=bool)
        when = np.full(len(s), np.nan)
        if looks_dated.any():
            when[looks_dated] = _date_seconds(s[looks_dated])
        sub_cls = np.full(len(s), TEXT, dtype=np.int8)
        sub_x = np.full(len(s), np.nan)
        for klass, value in ((DATE, when), (NUMBER, number), (BOOLEAN, word)):
            hit = ~np.isnan(value)
            sub_cls[hit], sub_x[hit] = klass, value[hit]
        if fmt is not None and fmt.family == CODE:
            digits = np.array([v.strip().isdigit() for v in strings], dtype=bool)
            sub_cls[digits], sub_x[digits] = TEXT, np.nan
        elif fmt is not None and not fmt.is_plain and fmt.family in _FORMAT_CLASS:
            value = fmt.parse(strings)
            hit = ~np.isnan(value)
            sub_cls[hit], sub_x[hit] = _FORMAT_CLASS[fmt.family], value[hit]
        cls[is_str], x[is_str] = sub_cls, sub_x
    return cls, x, text


def read_cells(values: pd.Series, *, by_value: bool = True,
               fmt: CellFormat | None = None) -> Cells:
    """Every cell of a column classified (see the module docstring). With ``by_value``, an
    integer column's entries are its distinct values in ascending order (their texts are
    never labels, so no order of appearance is needed); without it, its cells in row order."""
    empty = np.array([], dtype=object)
    dtype = values.dtype
    if not isinstance(dtype, pd.CategoricalDtype) and not pd.api.types.is_string_dtype(dtype):
        counted = integer_values(values) if by_value else None
        if counted is not None:
            n = len(counted.present)
            return Cells(np.full(n, NUMBER, dtype=np.int8), counted.values,
                         np.full(n, -1, dtype=np.int64), empty, counted.rows, 0,
                         pd.Series(counted.present + counted.lo))
        if pd.api.types.is_datetime64_any_dtype(dtype):
            x, klass = _date_seconds(values), DATE
        else:  # booleans and numbers as the reader typed them
            x = values.to_numpy(dtype=np.float64, na_value=np.nan)
            klass = BOOLEAN if pd.api.types.is_bool_dtype(dtype) else NUMBER
        kept = ~np.isnan(x)
        x = x[kept]
        return Cells(np.full(len(x), klass, dtype=np.int8), x, np.full(len(x), -1, dtype=np.int64),
                     empty, None, len(values) - len(x), values, kept)
    uniques, rows, nulls = _counted(values)
    ucls, ux, utext = _classify(uniques, fmt)
    texts = utext[ucls == TEXT]
    labels, label_of_text = np.unique(texts, return_inverse=True) if texts.size else (empty, [])
    # first-appearance order for the labels (the same release however the column was read)
    order = pd.unique(np.asarray(label_of_text, dtype=np.int64))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(order))
    utext_index = np.full(len(uniques), -1, dtype=np.int64)
    utext_index[ucls == TEXT] = rank[np.asarray(label_of_text, dtype=np.int64)]
    labels = np.asarray(labels, dtype=object)[order] if len(order) else empty
    return Cells(ucls, ux, utext_index, labels, rows, nulls, uniques)


def format_counts(values: pd.Series) -> np.ndarray:
    """Rows per format vote key (:data:`synthgen.formats.CANDIDATES`, then ``text``) of a
    column's non-empty cells: one key per cell, found once per distinct value."""
    size = TEXT_KEY + 1
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return np.bincount([value_keys(pd.Series([0]))[0]], weights=[len(values)],
                           minlength=size).astype(np.int64)
    uniques, rows, _ = _counted(values)
    return np.bincount(value_keys(uniques), weights=rows, minlength=size).astype(np.int64)


def match_key(text: Any) -> str:
    """The key a label is matched on: its text, numbers by value ("1", "1.0" and 1 are one)."""
    if not isinstance(text, str):
        return cell_text(text)
    if _NUMBER_RE.match(text):
        return cell_text(float(text))
    return text


# ----------------------------------------------------------------------------- encoder reads


def numeric_values(values: pd.Series, kind: ColumnKind,
                   fmt: CellFormat | None = None) -> np.ndarray:
    """Float values of a numeric column (datetimes as seconds since the epoch), NaN for null and
    for cells that are not of the kind; text is read in the column's format ``fmt``."""
    if isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object:
        # Text (as the reader's categoricals, or as strings): parse each distinct value once.
        codes, uniques = distinct(values)
        parsed = parse_numbers(uniques, kind, fmt)
        return np.append(parsed, np.nan)[codes]  # code -1 (null) picks the trailing NaN
    return parse_numbers(values, kind, fmt)


def parse_numbers(values: pd.Series, kind: ColumnKind,
                  fmt: CellFormat | None = None) -> np.ndarray:
    """Float values of every cell of ``values`` (no factorisation first: for distinct values)."""
    if kind is ColumnKind.DATETIME:
        if values.dtype == object:
            ucls, ux, _ = _classify(values, fmt)
            return np.where(ucls == DATE, ux, np.nan)
        return _date_seconds(values)
    if values.dtype == object:
        ucls, ux, _ = _classify(values, fmt)
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


def label_counts(values: pd.Series, kind: ColumnKind) -> tuple[np.ndarray, np.ndarray, int]:
    """The distinct labels of :func:`label_codes` (same order), the rows holding each (int64)
    and the null cells: counted per distinct value, with no per-row codes."""
    uniques, rows, nulls = _counted(values)
    labels = category_labels(uniques, kind)
    merged, labels_distinct = pd.factorize(labels)
    if len(labels_distinct) < len(labels):
        rows = np.bincount(merged, weights=rows, minlength=len(labels_distinct)).astype(np.int64)
    return np.asarray(labels_distinct, dtype=object), rows, nulls
