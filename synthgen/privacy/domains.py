"""DP estimation of each column's domain: the only place the raw table is read before training.

For every learned column one histogram is measured (see :mod:`synthgen.privacy.mechanisms`):
- categorical without a public list: counts of the observed values; keys clear a noisy threshold
  or are folded into "other"; the null key is public;
- boolean, or categorical with a public list: counts over the public keys;
- numeric (integer, continuous, datetime): counts over a *public* grid (octaves of |x| with an
  exact-zero key, calendar years for datetimes, or 32 equal bins between public bounds).
Everything after the noise is post-processing: which grid bins are significant, how they are split
into encoding bins, and the frequencies the generator's conditional vectors are drawn from.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from synthgen.privacy.accountant import gaussian_epsilon, gaussian_noise_multiplier
from synthgen.privacy.budget import BudgetPlan
from synthgen.privacy.ledger import LedgerEntry
from synthgen.privacy.mechanisms import noisy_counts, partition_threshold
from synthgen.schema import ColumnKind, ColumnSpec, TableSchema

OTHER_LABEL = "Other"


def other_label(categories: list[Any]) -> str:
    """The label of the fold-in bucket; not "Other" when that is a real category (Adult's race)."""
    return OTHER_LABEL if OTHER_LABEL not in categories else f"{OTHER_LABEL} (rare values)"
# Post-processing: a numeric grid bin is kept when its noisy count clears a threshold set so that
# a column gets a spurious (noise-only) bin with probability FALSE_BIN_RATE; a kept bin with no
# kept neighbour must clear twice that (noise rarely lands next to real mass).
FALSE_BIN_RATE = 0.01
# A categorical column none of whose values clears the threshold is an identifier or free text
# (or too small a table for its budget): it is dropped, decided from DP outputs only. One whose
# "Other" holds more than this share of its values is kept, with a warning.
OTHER_WARNING_SHARE = 0.2
MAX_NUMERIC_BINS = 64
# Encoding bins per measured octave (the DP 1-way marginal at this resolution is measured with
# the other marginals, see privacy/marginals.py): the generator learns shapes inside an octave
# from DP counts, not only from the discriminator.
SUB_BINS = 8
INTEGER_PIECES = 16

_OCTAVES = 2.0 ** np.arange(-10, 64)
OCTAVE_EDGES = np.concatenate([-_OCTAVES[::-1], _OCTAVES])  # public, data-independent
_YEARS = np.arange(1678, 2263)
YEAR_EDGES = (
    pd.to_datetime([f"{y}-01-01" for y in _YEARS])
    .to_numpy("datetime64[s]")
    .astype(np.float64)
)


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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = self.kind.value
        out["categories"] = [_jsonable(v) for v in self.categories]
        return out

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


# ----------------------------------------------------------------------------- numeric values


def numeric_values(values: pd.Series, kind: ColumnKind) -> np.ndarray:
    """Float values of a numeric column (datetimes as seconds since the epoch), NaN for null."""
    if isinstance(values.dtype, pd.CategoricalDtype) or (
        kind is ColumnKind.DATETIME and values.dtype == object
    ):
        # Text (as the reader's categoricals, or as strings): parse each distinct value once.
        codes, uniques = pd.factorize(values)
        parsed = _parse_numbers(pd.Series(np.asarray(uniques, dtype=object)), kind)
        return np.append(parsed, np.nan)[codes]  # code -1 (null) picks the trailing NaN
    return _parse_numbers(values, kind)


def _parse_numbers(values: pd.Series, kind: ColumnKind) -> np.ndarray:
    if kind is ColumnKind.DATETIME:
        parsed = pd.to_datetime(values, errors="coerce", format="ISO8601")
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert(None)
        out = parsed.to_numpy("datetime64[s]").astype(np.float64)
        out[parsed.isna().to_numpy()] = np.nan
        return out
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass(frozen=True)
class _Grid:
    edges: np.ndarray  # bins are [edges[i], edges[i+1])
    zero_key: bool  # exact zero gets its own key
    log_scale: bool

    @property
    def value_keys(self) -> int:
        return len(self.edges) - 1 + int(self.zero_key)

    def codes(self, x: np.ndarray) -> np.ndarray:
        """Key per value: 0 = null, 1 = exact zero (if any), then the grid bins."""
        inner = np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, len(self.edges) - 2)
        offset = 1 + int(self.zero_key)
        codes = inner + offset
        if self.zero_key:
            codes = np.where(x == 0, 1, codes)
        return np.where(np.isnan(x), 0, codes)


