"""DP estimation of each column's domain: the only place the raw table is read before training.

Every learned column gets one histogram, and all of them are released together as one Gaussian
mechanism (each row adds 1 to one key per column: L2 sensitivity sqrt(k)). A column's keys:

- ``null``;
- undeclared (``auto``) columns: ``false``/``true``; numbers on a public grid (one key per integer
  in [INT_LO, INT_HI) for codes and counts, then octaves of |x|, integers and fractions apart);
  dates by calendar year (whole days and times of day apart); and the observed texts (discovered:
  each must clear the partition threshold). The kind (boolean, integer, continuous, datetime,
  categorical, a number with codes), whether the column is nullable, its date format and its code
  list are all read off these noisy counts;
- declared columns: the keys of their kind only (a public category list, the number grid or 32
  equal bins between public bounds, the years, a public code list). A cell that does not fit the
  declaration (outside a closed category list, empty in a column not declared nullable) stops the
  fit with a clear error before anything is released.

Everything after the noise is post-processing: kinds, nullability, which grid keys are significant,
how they are split into encoding bins, and the frequencies the generator's conditional vectors are
drawn from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
from scipy.stats import norm

from synthgen.errors import SchemaError
from synthgen.formats import BOOL as BOOL_FORMAT
from synthgen.formats import CODE, CellFormat, decide, from_pattern
from synthgen.formats import DATE as DATE_FORMAT
from synthgen.formats import NUMBER as NUMBER_FORMAT
from synthgen.privacy.accountant import gaussian_noise_multiplier
from synthgen.privacy.budget import CODE_VALUE_SHARE, BudgetPlan, code_budget
from synthgen.privacy.cells import (
    BOOLEAN,
    DATE,
    NUMBER,
    TEXT,
    category_labels,
    format_counts,
    label_codes,
    label_counts,
    match_key,
    numeric_values,
    read_cells,
)
from synthgen.privacy.grids import (
    FALSE_BIN_RATE,
    INT_HI,
    INT_LO,
    MAX_NUMERIC_BINS,
    OCTAVE_EDGES,
    YEAR_EDGES,
    NumberGrid,
    date_grid,
    number_bins,
    number_grid,
    significance_threshold,
    window_mass,
)
from synthgen.privacy.ledger import LedgerEntry
from synthgen.privacy.mechanisms import partition_threshold
from synthgen.privacy.release import Keys, Releaser, Value
from synthgen.schema import (
    NUMERIC_KINDS,
    ColumnKind,
    ColumnSpec,
    TableSchema,
    cell_text,
    output_dtype,
)

__all__ = [  # re-exported for callers
    "FALSE_BIN_RATE", "MAX_NUMERIC_BINS", "OCTAVE_EDGES", "YEAR_EDGES", "category_labels",
    "label_codes", "numeric_values",
]

OTHER_LABEL = "Other"


def other_label(categories: list[Any]) -> str:
    """The label of the fold-in bucket; not "Other" when that is a real category (Adult's race)."""
    return OTHER_LABEL if OTHER_LABEL not in categories else f"{OTHER_LABEL} (rare values)"


# A categorical column none of whose values clears the threshold is an identifier or free text
# (or too small a table for its budget): it is dropped, decided from DP outputs only. One whose
# "Other" holds more than this share of its values is kept, with a warning.
OTHER_WARNING_SHARE = 0.2
# An undeclared numeric column is continuous when over this share of its released numbers are
# fractions (a handful of fractions in an integer column is noise's business, not the kind's).
CONTINUOUS_SHARE = 0.05
# An undeclared column with at most MAX_CODES released texts is a number with codes when its
# released numbers have at least CODES_MASS_RATIO of the texts' mass (see _decide_kind).
MAX_CODES = 8
CODES_MASS_RATIO = 0.5
@dataclass
class ColumnDomain:
    """What the encoder knows about one column; every data-dependent field is a DP output."""

    name: str
    kind: ColumnKind
    dtype: str
    source: str  # "public", "dp" or "dropped"
    categories: list[Any] = field(default_factory=list)  # discrete kinds: released labels
    has_other: bool = False
    bins: list[tuple[float, float]] = field(default_factory=list)  # numeric: (lo, hi) values
    # numeric: the measured grid bin each encoding bin was split from. Only the group totals are
    # measured; how mass spreads inside a group is left to the GAN.
    bin_groups: list[int] = field(default_factory=list)
    log_scale: bool = False  # numeric: interpolate within a bin in sign-log space
    frequencies: list[float] = field(default_factory=list)  # over the encoding slots, sums to 1
    note: str | None = None
    # numeric: the released non-numeric codes (a number with codes: N, -, ...), slots after bins
    codes: list[str] = field(default_factory=list)
    # may the null slot be emitted? None (models saved before it): when the dtype can hold nulls
    nullable: bool | None = None
    # who made each decision that shapes the output: "declared", "public" or "dp" (a DP count)
    decided: dict[str, str] = field(default_factory=dict)
    whole_days: bool = False  # datetime: no time of day (dates written as 2020-01-31)
    # how the cells are written (synthgen.formats pattern): declared, or the DP format vote's
    # winner; None: plain (numbers and ISO dates as pandas writes them)
    format: str | None = None

    @property
    def cell_format(self) -> CellFormat | None:
        return from_pattern(self.format) if self.format else None

    @property
    def slot_groups(self) -> list[int] | None:
        """Numeric: the measured group of each one-hot slot (bins split from one grid key share
        one; each code and the null slot are their own); None for discrete columns."""
        if not self.bin_groups:
            return None
        return [*self.bin_groups, *(-2 - i for i in range(len(self.codes))), -1]

    def lone_bins(self) -> list[bool]:
        """Numeric: the bins the one-way marginal measures as cells of their own, never
        grouped with their neighbours by mass (privacy/marginals.one_way_groups), so that its
        test alone keeps or trims them: a single value (a code, an integer released as itself);
        a bin offered with no domain mass (frequency 0, its grid key split into no other bin:
        an octave beyond a continuous column's kept range, grids.number_bins); and a DP date
        range's first and last bins. A year at a range's end was grouped with its neighbours
        and got a share of their measured mass by its own noisy domain count: on a 300-row
        table over 2015-2024 (30 rows a year, a year's domain deviation 34) the year 2025 was
        kept by the window of years and came out in 4-6 % of the rows, outside the real range.
        A cell of its own is kept only where the one-way test finds it. Reads the domain
        histograms' frequencies: call it before the one-way tables replace them."""
        lone = [lo == hi for lo, hi in self.bins]
        groups = self.bin_groups if len(self.bin_groups) == len(self.bins) else list(
            range(len(self.bins)))
        shared = {g for g in groups if groups.count(g) > 1}
        for i, g in enumerate(groups):
            if i < len(self.frequencies) and self.frequencies[i] <= 0 and g not in shared:
                lone[i] = True
        if self.kind is ColumnKind.DATETIME and self.source == "dp" and len(lone) > 2:
            lone[0] = lone[-1] = True
        return lone

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = self.kind.value
        out["categories"] = [_jsonable(v) for v in self.categories]
        return out

    def to_spec(self, declared: ColumnSpec) -> ColumnSpec:
        """The column as a schema entry: what was declared (``declared``), completed with what
        the run released (kind, categories, range, codes, nullability, format): DP outputs and
        declarations only, so a run given it back spends nothing more on what it says.

        A nullability that a DP count set to ``False`` is written ``null`` (a count decides
        again): a few empty cells below the noise are not "no empty cells", and a declared
        ``false`` would refuse them."""
        if self.kind is ColumnKind.DROP or self.source == "dropped":
            return ColumnSpec(name=self.name, kind=ColumnKind.DROP)
        facts: dict[str, Any] = declared.model_dump(exclude={"kind", "dtype"})
        facts["nullable"] = self.nullable if (
            self.nullable or self.decided.get("nullable") == "declared") else None
        if self.kind is ColumnKind.CATEGORICAL:
            labels = [cell_text(v) for v in self.categories]
            facts["categories"] = labels or None
            facts["other"] = bool(labels) and self.has_other
        elif self.kind in NUMERIC_KINDS:
            edges = [e for b in self.bins for e in b]
            if edges and min(edges) < max(edges) and facts.get("lower") is None:
                facts["lower"], facts["upper"] = float(min(edges)), float(max(edges))
            facts["codes"] = list(self.codes) or None
        fmt = getattr(self, "format", None)
        if fmt is not None and "format" in ColumnSpec.model_fields:
            facts["format"] = fmt
        return ColumnSpec(kind=self.kind, **facts)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnDomain:
        data = dict(data)
        data["kind"] = ColumnKind(data["kind"])
        data["bins"] = [tuple(b) for b in data.get("bins", [])]
        return cls(**data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


# ----------------------------------------------------------------------------- measuring


@dataclass
class _Histogram:
    """One column's counts: public keys by part (in order), then the discovered text keys."""

    parts: dict[str, np.ndarray]
    texts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    labels: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))


