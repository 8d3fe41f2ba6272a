"""What a conditioned sample asks for: fixed values, ranges, a rebalanced column, seed rows.

Parsed from the CLI's text (``sex=Female``, ``age>=60``, ``Y=>50K:0.5``), the library's dicts and
the API's JSON; checked against the columns (a clear :class:`ConditionError` before any row is
generated); compiled into the encoder's terms by :func:`compile_plan`: per group of output rows
(a *stratum*) the slots each one-hot span may take and the conditional-vector entries to draw
from. :mod:`synthgen.models.conditional_sampling` generates the rows.

All of it is post-processing of the released model: nothing here reads a training row or spends
budget. Seed rows are the user's own input to sampling, not training data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synthgen.errors import ConditionError
from synthgen.formats import CellFormat, from_pattern
from synthgen.privacy.domains import (
    ColumnDomain,
    category_labels,
    numeric_values,
    other_label,
)
from synthgen.schema import ColumnKind, TableSchema

DISCRETE = (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)
NUMERIC = (ColumnKind.INTEGER, ColumnKind.CONTINUOUS, ColumnKind.DATETIME)
_OPERATORS = ("<=", ">=", "=", "<", ">")
_TRUE = frozenset({"true", "1", "yes", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "f", "n"})
SEED_NOTE = (
    "The seed rows are your input to sampling, not training data: their values appear in the "
    "output as given, the model's differential-privacy guarantee does not cover them, and "
    "synthgen keeps them only for the duration of the job."
)
SAMPLING_NOTE = (
    "Conditioned sampling is post-processing of the released model: it spent no privacy budget "
    "and read no training row."
)

ConditionsSpec = Mapping[str, Any] | Sequence[str] | None
RebalanceSpec = Mapping[str, Mapping[Any, float]] | Sequence[str] | None


@dataclass(frozen=True)
class Condition:
    """``column op value``; ``op`` is one of ``= >= > <= <``."""

    column: str
    op: str
    value: Any

    def __str__(self) -> str:
        return f"{self.column}{self.op}{self.value}"


def parse_condition(text: str) -> Condition:
    """``sex=Female``, ``age>=60``, ``Y=>50K`` (the value ``>50K``: the first operator wins),
    ``Y='>50K'`` (quotes around the value are dropped)."""
    at = next((i for i, ch in enumerate(text) if ch in "<>="), -1)
    if at <= 0:
        raise ConditionError(f"condition {text!r} is not COLUMN=VALUE or COLUMN>=, >, <=, < "
                             "NUMBER (for example sex=Female or age>=60)")
    op = text[at:at + 2] if text[at:at + 2] in ("<=", ">=") else text[at]
    value = text[at + len(op):].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if value == "":
        raise ConditionError(f"condition {text!r} has no value after {op!r}")
    return Condition(text[:at].strip(), op, value)


def parse_rebalance(text: str) -> tuple[str, Any, float]:
    """``Y=>50K:0.5``: the column, the value and its share of the output."""
    head, sep, share = text.rpartition(":")
    if not sep:
        raise ConditionError(f"rebalance {text!r} is not COLUMN=VALUE:SHARE "
                             "(for example Y='>50K':0.5)")
    cond = parse_condition(head)
    if cond.op != "=":
        raise ConditionError(f"rebalance {text!r} is not COLUMN=VALUE:SHARE")
    try:
        value = float(share)
    except ValueError:
        raise ConditionError(f"rebalance {text!r}: the share {share!r} is not a number") from None
    return cond.column, cond.value, value


def as_conditions(spec: ConditionsSpec) -> list[Condition]:
    """The library's and the API's forms: ``{"sex": "Female", "age": ">=60"}``, a range
    ``{"age": [60, None]}`` (inclusive, None open), or a list of ``"age>=60"`` strings."""
    if spec is None:
        return []
    if isinstance(spec, str):
        return [parse_condition(spec)]
    if not isinstance(spec, Mapping):
        return [c if isinstance(c, Condition) else parse_condition(str(c)) for c in spec]
    out: list[Condition] = []
    for column, value in spec.items():
        if isinstance(value, list | tuple):
            if len(value) != 2 or all(v is None for v in value):
                raise ConditionError(f"condition on {column!r}: a range is [lower, upper] "
                                     "(inclusive; null for an open end)")
            if value[0] is not None:
                out.append(Condition(str(column), ">=", value[0]))
            if value[1] is not None:
                out.append(Condition(str(column), "<=", value[1]))
        else:
            out.append(Condition(str(column), "=", value))
    return out


def as_rebalance(spec: RebalanceSpec) -> list[tuple[str, Any, float]]:
    """``{"Y": {">50K": 0.5}}`` or ``["Y=>50K:0.5"]``."""
    if spec is None:
        return []
    if isinstance(spec, str):
        return [parse_rebalance(spec)]
    if not isinstance(spec, Mapping):
        return [parse_rebalance(str(s)) for s in spec]
    out = []
    for column, shares in spec.items():
        if not isinstance(shares, Mapping):
            raise ConditionError(f"rebalance {column!r}: give {{value: share}}, for example "
                                 f"{{{column!r}: {{'>50K': 0.5}}}}")
        for value, share in shares.items():
            out.append((str(column), value, float(share)))
    return out


def from_options(where: Sequence[str] | None, rebalance: Sequence[str] | None
                 ) -> tuple[list[str] | None, dict[str, dict[str, float]] | None]:
    """The command line's ``--where`` and ``--rebalance`` as the library's and the API's
    ``conditions`` and ``rebalance`` (parsed here, so a typo fails before anything runs)."""
    shares: dict[str, dict[str, float]] = {}
    for column, value, share in map(parse_rebalance, rebalance or []):
        shares.setdefault(column, {})[value] = share
    return [str(parse_condition(w)) for w in where or []] or None, shares or None


# ----------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class ColumnFacts:
    """What checking needs of a column: its kind, and its labels when known (the model's
    released categories; before training, only those a public schema declares)."""

    kind: ColumnKind
    categories: list[Any] | None = None
    format: str | None = None  # how the column's cells are written (synthgen.formats)

    @property
    def cell_format(self) -> CellFormat | None:
        return from_pattern(self.format) if self.format else None


@dataclass
class Range:
    """An interval of a numeric column, in :func:`numeric_values` units (datetimes: seconds)."""

    lower: float = -math.inf
    upper: float = math.inf
    lower_closed: bool = True
    upper_closed: bool = True

    def empty(self) -> bool:
        return self.lower > self.upper or (self.lower == self.upper and not (
            self.lower_closed and self.upper_closed))

    def holds(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            low = x >= self.lower if self.lower_closed else x > self.lower
            high = x <= self.upper if self.upper_closed else x < self.upper
        return low & high  # NaN (null) is in no range


@dataclass
class Spec:
    """Checked conditions: fixed labels of discrete columns, ranges of numeric ones, and the
    rebalanced column's shares."""

    fixed: dict[str, Any] = field(default_factory=dict)
    ranges: dict[str, Range] = field(default_factory=dict)
    rebalance_column: str | None = None
    shares: dict[Any, float] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"conditions": list(self.text), "note": SAMPLING_NOTE}
        if self.rebalance_column is not None:
            out["rebalance"] = {"column": self.rebalance_column,
                                "shares": {str(k): v for k, v in self.shares.items()}}
        return out