def _grid_for(spec: ColumnSpec) -> _Grid:
    if spec.lower is not None and spec.upper is not None:
        lo, hi = spec.lower, spec.upper
        if spec.kind is ColumnKind.DATETIME:
            lo, hi = float(lo), float(hi)
        return _Grid(np.linspace(lo, hi, 33), zero_key=False, log_scale=False)
    if spec.kind is ColumnKind.DATETIME:
        return _Grid(YEAR_EDGES, zero_key=False, log_scale=False)
    return _Grid(OCTAVE_EDGES, zero_key=True, log_scale=True)


def significance_threshold(sigma: float, keys: int) -> float:
    return sigma * float(norm.isf(FALSE_BIN_RATE / max(keys, 1)))


def _split_bin(lo: float, hi: float, parts: int, log_scale: bool) -> list[tuple[float, float]]:
    if parts <= 1 or lo == hi:
        return [(lo, hi)]
    if log_scale and lo * hi > 0:
        sign = 1.0 if lo > 0 else -1.0
        points = sign * np.geomspace(abs(lo), abs(hi), parts + 1)
        points.sort()
    else:
        points = np.linspace(lo, hi, parts + 1)
    return [(float(a), float(b)) for a, b in zip(points[:-1], points[1:], strict=True)]


def _grow(keep: np.ndarray, plausible: np.ndarray) -> np.ndarray:
    """The kept bins, extended over neighbours whose noisy count is plausibly real (over two
    sigma), as far as such neighbours go. A tail below the significance threshold is the rule
    on small tables (an octave of a few hundred rows); its mass is measured again, with more
    budget, by the one-way marginal (privacy/marginals.py). Gaps are not filled: between a
    spurious far bin and the data they would span every octave in between."""
    keep = keep.copy()
    while True:
        neighbour = np.zeros_like(keep)
        neighbour[1:] |= keep[:-1]
        neighbour[:-1] |= keep[1:]
        add = neighbour & plausible & ~keep
        if not add.any():
            return keep
        keep |= add


def _split_integer_bin(lo: float, hi: float, parts: int) -> list[tuple[float, float]]:
    """[lo, hi) cut at whole numbers into at most ``parts`` pieces of about equal width."""
    a, b = math.ceil(lo), math.ceil(hi)
    if b - a <= 1:
        return [(lo, hi)] if b > a else []
    points = np.unique(np.round(np.linspace(a, b, min(parts, b - a) + 1)))
    return [(float(x), float(y)) for x, y in zip(points[:-1], points[1:], strict=True)]


def _numeric_domain(
    spec: ColumnSpec, grid: _Grid, noisy: np.ndarray, sigma: float, rows: float
) -> ColumnDomain:
    null_count = max(noisy[0], 0.0)
    value_noisy = noisy[1:]
    public_bounds = spec.lower is not None
    if public_bounds:
        keep = np.ones_like(value_noisy, bool)
    else:
        threshold = significance_threshold(sigma, len(value_noisy))
        keep = value_noisy > threshold
        neighbour = np.zeros_like(keep)
        neighbour[1:] |= keep[:-1]
        neighbour[:-1] |= keep[1:]
        keep &= neighbour | (value_noisy > 2 * threshold)
        if keep.any():
            keep = _grow(keep, value_noisy > 2 * sigma)
    if not keep.any():
        keep[int(np.argmax(value_noisy))] = True
    bins: list[tuple[float, float]] = []
    weights: list[float] = []
    groups: list[int] = []
    for key in np.flatnonzero(keep):
        weight = max(float(value_noisy[key]), 0.0)
        if grid.zero_key and key == 0:
            bins.append((0.0, 0.0))
            weights.append(weight)
            groups.append(int(key))
            continue
        i = key - int(grid.zero_key)
        lo, hi = float(grid.edges[i]), float(grid.edges[i + 1])
        if spec.kind is ColumnKind.INTEGER and grid.log_scale:
            # whole-number pieces (unit bins up to 16, then 16 equal pieces an octave), so a
            # piece holds whole values and decoding never lands between two of them
            pieces = _split_integer_bin(lo, hi, INTEGER_PIECES)
        else:
            pieces = _split_bin(lo, hi, SUB_BINS if grid.log_scale else 1, grid.log_scale)
        if not pieces:  # an octave below 1 holds no whole number
            continue
        bins.extend(pieces)
        weights.extend([weight / len(pieces)] * len(pieces))
        groups.extend([int(key)] * len(pieces))
    if not bins:  # only octaves below 1 were kept for a whole-number column: noise
        bins, weights, groups = [(0.0, 0.0)], [1.0], [0]
    while len(bins) > MAX_NUMERIC_BINS:  # merge neighbours; keep point masses apart
        j = min(
            (k for k in range(len(bins) - 1) if bins[k][0] != bins[k][1]
             and bins[k + 1][0] != bins[k + 1][1]),
            key=lambda k: weights[k] + weights[k + 1],
            default=None,
        )
        if j is None:
            break
        bins[j : j + 2] = [(bins[j][0], bins[j + 1][1])]
        weights[j : j + 2] = [weights[j] + weights[j + 1]]
        absorbed = groups[j + 1]  # a bin straddling two groups joins them into one
        groups = [groups[j] if g == absorbed else g for g in groups]
        groups[j : j + 2] = [groups[j]]
    freqs = np.array([*weights, null_count], dtype=np.float64)
    return ColumnDomain(
        name=spec.name,
        kind=spec.kind,
        dtype=spec.dtype or "float64",
        source="public" if public_bounds else "dp",
        bins=bins,
        log_scale=grid.log_scale,
        bin_groups=groups,
        frequencies=_normalise(freqs, rows),
    )