def _refuse(spec: ColumnSpec, what: str, examples: list[Any], fix: str) -> SchemaError:
    shown = ", ".join(repr(cell_text(v)) for v in examples[:3])
    return SchemaError(f"column {spec.name!r} is declared {spec.kind.value} but {what}"
                       f"{f' (for example {shown})' if shown else ''}; {fix}",
                       code="schema-mismatch")


def _check_nulls(spec: ColumnSpec, null_count: int) -> None:
    if null_count and spec.nullable is False:
        raise _refuse(spec, f"has {null_count} empty cell(s)", [],
                      'add "nullable": true to its schema entry')


def _measure(spec: ColumnSpec, values: pd.Series, fmt: CellFormat | None = None) -> _Histogram:
    """Count a column's keys; a declared column's cells must fit its declaration. Keys are
    found once per distinct value and weighted by the rows holding it; text is read in the
    column's format ``fmt`` (declared, or released by the format vote)."""
    kind = spec.kind
    if fmt is None and spec.format is not None:
        fmt = from_pattern(spec.format)
    if kind is ColumnKind.CATEGORICAL and spec.categories is not None:
        labels, rows, nulls = label_counts(values, kind)
        index = pd.Index([match_key(c) for c in spec.categories])
        slot = index.get_indexer([match_key(v) for v in labels])
        outside = np.flatnonzero(slot < 0)
        if outside.size and not spec.other:
            raise _refuse(spec, "holds values outside its category list", list(labels[outside]),
                          'add them to "categories", or add "other": true')
        _check_nulls(spec, nulls)
        slot[slot < 0] = len(index)
        counts = np.bincount(slot, weights=rows, minlength=len(index) + 1).astype(np.int64)
        parts = {"null": np.array([nulls]), "category": counts[:-1]}
        if spec.other:
            parts["other"] = counts[-1:]
        return _Histogram(parts)
    if kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
        labels, rows, nulls = label_counts(values, kind)
        _check_nulls(spec, nulls)
        if kind is ColumnKind.BOOLEAN:  # public keys False, True
            as_bool = np.array([bool(v) for v in labels], dtype=bool)
            pair = np.array([rows[~as_bool].sum(), rows[as_bool].sum()])
            return _Histogram({"null": np.array([nulls]), "bool": pair})
        return _Histogram({"null": np.array([nulls])}, rows, labels)

    # A declared date column's integers are refused, naming the first ones in the file: its
    # entries must be in row order.
    cells = read_cells(values, by_value=kind is not ColumnKind.DATETIME, fmt=fmt)
    if kind is ColumnKind.AUTO:
        ngrid, dgrid = number_grid(spec), date_grid(spec)
        key = np.empty(len(cells.cls), dtype=np.int64)
        for klass, offset, grid in ((NUMBER, 3, ngrid), (DATE, 3 + ngrid.size, dgrid)):
            hit = cells.of_class(klass)
            key[hit] = offset + grid.keys(cells.x[hit])
        hit = cells.of_class(BOOLEAN)
        key[hit] = 1 + cells.x[hit].astype(np.int64)
        public = 3 + ngrid.size + dgrid.size
        hit = cells.of_class(TEXT)
        key[hit] = public + cells.text[hit]
        counts = cells.count(key, public + len(cells.labels))
        counts[0] = cells.nulls
        return _Histogram({"null": counts[:1], "bool": counts[1:3],
                           "number": counts[3:3 + ngrid.size],
                           "date": counts[3 + ngrid.size:public]},
                          counts[public:], cells.labels)

    _check_nulls(spec, cells.nulls)
    numeric = kind in (ColumnKind.INTEGER, ColumnKind.CONTINUOUS)
    klass = NUMBER if numeric else DATE
    grid = number_grid(spec) if numeric else date_grid(spec)
    hit = cells.of_class(klass)
    parts = {"null": np.array([cells.nulls]),
             "number" if numeric else "date": cells.count(grid.keys(cells.x[hit]), grid.size,
                                                          hit)}
    misfit = cells.cls != klass
    if numeric and spec.codes is not None:
        parts["code"] = np.zeros(len(spec.codes), dtype=np.int64)
    if misfit.any():
        codes, labels = label_codes(cells.entries()[misfit], ColumnKind.CATEGORICAL)
        slot = (pd.Index([match_key(c) for c in spec.codes or []]).get_indexer(
            [match_key(v) for v in labels]) if "code" in parts else np.full(len(labels), -1))
        if (slot < 0).any():
            what = "holds values that are not numbers or declared codes" if numeric else (
                "holds values that are not ISO dates" if fmt is None else
                f"holds values that are not dates in its format {fmt.pattern}")
            fix = ('declare its "format" (such as "$#,##0.00" or "#.##0,00") or list them in '
                   '"codes"' if numeric else 'declare its "format" (such as "%m/%d/%Y"), fix the '
                   "column or declare it categorical")
            raise _refuse(spec, what, list(labels[slot < 0]), fix)
        parts["code"] = cells.count(slot[codes], len(spec.codes or []), misfit)
    return _Histogram(parts)