def _labels(facts: ColumnFacts, has_other: bool = False) -> list[Any] | None:
    if facts.kind is ColumnKind.BOOLEAN:
        return [False, True]
    if facts.categories is None:
        return None
    return [*facts.categories, *([other_label(facts.categories)] if has_other else [])]


def match_label(column: str, value: Any, facts: ColumnFacts, has_other: bool = False) -> Any:
    """The column's label that ``value`` names (text compares as text: ``"1"`` names 1)."""
    if facts.kind is ColumnKind.BOOLEAN:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        word = str(value).strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ConditionError(f"{column}={value}: {column} is boolean; use true or false",
                             code="unknown-category")
    labels = _labels(facts, has_other)
    if labels is None:  # not known before training: checked against the model later
        return value
    for label in labels:
        if label == value or str(label) == str(value):
            return label
    shown = ", ".join(map(str, labels[:30])) + (", ..." if len(labels) > 30 else "")
    raise ConditionError(f"{column}={value}: {value!r} is not a category of {column} "
                         f"(its categories: {shown})", code="unknown-category")


def to_number(what: str, value: Any, kind: ColumnKind, fmt: CellFormat | None = None) -> float:
    """``value`` in :func:`numeric_values` units (datetimes: seconds since the epoch), written
    plainly or in the column's format ``fmt``."""
    x = numeric_values(pd.Series([value], dtype=object), kind, fmt)[0]
    if isinstance(value, bool) or not np.isfinite(x):
        expected = "a date or time" if kind is ColumnKind.DATETIME else "a number"
        raise ConditionError(f"{what}: {value!r} is not {expected}")
    return float(x)