def _normalise(freqs: np.ndarray, rows: float) -> list[float]:
    freqs = np.clip(freqs, 0.0, None)
    total = freqs.sum()
    if total <= 0:
        freqs = np.ones_like(freqs)
        total = freqs.sum()
    return (freqs / total).tolist()


_TRUE_WORDS = frozenset({"true", "1", "yes", "t", "y"})


def category_labels(values: pd.Series, kind: ColumnKind) -> pd.Series:
    """Labels as the output will hold them: booleans for boolean columns; for text columns,
    strings (a column of mixed types is read as text, its numbers as their strings)."""
    if kind is ColumnKind.BOOLEAN:
        if pd.api.types.is_bool_dtype(values.dtype):
            return values
        return values.map(lambda v: v if pd.isna(v) else str(v).strip().lower() in _TRUE_WORDS)
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
            return values  # already text: no per-value work
        return values.map(lambda v: v if isinstance(v, str) or pd.isna(v) else str(v))
    return values


def label_codes(values: pd.Series, kind: ColumnKind) -> tuple[np.ndarray, np.ndarray]:
    """Each row's label (see :func:`category_labels`) as a code into the distinct labels.

    Returns ``(codes, labels)``: int64 codes, -1 for null, and an object array of the distinct
    labels in order of first appearance. One hash pass over the column (none for a categorical
    column), and the labelling runs once per distinct value instead of once per row.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy().astype(np.int64)
        # First-appearance order, as factorize gives for other dtypes, so that a table gets the
        # same (seeded) release however it was read; unused categories are not observed keys.
        seen = pd.unique(codes)
        seen = seen[seen >= 0]
        renumber = np.full(len(values.cat.categories) + 1, -1, dtype=np.int64)
        renumber[seen] = np.arange(len(seen))
        codes = renumber[codes]  # -1 picks the trailing -1
        uniques: Any = values.cat.categories.take(seen)
    else:
        codes, uniques = pd.factorize(values)
        codes = codes.astype(np.int64, copy=False)
    labels = category_labels(pd.Series(uniques), kind)
    # Labelling may merge distinct values (1 and "1" are both the label "1").
    merged, distinct = pd.factorize(labels)
    if len(distinct) < len(labels):
        codes = np.append(merged, -1)[codes]
    return codes, np.asarray(distinct, dtype=object)


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


def estimate_domains(
    df: pd.DataFrame, schema: TableSchema, plan: BudgetPlan, rng: np.random.Generator
) -> DomainEstimate:
    """Measure every learned column's histogram with one Gaussian mechanism; derive domains."""
    rows = len(df)
    learned = schema.learned
    k = len(learned)
    warnings: list[str] = []
    if k == 0:
        return DomainEstimate(_dropped_all(schema), None, ["no column can be learned"], 0.0)
    multiplier = gaussian_noise_multiplier(plan.preprocessing_epsilon, plan.accountant_delta)
    # the joint vector (k histograms and the row count) has L2 sensitivity sqrt(k + 1)
    sigma = multiplier * math.sqrt(k + 1)
    rows_estimate = float(noisy_counts(np.array([rows]), sigma, rng)[0])
    discovered = [
        c for c in learned if c.kind is ColumnKind.CATEGORICAL and c.categories is None
    ]
    threshold = partition_threshold(sigma, plan.threshold_delta, len(discovered))

    domains: list[ColumnDomain] = []
    for spec in schema.columns:
        if spec.kind is ColumnKind.DROP:
            domains.append(_dropped(spec, "declared or named as an identifier"))
            continue
        values = df[spec.name]
        if spec.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            domain = _discrete_domain(spec, values, sigma, threshold, rng, rows_estimate)
        else:
            grid = _grid_for(spec)
            x = numeric_values(values, spec.kind)
            counts = np.bincount(grid.codes(x), minlength=1 + grid.value_keys)
            domain = _numeric_domain(spec, grid, noisy_counts(counts, sigma, rng), sigma,
                                    rows_estimate)
        if domain.source == "dropped":
            warnings.append(f"column {spec.name!r} dropped: {domain.note}")
        elif domain.note:
            warnings.append(f"column {spec.name!r}: {domain.note}")
        domains.append(domain)

    entry = LedgerEntry(
        mechanism="gaussian_histograms",
        reads=(
            f"one histogram per learned column ({k}): category sets and frequencies, null rates, "
            "value ranges on a public grid; and the row count"
        ),
        noise_multiplier=multiplier,
        sampling_rate=1.0,
        steps=1,
        epsilon=gaussian_epsilon(multiplier, plan.accountant_delta),
        extra_delta=plan.threshold_delta if discovered else 0.0,
        params={
            "sigma": sigma,
            "l2_sensitivity": math.sqrt(k + 1),
            "columns": k,
            "rows_estimate": rows_estimate,
            "discovered_category_columns": len(discovered),
            "threshold": threshold,
            "numeric_bin_threshold": significance_threshold(sigma, len(OCTAVE_EDGES)),
        },
    )
    return DomainEstimate(domains, entry, warnings, rows_estimate)