# ----------------------------------------------------------------------------- deciding


@dataclass
class _Noisy:
    """A column's noisy histogram and what post-processing needs to read it."""

    spec: ColumnSpec
    parts: dict[str, np.ndarray]
    texts: np.ndarray
    labels: np.ndarray
    sigma: float
    threshold: float  # partition threshold for discovered texts
    rows: float  # the DP row count
    fmt: CellFormat | None = None  # the format vote's winner (undeclared columns)

    @property
    def null(self) -> float:
        return float(self.parts["null"][0])

    def released_texts(self) -> tuple[list[Any], np.ndarray]:
        """Discovered texts whose noisy count clears the partition threshold, most frequent
        first, and their noisy counts."""
        released = np.flatnonzero(self.texts > self.threshold)
        released = released[np.argsort(-self.texts[released], kind="stable")]
        return [_jsonable(self.labels[i]) for i in released], np.clip(self.texts[released], 0,
                                                                       None)

    def significant(self, part: str) -> np.ndarray:
        noisy = self.parts[part]
        return np.where(noisy > significance_threshold(self.sigma, len(noisy)), noisy, 0.0)


def _normalise(freqs: np.ndarray) -> list[float]:
    freqs = np.clip(freqs, 0.0, None)
    total = freqs.sum()
    if total <= 0:
        freqs = np.ones_like(freqs)
        total = freqs.sum()
    return (freqs / total).tolist()


