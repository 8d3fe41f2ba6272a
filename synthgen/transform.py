"""Encoding rows for the GAN, and the exact inverse.

The encoder is built from :class:`~synthgen.privacy.domains.ColumnDomain` objects only (DP
outputs or public facts); it never fits anything to the raw table. Per learned column:

- discrete (categorical, boolean): a one-hot span over [released values..., other?, null];
- numeric (integer, continuous, datetime): a one-hot span over [bins..., codes..., null] and one
  scalar in [-1, 1], the position inside the bin (in sign-log space for octave bins). This plays
  the role of CTGAN's mode-specific normalisation, with bins from a DP histogram instead of a GMM
  fit. A zero-width bin is a point (an integer code); a number with codes (N, -, ...) has a slot
  per released code and decodes to text, numbers and codes as the file wrote them. Sampling
  draws the position uniformly for a date's bins and a continuous column's octave-wide bins
  (:attr:`TableEncoder.drawn_positions`: DP-SGD collapses those scalars to -1).

Everything is vectorised over rows (numpy / pandas), one pass per column.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synthgen.privacy.cells import (
    category_labels,
    distinct,
    integer_values,
    label_codes,
    match_key,
    numeric_values,
    parse_numbers,
)
from synthgen.privacy.domains import ColumnDomain, other_label
from synthgen.schema import ColumnKind


@dataclass(frozen=True)
class Span:
    """A slice of the encoded row: a softmax (one-hot) block or a tanh scalar."""

    column: str
    start: int
    width: int
    activation: str  # "softmax" | "tanh"

    @property
    def stop(self) -> int:
        return self.start + self.width


def _slog(x: np.ndarray) -> np.ndarray:
    # copysign: the same values as sign(x) * log1p(|x|) in one pass fewer
    return np.copysign(np.log1p(np.abs(x)), x)


def _slog_inv(t: np.ndarray, out: np.ndarray | None = None,
              scratch: np.ndarray | None = None) -> np.ndarray:
    """The inverse of :func:`_slog`; ``out`` may be ``t`` itself, and ``scratch`` an array of
    its shape to work in (no fresh array at all, instead of three)."""
    magnitude = np.abs(t, out=scratch)
    np.expm1(magnitude, out=magnitude)
    return np.copysign(magnitude, t, out=out)


# datetime64[ns] reaches about 292 years either side of 1970
_NS_LIMIT_S = float(np.iinfo(np.int64).max) / 1e9


def _seconds_to_datetime64(x: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Seconds since the epoch (float) to datetime64[ns], NaT where null or out of range.

    What ``pd.to_datetime(x, unit="s", errors="coerce")`` gives (to float64 precision), without
    its float path: that runs under ``np.errstate(over="raise")`` and raised on a stale
    floating-point overflow flag left by earlier, unrelated arithmetic in the same thread.
    """
    ns = np.full(x.shape, np.iinfo(np.int64).min, dtype=np.int64)  # NaT
    with np.errstate(all="ignore"):
        ok = ~null & np.isfinite(x) & (np.abs(x) < _NS_LIMIT_S)
        ns[ok] = np.round(x[ok] * 1e9).astype(np.int64)
    return ns.view("datetime64[ns]")


def _nullable(dtype: str) -> bool:
    # "boolean" and "Int64" are pandas' nullable dtypes; "bool", "int64" and "uint8" are not
    return dtype in ("boolean", "string") or not dtype.startswith(("int", "uint", "bool"))


def _may_be_null(d: ColumnDomain) -> bool:
    """Whether the null slot may be emitted: the domain's DP or declared decision (models saved
    before it existed: whether the dtype can hold nulls)."""
    return d.nullable if d.nullable is not None else _nullable(d.dtype)


def _matching(labels: np.ndarray, targets: list[Any]) -> np.ndarray:
    """Index of each label in ``targets`` (-1: none), matched on the cell's text (1, "1" and
    1.0 are one label)."""
    index = pd.Index([match_key(t) for t in targets], dtype=object)
    return index.get_indexer(pd.Index([match_key(v) for v in labels], dtype=object))