def _discrete_domain(
    spec: ColumnSpec,
    values: pd.Series,
    sigma: float,
    threshold: float,
    rng: np.random.Generator,
    rows: float,
) -> ColumnDomain:
    public: list[Any] | None = [False, True] if spec.kind is ColumnKind.BOOLEAN else (
        spec.categories)
    codes, keys = label_codes(values, spec.kind)
    # one pass over the rows: the count of each observed label, and of nulls (code -1)
    with_null = np.bincount(codes + 1, minlength=len(keys) + 1)
    null_count, observed = with_null[0], with_null[1:]

    if public is not None:
        # the same histogram over the public keys, plus one bucket for values outside the list
        key_slot = pd.Index(public).get_indexer(keys)
        key_slot[key_slot < 0] = len(public)
        counts = np.zeros(len(public) + 1, dtype=np.int64)
        np.add.at(counts, key_slot, observed)
        noisy = noisy_counts(counts, sigma, rng)
        null_noisy = noisy_counts(np.array([null_count]), sigma, rng)[0]
        has_other = spec.kind is ColumnKind.CATEGORICAL
        freqs = np.concatenate([noisy[: len(public)], noisy[len(public):] if has_other else [],
                                [null_noisy]])
        return ColumnDomain(
            name=spec.name, kind=spec.kind, dtype=spec.dtype or "object", source="public",
            categories=list(public), has_other=has_other, frequencies=_normalise(freqs, rows),
        )

    # every key of label_codes is observed (count >= 1), in order of first appearance
    noisy = noisy_counts(observed, sigma, rng)
    null_noisy = float(noisy_counts(np.array([null_count]), sigma, rng)[0])
    released = np.flatnonzero(noisy > threshold)
    released = released[np.argsort(-noisy[released], kind="stable")]
    kept = float(np.clip(noisy[released], 0, None).sum())
    non_null = max(rows - max(null_noisy, 0.0), 1.0)
    if released.size == 0 and non_null > 0.5 * rows:
        return _dropped(
            spec,
            f"no value is frequent enough to release (each needs about {threshold:.0f} rows at "
            "this budget): an identifier or free text; declare it categorical with a public "
            "category list to keep it",
        )
    other = max(non_null - kept, 0.0)
    note = None
    if other > OTHER_WARNING_SHARE * non_null:
        note = (
            f"{other / non_null:.0%} of its values fold into '{OTHER_LABEL}' (a value needs about "
            f"{threshold:.0f} rows to be released at this budget); declare its categories in a "
            "schema file to keep them"
        )
    categories = [keys[i] for i in released]
    freqs = np.array([*np.clip(noisy[released], 0, None), other, null_noisy])
    return ColumnDomain(
        name=spec.name, kind=spec.kind, dtype=spec.dtype or "object", source="dp",
        categories=[_jsonable(c) for c in categories], has_other=True,
        frequencies=_normalise(freqs, rows), note=note,
    )


def _dropped(spec: ColumnSpec, why: str) -> ColumnDomain:
    return ColumnDomain(name=spec.name, kind=ColumnKind.DROP, dtype="object", source="dropped",
                        note=why)


def _dropped_all(schema: TableSchema) -> list[ColumnDomain]:
    return [_dropped(c, "declared or named as an identifier") for c in schema.columns]