def _nullable(m: _Noisy) -> tuple[bool, str]:
    """Declared, or decided by the column's noisy null count."""
    if m.spec.nullable is not None:
        return m.spec.nullable, "declared"
    return m.null > significance_threshold(m.sigma, 1), "dp"


def _finish(m: _Noisy, kind: ColumnKind, source: str, weights: list[float], codes: list[str],
            decided: dict[str, str], **fields: Any) -> ColumnDomain:
    nullable, decided["nullable"] = _nullable(m)
    freqs = np.array([*weights, max(m.null, 0.0) if nullable else 0.0], dtype=np.float64)
    fmt = _output_format(m, kind, decided)
    dtype = m.spec.dtype or output_dtype(kind, nullable, bool(codes) or not (
        fmt is None or fmt.is_plain))
    return ColumnDomain(name=m.spec.name, kind=kind, dtype=dtype, source=source, codes=codes,
                        nullable=nullable, decided=decided, frequencies=_normalise(freqs),
                        format=fmt.pattern if fmt else None, **fields)


def _output_format(m: _Noisy, kind: ColumnKind, decided: dict[str, str]) -> CellFormat | None:
    """The declared format, or the vote's winner when it fits the released kind."""
    if m.spec.format is not None:
        decided["format"] = "declared"
        return from_pattern(m.spec.format)
    fmt = m.fmt
    if fmt is None:
        return None
    allowed = {ColumnKind.INTEGER: "number", ColumnKind.CONTINUOUS: "number",
               ColumnKind.DATETIME: "date", ColumnKind.BOOLEAN: "bool",
               ColumnKind.CATEGORICAL: CODE}.get(kind)
    if fmt.family != allowed:
        return None
    decided["format"] = "dp"
    return fmt


def _numbers_total(m: _Noisy) -> tuple[float, float] | None:
    """A declared numeric (or date) column's count of values and its deviation: the DP row
    count less its null count (none when declared not nullable) and its declared codes'
    counts, all from this release. None for an undeclared column, whose cells that are not
    numbers (texts under the threshold) no count says."""
    if m.spec.kind not in NUMERIC_KINDS:
        return None
    parts = [m.null] if m.spec.nullable is not False else []
    parts += [float(c) for c in m.parts.get("code", [])]
    return m.rows - sum(parts), m.sigma * math.sqrt(1 + len(parts))