def _unknown_column(column: str, columns: Mapping[str, ColumnFacts], what: str) -> None:
    if column not in columns:
        raise ConditionError(f"{what}: there is no column {column!r} in this model "
                             f"(its columns: {', '.join(columns)})", code="unknown-column")
    if columns[column].kind is ColumnKind.DROP:
        raise ConditionError(f"{what}: column {column!r} is not learned (kind drop), so it "
                             "cannot be conditioned on", code="unknown-column")


def check(
    conditions: ConditionsSpec,
    rebalance: RebalanceSpec,
    columns: Mapping[str, ColumnFacts],
    other: Mapping[str, bool] | None = None,
) -> Spec:
    """Check the conditions and the rebalancing against the columns; raise a
    :class:`ConditionError` that says what is wrong. ``other``: which columns have the
    fold-in bucket (a label too)."""
    other = other or {}
    spec = Spec()
    for cond in as_conditions(conditions):
        column, op, value = cond.column, cond.op, cond.value
        _unknown_column(column, columns, f"condition {cond}")
        facts = columns[column]
        if facts.kind in NUMERIC and op == "=" and isinstance(value, str) and value[:1] in "<>":
            cond = parse_condition(f"{column}{value}")  # {"age": ">=60"}
            op, value = cond.op, cond.value
        spec.text.append(str(cond))
        if facts.kind is ColumnKind.AUTO and op == "=":
            continue  # a label or a number: the kind is a DP decision of training (checked then)
        if facts.kind in DISCRETE:
            if op != "=":
                raise ConditionError(f"condition {cond}: {column} is {facts.kind.value}; it "
                                     "takes = only")
            label = match_label(column, value, facts, other.get(column, False))
            if column in spec.fixed and spec.fixed[column] != label:
                raise ConditionError(f"conditions {column}={spec.fixed[column]} and {cond} "
                                     "contradict each other", code="contradictory-conditions")
            spec.fixed[column] = label
            continue
        x = to_number(f"condition {cond}", value, facts.kind, facts.cell_format)
        r = spec.ranges.setdefault(column, Range())
        if op in ("=", ">=", ">") and (x > r.lower or (x == r.lower and op == ">")):
            r.lower, r.lower_closed = x, op != ">"
        if op in ("=", "<=", "<") and (x < r.upper or (x == r.upper and op == "<")):
            r.upper, r.upper_closed = x, op != "<"
        if r.empty():
            said = [t for t in spec.text if parse_condition(t).column == column]
            raise ConditionError(f"conditions {' and '.join(said)} contradict each other: no "
                                 f"value of {column} satisfies them",
                                 code="contradictory-conditions")
    pairs = as_rebalance(rebalance)
    for column, value, share in pairs:
        what = f"rebalance {column}={value}:{share:g}"
        _unknown_column(column, columns, what)
        facts = columns[column]
        if not 0 < share < 1:
            raise ConditionError(f"{what}: a share must be between 0 and 1 (exclusive)")
        if facts.kind is ColumnKind.AUTO:
            continue  # the kind is a DP decision of training: checked against the model then
        if facts.kind not in DISCRETE:
            raise ConditionError(f"{what}: {column} is {facts.kind.value}; rebalancing sets "
                                 "the share of a categorical or boolean column")
        if spec.rebalance_column not in (None, column):
            raise ConditionError(f"{what}: rebalance one column at a time (already "
                                 f"{spec.rebalance_column})", code="contradictory-conditions")
        if column in spec.fixed:
            raise ConditionError(f"{what}: {column} is also fixed by a condition; a fixed "
                                 "column has one value in every row",
                                 code="contradictory-conditions")
        label = match_label(column, value, facts, other.get(column, False))
        if label in spec.shares:
            raise ConditionError(f"{what}: {column}={label} is given twice",
                                 code="contradictory-conditions")
        spec.rebalance_column = column
        spec.shares[label] = share
    if spec.shares and sum(spec.shares.values()) > 1 + 1e-9:
        raise ConditionError(f"rebalance {spec.rebalance_column}: the shares add up to "
                             f"{sum(spec.shares.values()):g}, more than 1",
                             code="contradictory-conditions")
    return spec