def _bin_positions(d: ColumnDomain, grid: BinGrid,
                   x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The slot (bin, or the null slot for NaN) and the float32 scalar of each value."""
    null = np.isnan(x)
    x = np.nan_to_num(x)
    idx = np.clip(np.searchsorted(grid.lo, x, side="right") - 1, 0, len(grid.lo) - 1)
    if grid.point.any():  # a point (an integer code) takes its exact value only
        points = np.flatnonzero(grid.point)
        at = np.clip(np.searchsorted(grid.lo[points], x), 0, len(points) - 1)
        exact = grid.lo[points][at] == x
        idx = np.where(exact, points[at], idx)
        stray = ~exact & grid.point[idx] & (grid.lo[idx] != x)
        if stray.any():  # past a point inside an interval: back to that interval
            before = np.maximum.accumulate(np.where(grid.point, -1, np.arange(len(grid.lo))))
            inside = (before[idx] >= 0) & (x < grid.hi[np.maximum(before[idx], 0)])
            idx = np.where(stray & inside, before[idx], idx)
    idx = _nearer_next(d, grid, x, idx)
    if grid.whole:  # a whole number v stands for [v, v + 1) (a day: a day): decoding floors
        x = x + 0.5 * grid.unit
    tx = _slog(x) if d.log_scale else x
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = (tx - grid.tlo[idx]) / grid.safe_width[idx]
    u = np.where(grid.point[idx], 0.5, inside)
    offset = np.clip(u, 0.0, 1.0) * 2 - 1
    slot = np.where(null, len(d.bins) + len(d.codes), idx)
    return slot, np.where(null, 0.0, offset).astype(np.float32)


def _nearer_next(d: ColumnDomain, grid: BinGrid, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """A value in a gap between two bins (past bin ``idx``'s end, before the next one's start)
    takes the nearer of the two, in the space positions are taken in (sign-log for octaves).
    The released bins need not cover the data: Adult's capital-gain at 3,000 rows and epsilon
    1 released 0 and a window of 4,096-8,191 (kinds only), and the gains of 594-4,095 (a
    third of the non-zero ones) were encoded as 0, so the one-way table and the generator
    learned a non-zero share of 3 % for a real 8.3 %. Encoding only: which bins exist is the
    domain histograms' release."""
    n = len(grid.lo)
    if n < 2:
        return idx
    nxt = np.minimum(idx + 1, n - 1)
    end = grid.hi[idx]
    past = (x > end) | ((x == end) & ~grid.point[idx])
    gap = past & (idx + 1 < n) & (x < grid.lo[nxt])
    if not gap.any():
        return idx
    tx, tend, tnext = ((_slog(x), _slog(end), _slog(grid.lo[nxt])) if d.log_scale
                       else (x, end, grid.lo[nxt]))
    return np.where(gap & (tnext - tx < tx - tend), nxt, idx)


def _code_slots(d: ColumnDomain, slot: np.ndarray, code: np.ndarray) -> np.ndarray:
    """A number with codes: a value that is not a number takes its code's slot (``code``: the
    index in ``d.codes``, -1 for none), else stays null."""
    return np.where((slot == len(d.bins) + len(d.codes)) & (code >= 0), len(d.bins) + code,
                    slot)


@dataclass(frozen=True)
class EncodedTable:
    """A table in the encoder's terms: ``slots`` (rows x one-hot spans, int32: the hot slot of
    each span) and ``scalars`` (rows x tanh scalars, float32, in span order)."""

    slots: np.ndarray
    scalars: np.ndarray

    def __len__(self) -> int:
        return int(self.slots.shape[0])

    def dense(self, encoder: TableEncoder) -> np.ndarray:
        """The dense float32 rows (one-hot spans and scalars), as the networks see them."""
        n = len(self)
        out = np.zeros((n, encoder.width), dtype=np.float32)
        # flat indices: ~10x faster than out[rows, cols] for wide tables
        flat_index = (np.arange(n, dtype=np.int64) * encoder.width)[:, None] + (
            encoder.slot_starts[None, :] + self.slots)
        out.reshape(-1)[flat_index.ravel()] = 1.0
        out[:, encoder.scalar_columns] = self.scalars
        return out


class TableEncoder:
    def __init__(self, domains: list[ColumnDomain]) -> None:
        self.domains = domains
        self.spans: list[Span] = []
        self.discrete_spans: list[Span] = []  # one-hot spans, one per learned column
        start = 0
        for d in self.learned:
            width = self._slots(d)
            span = Span(d.name, start, width, "softmax")
            self.spans.append(span)
            self.discrete_spans.append(span)
            start += width
            if d.kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                self.spans.append(Span(d.name, start, 1, "tanh"))
                start += 1
        self.width = start

    @property
    def learned(self) -> list[ColumnDomain]:
        return [d for d in self.domains if d.kind is not ColumnKind.DROP]

    @staticmethod
    def _slots(d: ColumnDomain) -> int:
        if d.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            return len(d.categories) + int(d.has_other) + 1
        return len(d.bins) + len(d.codes) + 1

    # ------------------------------------------------------------------------- encode

    def encode(self, df: pd.DataFrame) -> EncodedTable:
        """Encode a table compactly: a slot per one-hot span and the tanh scalars.

        This is what training keeps (on the GPU for a GPU run): the dense one-hot rows are
        built per batch on the device (:meth:`EncodedTable.dense` does the same on the host),
        so a 1 M-row table costs ~8 bytes per column instead of 4 bytes per one-hot slot.
        """
        n = len(df)
        slots = np.empty((n, len(self.discrete_spans)), dtype=np.int32)
        scalars = np.empty((n, len(self.scalar_columns)), dtype=np.float32)
        k_scalar = 0
        for k, d in enumerate(self.learned):
            if d.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                slots[:, k] = self._discrete_slots(d, df[d.name])
            else:
                slots[:, k], scalars[:, k_scalar] = self._numeric_slots(d, df[d.name])
                k_scalar += 1
        return EncodedTable(slots, scalars)

    def empty_slots(self) -> list[int]:
        """Columns of the encoded row whose released frequency is exactly 0 (the generator
        never produces them; see ``Generator``'s ``forbidden``)."""
        return [span.start + slot
                for span, d in zip(self.discrete_spans, self.learned, strict=True)
                for slot, f in enumerate(d.frequencies[: span.width]) if f <= 0]

    @property
    def slot_starts(self) -> np.ndarray:
        """Column of the encoded row where each one-hot span starts."""
        return np.array([s.start for s in self.discrete_spans], dtype=np.int64)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Encode a table densely: float32 array of shape (rows, width)."""
        return self.encode(df).dense(self)

    @staticmethod
    def _discrete_slots(d: ColumnDomain, values: pd.Series) -> np.ndarray:
        # Look each distinct value's slot up once, then gather per row (no per-row hashing
        # beyond one factorisation; none for a categorical, whose codes index its categories).
        codes, uniques = distinct(values, first_seen=False)
        slot_of_value = _matching(np.asarray(category_labels(uniques, d.kind), dtype=object),
                                  d.categories)
        other = len(d.categories)  # unreleased values fold into "other" (or the null slot)
        slot_of_value[slot_of_value < 0] = other
        null_slot = len(d.categories) + int(d.has_other)
        return np.append(slot_of_value, null_slot)[codes]  # code -1 (null) picks the null slot

    @staticmethod
    def _numeric_slots(d: ColumnDomain, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """Each row's slot and scalar, computed once per distinct value where finding those is
        cheap (an integer column by value, text by one factorisation), else per row."""
        grid = BinGrid.of(d)
        # integers are numbers (never codes), but not dates: those are parsed per row
        counted = integer_values(values) if d.kind is not ColumnKind.DATETIME else None
        if counted is not None:
            slot, offset = _bin_positions(d, grid, counted.values)
            return counted.per_row(slot), counted.per_row(offset)
        fmt = d.cell_format
        if not (isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object):
            slot, offset = _bin_positions(d, grid, numeric_values(values, d.kind, fmt))
            if d.codes:  # a string dtype: its text that is not a number may be a code
                codes, labels = label_codes(values, ColumnKind.CATEGORICAL)
                slot = _code_slots(d, slot, np.append(_matching(labels, d.codes), -1)[codes])
            return slot, offset
        codes, uniques = distinct(values, first_seen=False)
        slot, offset = _bin_positions(d, grid, parse_numbers(uniques, d.kind, fmt))
        if d.codes:
            slot = _code_slots(d, slot, _matching(np.asarray(
                category_labels(uniques, ColumnKind.CATEGORICAL), dtype=object), d.codes))
        # code -1 (null) picks the trailing null slot and scalar
        return (np.append(slot, len(d.bins) + len(d.codes))[codes],
                np.append(offset, np.float32(0.0))[codes])

    # ------------------------------------------------------------------------- decode

    @property
    def nullable(self) -> list[bool]:
        """Per one-hot span: may its last (null) slot be emitted? As the DP null count (or the
        schema) decided."""
        return [_may_be_null(d) for d in self.learned]

    @property
    def scalar_columns(self) -> list[int]:
        return [s.start for s in self.spans if s.activation == "tanh"]

    @property
    def drawn_positions(self) -> list[tuple[int, int, list[bool]]]:
        """Where sampling draws a value's position inside its bin uniformly instead of taking
        the generator's scalar: (the scalar's index among :attr:`scalar_columns`, the column's
        one-hot span index, which of its slots). A date column's bins, all of them; a
        continuous column's bins an octave wide or wider (an octave offered beyond the kept
        ones, grids.number_bins, or merged pieces).

        DP-SGD drives these scalars to -1, where the tanh's gradient vanishes (a probe on a
        300-row table at epsilon 1: after the marginal warm-up 162 distinct dates, after 30
        epochs 10, every one a January 1), so a year's dates all came out on its first day
        (a table whose real dates start on 2015-01-24 had its 2015 share before its range),
        and an octave's values on its lower edge (the transactions' amounts of 256-511 came out
        as 256-270). A bin is what the DP releases resolve; where inside it a value falls is not
        released, and a uniform position (a uniform day, second, or point of the octave in
        sign-log space) is the least wrong guess, far better than a spike. A kept octave's
        eight pieces, a numeric column's unit pieces and points keep the generator's scalar.
        Sampling only, from the sampling seed's generator: the encoding, the releases and
        training are unchanged; which slots is a function of the bins (DP outputs)."""
        out = []
        numeric = 0
        for k, d in enumerate(self.learned):
            if d.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                continue
            if d.kind is ColumnKind.DATETIME:
                wide = [True] * len(d.bins)
            elif d.kind is ColumnKind.CONTINUOUS and d.log_scale:
                wide = [lo * hi > 0 and max(abs(lo), abs(hi)) >= 2 * min(abs(lo), abs(hi))
                        for lo, hi in d.bins]
            else:
                wide = []
            if any(wide):
                out.append((numeric, k, [*wide, *[False] * (self._slots(d) - len(d.bins))]))
            numeric += 1
        return out

    def inverse_transform(self, encoded: np.ndarray) -> pd.DataFrame:
        """Decode an encoded array (one-hot or scores per span, tanh scalars) to a table."""
        slots = np.empty((encoded.shape[0], len(self.discrete_spans)), dtype=np.int64)
        for k, (span, nullable) in enumerate(zip(self.discrete_spans, self.nullable, strict=True)):
            stop = span.stop if nullable else span.stop - 1
            slots[:, k] = encoded[:, span.start : stop].argmax(axis=1)
        return self.decode(slots, encoded[:, self.scalar_columns])

    def decode(
        self, slots: np.ndarray, scalars: np.ndarray, *, threads: int = 1,
        predecoded: bool = False,
    ) -> pd.DataFrame:
        """A table from each row's slot per one-hot span and its tanh scalars (in span order).

        Text columns come back as pandas categoricals (codes plus the released labels: no
        per-row Python objects); ``threads`` > 1 decodes columns in parallel (numpy releases
        the GIL), for fast sampling on many cores. With ``predecoded``, ``slots`` and
        ``scalars`` are what :class:`DeviceDecoder` computed (codes with -1 for null, and the
        numeric values): only the wrapping into columns is left.
        """
        n = slots.shape[0]
        jobs: list[tuple[ColumnDomain, np.ndarray, np.ndarray | None]] = []
        k_scalar = 0
        for k, d in enumerate(self.learned):
            if d.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                jobs.append((d, slots[:, k], None))
            else:
                jobs.append((d, slots[:, k], scalars[:, k_scalar]))
                k_scalar += 1

        def one(job: tuple[ColumnDomain, np.ndarray, np.ndarray | None]) -> Any:
            d, slot, scalar = job
            if predecoded:
                null = slot < 0
                if scalar is None:
                    return self._discrete_column(d, slot, null)
                return self._numeric_column(d, scalar, null, slot)
            if scalar is None:
                return self._decode_discrete(d, slot)
            return self._decode_numeric(d, slot, scalar)

        if threads > 1 and len(jobs) > 1:
            # numeric columns first: they cost several times a categorical one, and the
            # last column to start bounds the chunk
            order = sorted(range(len(jobs)), key=lambda i: jobs[i][2] is None)
            with ThreadPoolExecutor(max_workers=threads) as pool:
                done = dict(zip(order, pool.map(one, [jobs[i] for i in order]), strict=True))
            decoded = [done[i] for i in range(len(jobs))]
        else:
            decoded = [one(job) for job in jobs]
        by_name = {d.name: values for (d, _, _), values in zip(jobs, decoded, strict=True)}
        columns: dict[str, Any] = {}
        for d in self.domains:
            # dropped columns keep their place in the output, empty (np.empty(object) is None)
            columns[d.name] = by_name[d.name] if d.name in by_name else np.empty(n, dtype=object)
        out = pd.DataFrame(columns, copy=False)
        # a column written with a fixed number of decimals (12.50) keeps them in a CSV, while
        # the frame keeps its floats: write_csv reads this
        decimals = {d.name: fmt.decimals for d in self.learned
                    if d.kind is ColumnKind.CONTINUOUS and (fmt := d.cell_format) is not None
                    and fmt.is_plain and fmt.decimals}
        if decimals:
            out.attrs["decimals"] = decimals
        return out

    @staticmethod
    def _decode_discrete(d: ColumnDomain, slot: np.ndarray) -> Any:
        null_slot = len(d.categories) + int(d.has_other)
        if d.kind is ColumnKind.BOOLEAN:
            slot = np.asarray(slot, dtype=np.intp)  # one pass over a strided column, not two
            return TableEncoder._discrete_column(d, slot, slot == null_slot)
        # The slots are the codes, but for the null slot: one narrowing copy of the strided
        # column (a code dtype as small as the categorical's own), then the nulls in place
        codes = slot.astype(np.min_scalar_type(-(null_slot + 1)))
        null = codes == null_slot
        codes[null] = -1
        return TableEncoder._discrete_column(d, codes, null)

    @staticmethod
    def _discrete_column(d: ColumnDomain, codes: np.ndarray, null: np.ndarray) -> Any:
        """A discrete column from its codes: slots, -1 where ``null`` (booleans: the slots)."""
        if d.kind is ColumnKind.BOOLEAN:  # slots: False, True, null
            fmt = d.cell_format
            if fmt is not None and not fmt.is_plain:  # its own spelling: yes/no, Y/N, ...
                return fmt.write((codes == 1).astype(np.float64), null)
            if _may_be_null(d):
                return pd.arrays.BooleanArray(codes == 1, null.copy())
            return codes == 1
        labels = [*d.categories, *([other_label(d.categories)] if d.has_other else [])]
        if d.has_other and d.format == "code" and len(d.categories):
            codes = _spread_other(d, codes)
        if d.dtype in ("object", "str", "string"):
            # text: a categorical over the released labels; CSV output is the same text
            return pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object))
        try:  # e.g. an integer column declared categorical: its labels in the input's dtype
            return pd.array(labels, dtype=d.dtype).take(codes, allow_fill=True)
        except (TypeError, ValueError):
            return np.array([*labels, None], dtype=object)[codes]

    @staticmethod
    def _decode_numeric(d: ColumnDomain, slot: np.ndarray, scalar: np.ndarray) -> Any:
        grid = BinGrid.of(d)
        # The slots read once (a column of the slots table is strided) into a contiguous
        # intp array: gathers index fastest with it, and take(mode="clip") faster than
        # indexing (the indices are in range; mode="raise" would also buffer ``out``).
        idx = slot.astype(np.intp)
        null = idx == len(d.bins) + len(d.codes)
        np.minimum(idx, len(d.bins) - 1, out=idx)
        # In place, with one scratch array (u): every fresh 1 M-row float64 array is 8 MB of
        # memory to fault in and give back, which is what decoding spent its time on.
        u = scalar.astype(np.float64)
        np.clip(u, -1, 1, out=u)
        u += 1
        u *= 0.5
        x = np.take(grid.width, idx, mode="clip")
        x *= u
        x += np.take(grid.tlo, idx, out=u, mode="clip")
        if d.log_scale:
            _slog_inv(x, out=x, scratch=u)
        if grid.whole:
            assert grid.first is not None and grid.last is not None
            if grid.unit != 1.0:
                x /= grid.unit
            np.floor(x, out=x)
            if grid.unit != 1.0:
                x *= grid.unit
            # np.clip(x, first, last) as a maximum and a minimum: one scratch array, and
            # both are several times faster than clip with array bounds (first <= last)
            np.maximum(x, np.take(grid.first, idx, out=u, mode="clip"), out=x)
            np.minimum(x, np.take(grid.last, idx, out=u, mode="clip"), out=x)
        elif d.kind is ColumnKind.INTEGER:
            np.round(x, out=x)
        x[null] = np.nan
        return TableEncoder._numeric_column(d, x, null, slot)

    @staticmethod
    def _numeric_column(d: ColumnDomain, x: np.ndarray, null: np.ndarray,
                        slot: np.ndarray | None = None) -> Any:
        """A numeric column from its float64 values (NaN where ``null``); with codes, text."""
        if d.codes and slot is not None:
            return TableEncoder._coded_column(d, x, null, slot)
        fmt = d.cell_format
        if fmt is not None and fmt.decimals is not None and d.kind is ColumnKind.CONTINUOUS:
            x = np.round(x, fmt.decimals)  # no more decimals than the column writes
        if fmt is not None and not fmt.is_plain:
            if d.kind is ColumnKind.DATETIME:
                x = np.round(x / 86400.0) * 86400.0 if d.whole_days else np.round(x)
            return fmt.write(x, null)
        if d.kind is ColumnKind.DATETIME:
            # the released date format: whole days, else whole seconds
            x = np.round(x / 86400.0) * 86400.0 if d.whole_days else np.round(x)
            stamps = pd.Series(_seconds_to_datetime64(x, null))
            return stamps.astype(d.dtype) if d.dtype.startswith("datetime64") else stamps
        if d.kind is ColumnKind.INTEGER:
            if d.dtype == "Int64":  # the masked array directly, no float detour
                return pd.arrays.IntegerArray(np.where(null, 0, x).astype(np.int64), null)
            if _nullable(d.dtype):
                return pd.array(pd.array(x, dtype="Float64"), dtype=d.dtype)
            return x.astype(d.dtype)
        return x

    @staticmethod
    def _coded_column(d: ColumnDomain, x: np.ndarray, null: np.ndarray,
                      slot: np.ndarray) -> np.ndarray:
        """A number with codes as text: the numbers as a CSV writes them, the codes as
        released; None where null."""
        out = _number_text(d, x)
        code = slot.astype(np.int64) - len(d.bins)
        is_code = (code >= 0) & (code < len(d.codes)) & ~null
        out[is_code] = np.asarray(d.codes, dtype=object)[code[is_code]]
        out[null] = None
        return out


def _spread_other(d: ColumnDomain, codes: np.ndarray) -> np.ndarray:
    """A code column (ZIP codes, ``007``) writes no ``Other``: a code that is not among the
    released ones is written as a released code, drawn by the released frequencies (the same
    draws every time, so a seeded run repeats). Post-processing of DP outputs only."""
    other = len(d.categories)
    hit = codes == other
    if not hit.any():
        return codes
    weights = np.clip(np.asarray(d.frequencies[:other], dtype=np.float64), 0, None)
    if weights.sum() <= 0:
        weights = np.ones(other)
    draws = np.random.default_rng(other).choice(other, size=int(hit.sum()),
                                                 p=weights / weights.sum())
    codes = codes.copy()
    codes[hit] = draws.astype(codes.dtype)
    return codes


def _number_text(d: ColumnDomain, x: np.ndarray) -> np.ndarray:
    fmt = d.cell_format
    if fmt is not None and fmt.family == "number":
        return fmt.write(x, np.isnan(x))
    if d.kind is ColumnKind.INTEGER:
        return np.nan_to_num(x).astype(np.int64).astype(str).astype(object)
    return pd.Series(x).astype(str).to_numpy(dtype=object)


@dataclass(frozen=True)
class BinGrid:
    """Per-bin arrays of a numeric domain, in the space the position inside a bin is taken in
    (sign-log for octave bins): computed per bin, then gathered per row."""

    lo: np.ndarray  # value space, for searchsorted
    tlo: np.ndarray
    width: np.ndarray  # thi - tlo
    safe_width: np.ndarray  # width, or 1 where it is 0 (a point mass)
    point: np.ndarray  # bool: zero-width bin, its values sit in the middle
    # Integer columns whose bins have whole-number edges: bin [a, b) holds a..b-1, value v is
    # encoded as v + 1/2 and decoded by flooring into [first, last] of its bin, so a generator
    # at either end of a bin never lands on its neighbour's value.
    # Dates written as whole days, in bins with midnight edges, the same in days (unit 86,400
    # seconds): a date at the top of a year's bin is that year's December 31, never the next
    # January 1 (outside the real range when the year is the last: 2025-01-01 for a column
    # that ends in 2024).
    whole: bool = False
    first: np.ndarray | None = None
    last: np.ndarray | None = None
    unit: float = 1.0
    # value space: each bin's end (exclusive; a point's own value, or v + unit in a whole grid)
    hi: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @staticmethod
    def of(d: ColumnDomain) -> BinGrid:
        lo = np.array([b[0] for b in d.bins], dtype=np.float64)
        hi = np.array([b[1] for b in d.bins], dtype=np.float64)
        unit = 86400.0 if d.kind is ColumnKind.DATETIME and d.whole_days else 1.0
        whole = (d.kind is ColumnKind.INTEGER or unit > 1.0) and bool(
            np.all(lo / unit == np.round(lo / unit)) and np.all(hi / unit == np.round(hi / unit)))
        point = ~(hi > lo)
        if whole:  # a point bin [v, v] is [v, v + 1) once shifted
            hi = np.where(point, lo + unit, hi)
        tlo, thi = (_slog(lo), _slog(hi)) if d.log_scale else (lo, hi)
        width = thi - tlo
        if whole:
            return BinGrid(lo, tlo, width, np.where(width > 0, width, 1.0),
                           np.zeros(len(lo), bool), True, lo, np.maximum(hi - unit, lo), unit,
                           hi)
        return BinGrid(lo, tlo, width, np.where(width > 0, width, 1.0), ~(width > 0), hi=hi)