def _number_domain(m: _Noisy, kind: ColumnKind, decided: dict[str, str]) -> ColumnDomain:
    spec = m.spec
    grid = number_grid(spec) if kind is not ColumnKind.DATETIME else date_grid(spec)
    public = spec.kind is not ColumnKind.AUTO and spec.lower is not None
    extra: dict[str, Any] = {}
    if kind is ColumnKind.DATETIME:
        # the date format is a count too: times of day only when they hold real mass
        noisy = m.parts["date"]
        timed = noisy[grid.bins:]
        t = significance_threshold(m.sigma, grid.size)
        timed_mass = float(timed[timed > t].sum())
        extra["whole_days"] = timed_mass <= CONTINUOUS_SHARE * float(noisy[noisy > t].sum())
        decided["time_of_day"] = "dp"
        bins, weights, groups = number_bins(grid.untimed(), noisy[:grid.bins] + timed, kind,
                                             m.sigma * math.sqrt(2), public,
                                             total=_numbers_total(m))
    else:
        bins, weights, groups = number_bins(grid, m.parts["number"], kind, m.sigma, public,
                                             total=_numbers_total(m))
    codes: list[str] = []
    code_weights: list[float] = []
    if "code" in m.parts:  # a public code list
        codes = list(spec.codes or [])
        code_weights = np.clip(m.parts["code"], 0, None).tolist()
        decided["codes"] = "declared"
    elif spec.kind is ColumnKind.AUTO and kind is not ColumnKind.DATETIME:
        released, counts = m.released_texts()
        codes, code_weights = [str(c) for c in released], counts.tolist()
        decided["codes"] = "dp"
    return _finish(m, kind, "public" if public else "dp", [*weights, *code_weights], codes,
                   decided, bins=bins, bin_groups=groups, log_scale=grid.log_scale, **extra)


def _discrete_domain(m: _Noisy, kind: ColumnKind, decided: dict[str, str]) -> ColumnDomain | str:
    """A categorical or boolean domain, or why the column is dropped."""
    spec = m.spec
    if kind is ColumnKind.BOOLEAN:
        return _finish(m, kind, "public", np.clip(m.parts["bool"], 0, None).tolist(), [],
                       decided, categories=[False, True])
    if spec.categories is not None:
        weights = np.clip(m.parts["category"], 0, None).tolist()
        if spec.other:
            weights.append(max(float(m.parts["other"][0]), 0.0))
        return _finish(m, kind, "public", weights, [], decided,
                       categories=list(spec.categories), has_other=spec.other)
    labels, counts = m.released_texts()
    if spec.kind is ColumnKind.AUTO:  # numbers and booleans significant on their own keys
        for part, label_of in (("number", lambda j: str(INT_LO + j)),
                               ("bool", lambda j: str(bool(j)))):
            values = m.parts[part][: INT_HI - INT_LO if part == "number" else 2]
            keep = np.flatnonzero(values > significance_threshold(m.sigma, len(m.parts[part])))
            labels += [label_of(int(j)) for j in keep]
            counts = np.append(counts, values[keep])
    kept = float(np.clip(counts, 0, None).sum())
    non_null = max(m.rows - max(m.null, 0.0), 1.0)
    if not labels and non_null > 0.5 * m.rows:
        return (f"no value is frequent enough to release (each needs about {m.threshold:.0f} "
                "rows at this budget): an identifier or free text; declare it categorical with a "
                "public category list to keep it")
    other = max(non_null - kept, 0.0)
    note = None
    if other > OTHER_WARNING_SHARE * non_null:
        note = (
            f"{other / non_null:.0%} of its values fold into '{OTHER_LABEL}' (a value needs about "
            f"{m.threshold:.0f} rows to be released at this budget); declare its categories in a "
            "schema file to keep them"
        )
    return _finish(m, ColumnKind.CATEGORICAL, "dp", [*np.clip(counts, 0, None), other], [],
                   decided, categories=[_jsonable(c) for c in labels], has_other=bool(labels),
                   note=note)


def _decide_kind(m: _Noisy) -> ColumnKind | None:
    """An undeclared column's kind. The format vote first: it gathers every cell written in one
    format into one key, so it stands far above its noise where the histogram spreads the same
    cells over many keys (a 500-row date column over nine years, each year below the
    threshold): a date format makes a datetime, a number format a number, ``code`` a category.
    Otherwise, and for which number, the class of values with the most released mass in the
    histogram (None: nothing was released)."""
    fmt = m.fmt
    # true/false cells vote for their spelling: without that vote, a boolean count is noise
    # in a text column's two boolean keys (free-text notes came out boolean in 1 run of 20)
    kind = _histogram_kind(m, booleans=fmt is not None and fmt.family == BOOL_FORMAT)
    if fmt is None:
        return kind
    if fmt.family == DATE_FORMAT:
        return ColumnKind.DATETIME
    if fmt.family == CODE:
        return ColumnKind.CATEGORICAL
    if fmt.family == NUMBER_FORMAT:
        if kind in (ColumnKind.INTEGER, ColumnKind.CONTINUOUS):
            return kind
        return ColumnKind.INTEGER if fmt.decimals == 0 else ColumnKind.CONTINUOUS
    return kind