def check_seed_rows(seed: pd.DataFrame, columns: Mapping[str, ColumnFacts], spec: Spec,
                    other: Mapping[str, bool] | None = None) -> list[str]:
    """Check seed rows (a table of partial rows; empty cells are left to the model) against
    the columns and the other conditions; returns the columns they fix. Errors name the
    seed file's line (the header is line 1)."""
    if spec.rebalance_column is not None:
        raise ConditionError("seed rows fix each output row; they cannot be rebalanced too",
                             code="contradictory-conditions")
    fixed = [c for c in map(str, seed.columns) if seed[c].notna().any()]
    for c in fixed:
        if c not in columns:
            raise ConditionError(f"seed rows: there is no column {c!r} in this model (its "
                                 f"columns: {', '.join(columns)})", code="unknown-column")
        if c in spec.fixed or c in spec.ranges:
            raise ConditionError(f"seed rows: column {c!r} is also fixed by a condition",
                                 code="contradictory-conditions")
        facts, values = columns[c], seed[c]
        if facts.kind in DISCRETE:
            for u in pd.unique(values.dropna()):
                try:
                    match_label(c, u, facts, (other or {}).get(c, False))
                except ConditionError as exc:
                    line = int(np.flatnonzero(values.to_numpy(dtype=object) == u)[0]) + 2
                    raise ConditionError(f"seed rows, line {line}: {exc}",
                                         code=exc.code) from None
        elif facts.kind in NUMERIC:
            bad = np.isnan(numeric_values(values, facts.kind, facts.cell_format)) & (
                values.notna().to_numpy())
            if bad.any():
                line = int(np.flatnonzero(bad)[0])
                raise ConditionError(f"seed rows, line {line + 2}: {c} {values.iloc[line]!r} "
                                     "is not a number or date")
    return fixed


def facts_of_schema(schema: TableSchema) -> dict[str, ColumnFacts]:
    """Column facts before training: kinds, and the categories a public schema declares (the
    others are released by training, and checked against the model when sampling)."""
    return {c.name: ColumnFacts(c.kind, list(c.categories) if c.categories else None, c.format)
            for c in schema.columns}


def facts_of(domains: list[ColumnDomain]) -> tuple[dict[str, ColumnFacts], dict[str, bool]]:
    """Column facts (and fold-in buckets) of a model's domains."""
    facts = {d.name: ColumnFacts(d.kind, list(d.categories) if d.kind in DISCRETE else None,
                                 d.format) for d in domains}
    return facts, {d.name: d.has_other for d in domains}


def rows_matching(df: pd.DataFrame, conditions: Sequence[str], kinds: Mapping[str, str]
                  ) -> np.ndarray:
    """Which rows of a (real) table meet the conditions, as a report's ``sampling`` section
    states them: for the quality section to compare like with like."""
    facts = {c: ColumnFacts(ColumnKind(k)) for c, k in kinds.items()}
    spec = check(list(conditions), None, facts)
    hold = np.ones(len(df), dtype=bool)
    for column, label in spec.fixed.items():
        kind = facts[column].kind
        values = category_labels(df[column].astype(object), kind)
        hold &= (values == label).to_numpy() if kind is ColumnKind.BOOLEAN else (
            values.astype(str) == str(label)).to_numpy() & values.notna().to_numpy()
    for column, r in spec.ranges.items():
        hold &= r.holds(numeric_values(df[column], facts[column].kind))
    return hold