def _histogram_kind(m: _Noisy, booleans: bool = True) -> ColumnKind | None:
    """The class of values with the most released mass in a column's histogram."""
    numbers = m.parts["number"]
    grid = number_grid(m.spec)
    _, weights, _ = number_bins(grid, numbers, ColumnKind.INTEGER, m.sigma, public=False,
                                 fallback=False)
    fractions = numbers[grid.point_keys + grid.bins:]
    fraction_mass = float(fractions[fractions > significance_threshold(
        m.sigma, grid.size)].sum())
    _, text_counts = m.released_texts()
    masses = {
        ColumnKind.BOOLEAN: float(m.significant("bool").sum()) if booleans else 0.0,
        ColumnKind.INTEGER: max(float(sum(weights)) + fraction_mass,
                                window_mass(grid, numbers, m.sigma)),
        ColumnKind.DATETIME: float(m.significant("date").sum()),
        ColumnKind.CATEGORICAL: float(text_counts.sum()),
    }
    # Numbers spread over many grid keys, and the ones below the threshold release no mass,
    # while a code is one key: a few codes beside numbers with half their mass make a number
    # with codes, not a category column.
    released = len(text_counts)
    if 0 < released <= MAX_CODES and masses[ColumnKind.INTEGER] >= CODES_MASS_RATIO * masses[
            ColumnKind.CATEGORICAL]:
        masses[ColumnKind.CATEGORICAL] = 0.0
    kind = max(masses, key=lambda k: masses[k])
    if masses[kind] <= 0:
        return None
    if kind is ColumnKind.INTEGER and fraction_mass > CONTINUOUS_SHARE * masses[kind]:
        return ColumnKind.CONTINUOUS
    return kind


def _domain(m: _Noisy) -> ColumnDomain:
    spec = m.spec
    kind = spec.kind
    decided = {"kind": "declared"}
    if kind is ColumnKind.AUTO:
        decided["kind"] = "dp"
        decided_kind = _decide_kind(m)
        if decided_kind is None:
            if m.null > 0.5 * m.rows:  # an empty column: learned as all-null
                return _finish(m, ColumnKind.CATEGORICAL, "dp", [], [], decided)
            return _dropped(spec, f"no value is frequent enough to release (each needs about "
                                  f"{m.threshold:.0f} rows at this budget): an identifier or "
                                  "free text; declare its kind and categories in a schema to "
                                  "keep it", decided)
        kind = decided_kind
    if kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
        domain = _discrete_domain(m, kind, decided)
        if isinstance(domain, str):
            return _dropped(spec, domain, decided)
        return domain
    return _number_domain(m, kind, decided)


def _dropped(spec: ColumnSpec, why: str, decided: dict[str, str] | None = None) -> ColumnDomain:
    return ColumnDomain(name=spec.name, kind=ColumnKind.DROP, dtype="object", source="dropped",
                        note=why, decided=decided or {"kind": "public"})


def discovers_texts(spec: ColumnSpec) -> bool:
    """Whether the column's histogram has keys no schema named (its texts), released only
    above the partition threshold: an undeclared column, or categories without a list."""
    return spec.kind is ColumnKind.AUTO or (
        spec.kind is ColumnKind.CATEGORICAL and spec.categories is None)


def discovers(spec: ColumnSpec) -> bool:
    """Whether the domain histograms must find something out about this column: its kind, its
    category list, or its range (a number without declared bounds is read off the noisy grid
    like an undeclared one: at 3,000 rows the minimum share left Adult's declared age as 32..63
    and education-num as 9..10, the only values that cleared the threshold)."""
    return discovers_texts(spec) or (spec.kind in NUMERIC_KINDS and spec.lower is None)


def check_declared(df: pd.DataFrame, schema: TableSchema) -> None:
    """Raise SchemaError when a declared column's cells do not fit its declaration (a value
    outside a closed list, an empty cell in a non-nullable column): what fitting would refuse,
    found before anything is stored or released."""
    for spec in schema.learned:
        if spec.kind is not ColumnKind.AUTO:
            _measure(spec, df[spec.name])


# ----------------------------------------------------------------------------- the estimate


@dataclass
class DomainEstimate:
    domains: list[ColumnDomain]
    entry: LedgerEntry | None
    warnings: list[str]
    # The row count, released in the same Gaussian mechanism (one more key each row adds 1 to):
    # the exact count is not public, and everything sized by it (the sampling rate, the number
    # of steps, the default output size, the report) uses this instead.
    rows_estimate: float
    # the format vote, released before the histograms (None: no undeclared column)
    vote_entry: LedgerEntry | None = None
    # what weighting code columns added to the histograms' release beyond the preprocessing
    # share (1/sigma^2), which the marginals' part gives up (privacy/budget.py)
    code_extra: float = 0.0
    # the noise deviation of rows_estimate (public: the mechanism's sigma)
    rows_sd: float | None = None


def estimate_domains(
    df: pd.DataFrame, schema: TableSchema, plan: BudgetPlan,
    release: Releaser | np.random.Generator,
) -> DomainEstimate:
    """Measure every learned column's histogram with one Gaussian mechanism; derive domains.

    Every column is counted (and checked against its declaration) before any noise is drawn,
    so a table that does not fit its schema stops here having released nothing. ``release``
    is the fit's releaser (a bare generator: one of its own, outside a fit).
    """
    if not isinstance(release, Releaser):
        release = Releaser.scratch(release, plan.accountant_delta)
    rows = len(df)
    learned = schema.learned
    k = len(learned)
    if k == 0:
        return DomainEstimate([_dropped(c, "declared or named as an identifier")
                               for c in schema.columns], None, ["no column can be learned"], 0.0)
    multiplier = gaussian_noise_multiplier(plan.preprocessing_epsilon, plan.accountant_delta)
    voters = [spec for spec in learned if spec.kind is ColumnKind.AUTO]
    formats: dict[str, CellFormat | None] = {}
    cells: dict[str, float] = {}
    vote_entry = None
    if voters:
        # The format vote and the histograms compose (1/sigma^2 adds up) to the one Gaussian
        # release the preprocessing share pays for: the vote takes 1/FORMAT_VOTE_RATIO^2 of it.
        vote_multiplier = FORMAT_VOTE_RATIO * multiplier
        multiplier = 1.0 / math.sqrt(1.0 / multiplier**2 - 1.0 / vote_multiplier**2)
        formats, cells, vote_entry = _vote_formats(df, voters, vote_multiplier, release)
    counted = {spec.name: _measure(spec, df[spec.name], formats.get(spec.name))
               for spec in learned}
    # the joint vector (k histograms and the row count) has L2 sensitivity sqrt(k + 1)
    sensitivity = math.sqrt(k + 1)
    sigma = multiplier * sensitivity
    discovered = [c for c in learned if discovers_texts(c)]
    threshold = partition_threshold(sigma, plan.threshold_delta, len(discovered))
    weights = code_weights(
        {name: cells[name] for name, f in formats.items() if f is not None and f.family == CODE},
        sigma, plan, len(discovered))
    thresholds: dict[str, float] = {}
    code_extra = 0.0
    if weights:
        # each row adds w to one key of a weighted column: the others keep their sigma, the
        # multiplier shrinks, the release costs code_extra more (out of the marginals' part)
        sensitivity = math.sqrt(k + 1 + sum(w**2 - 1 for w in weights.values()))
        multiplier = sigma / sensitivity
        code_extra = sum(w**2 - 1 for w in weights.values()) / sigma**2
        # a key only the added row has counts w: P(w + noise > w T(sigma / w)) = P(1 + noise
        # / w > T(sigma / w)), the partition threshold's failure probability
        thresholds = {name: w * partition_threshold(sigma / w, plan.threshold_delta,
                                                    len(discovered))
                      for name, w in weights.items()}
    # the row count, then each learned column's public keys by part and its discovered texts
    exact: list[Value] = [np.array([rows])]
    for spec in learned:
        hist = counted[spec.name]
        w = weights.get(spec.name, 1.0)
        exact += [*(w * part for part in hist.parts.values()),
                  Keys(hist.labels, w * hist.texts, thresholds.get(spec.name))]
    noisy_values = iter(release.gaussian(
        "gaussian_histograms",
        f"one histogram per learned column ({k}): kinds, null counts, category sets and "
        "frequencies, value ranges on a public grid; and the row count",
        exact, noise_multiplier=multiplier, sensitivity=sensitivity, threshold=threshold,
        extra_delta=plan.threshold_delta if discovered else 0.0,
        params={
            "columns": k,
            "discovered_category_columns": len(discovered),
            "numeric_bin_threshold": significance_threshold(sigma, NumberGrid(
                OCTAVE_EDGES, True, True).size),
            **({"code_weights": weights, "code_thresholds": thresholds,
                "code_extra": code_extra} if weights else {}),
        }))
    rows_estimate = float(cast(np.ndarray, next(noisy_values))[0])

    domains: list[ColumnDomain] = []
    warnings: list[str] = []
    decided_by_counts: dict[str, list[str]] = {}
    for spec in schema.columns:
        if spec.kind is ColumnKind.DROP:
            domains.append(_dropped(spec, "declared or named as an identifier"))
            continue
        w = weights.get(spec.name, 1.0)  # a weighted column's counts, back in rows
        parts = {name: cast(np.ndarray, next(noisy_values)) / w
                 for name in counted[spec.name].parts}
        texts = cast(Keys, next(noisy_values))
        noisy = _Noisy(spec, parts, texts.counts / w, texts.labels, sigma / w,
                       thresholds.get(spec.name, w * threshold) / w,
                       max(rows_estimate, 1.0), formats.get(spec.name))
        domain = _domain(noisy)
        if domain.source == "dropped":
            warnings.append(f"column {spec.name!r} dropped: {domain.note}")
        elif domain.note:
            warnings.append(f"column {spec.name!r}: {domain.note}")
        dp = sorted(d for d, by in domain.decided.items() if by == "dp")
        if dp:
            decided_by_counts[spec.name] = dp
        domains.append(domain)

    # post-processing facts: the DP row count, and which output-shaping decisions (format,
    # kind, nullable, codes) these counts made
    release.annotate("gaussian_histograms", rows_estimate=rows_estimate,
                     decided_by_counts=decided_by_counts)
    entry = release.ledger.entries[-1]
    return DomainEstimate(domains, entry, warnings, rows_estimate, vote_entry, code_extra,
                          sigma)


# The format vote's noise multiplier against the preprocessing share's: it costs 1/ratio^2 of
# that share's Gaussian budget (6 %), and a format holds most of a column's cells, so a vote of
# a few hundred cells still stands far above its noise.
FORMAT_VOTE_RATIO = 4.0
# A significant code count makes digit strings text only when it is also this share of the
# column's votes: a number column never writes leading zeros, a ZIP column mostly does.
CODE_SHARE = 0.05
# The vote's noise comes from a stream of its own: the histograms' draws stay those of a run
# without it.
VOTE_STREAM = "format_votes"


def code_weights(cells: dict[str, float], sigma: float, plan: BudgetPlan,
                 discovered: int) -> dict[str, float]:
    """The weight of each code column (``cells``: the vote's noisy count of its non-empty
    cells) in the joint histogram, whose noise is ``sigma``: enough for a code held by
    CODE_VALUE_SHARE of its cells to clear the partition threshold, all together within the
    plan's code budget (privacy/budget.py); none for a column whose codes clear it already.
    From DP outputs and the plan only."""
    z = float(norm.isf(plan.threshold_delta / max(discovered, 1)))
    want: dict[str, float] = {}
    for name, n in cells.items():
        target = (CODE_VALUE_SHARE * n - 1.0) / z  # the sigma at which such a code clears
        if target > 0 and sigma > target:
            want[name] = (sigma / target) ** 2 - 1.0
    budget = code_budget(plan, plan.accountant_delta) * sigma**2
    if not want or budget <= 0:
        return {}
    scale = min(1.0, budget / sum(want.values()))
    return {name: math.sqrt(1.0 + extra * scale) for name, extra in want.items()}


def _vote_formats(
    df: pd.DataFrame, voters: list[ColumnSpec], multiplier: float, release: Releaser,
) -> tuple[dict[str, CellFormat | None], dict[str, float], LedgerEntry]:
    """Each undeclared column's format, elected by a Gaussian vote: every non-empty cell adds
    1 to the one candidate its text is written in (or to ``text``), so a row moves the joint
    vector of votes by sqrt(columns) in L2. Decided before the histograms, which then read each
    column's text in its format (sequential composition). Also each column's noisy count of
    non-empty cells (the sum of its significant votes)."""
    sensitivity = math.sqrt(len(voters))
    sigma = multiplier * sensitivity
    counts: list[Value] = [format_counts(df[spec.name]) for spec in voters]
    keys = len(cast(np.ndarray, counts[0]))
    threshold = significance_threshold(sigma, keys)
    if VOTE_STREAM not in release.streams:
        release.streams[VOTE_STREAM] = release.streams["main"].spawn(1)[0]
    noisy = release.gaussian(
        "gaussian_format_votes",
        f"one vote per undeclared column ({len(voters)}): how its cells are written (number, "
        "money, percent, date and boolean spellings, codes with leading zeros)",
        counts, noise_multiplier=multiplier, sensitivity=sensitivity,
        params={"columns": len(voters), "keys_per_column": keys,
                "format_threshold": threshold},
        stream=VOTE_STREAM)
    formats = {spec.name: decide(cast(np.ndarray, votes), threshold, code_share=CODE_SHARE)
               for spec, votes in zip(voters, noisy, strict=True)}
    release.annotate("gaussian_format_votes",
                     formats={name: f.pattern if f else None for name, f in formats.items()})
    # the votes that clear the threshold: the noise of a few dozen empty candidates, clipped
    # at zero, would add thousands
    cells = {spec.name: float(np.where(v > threshold, v, 0.0).sum())
             for spec, v in zip(voters, (cast(np.ndarray, x) for x in noisy), strict=True)}
    return formats, cells, release.ledger.entries[-1]
