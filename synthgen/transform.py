"""Encoding rows for the GAN, and the exact inverse.

The encoder is built from :class:`~synthgen.privacy.domains.ColumnDomain` objects only (DP
outputs or public facts); it never fits anything to the raw table. Per learned column:

- discrete (categorical, boolean): a one-hot span over [released values..., other?, null];
- numeric (integer, continuous, datetime): a one-hot span over [bins..., null] and one scalar in
  [-1, 1], the position inside the bin (in sign-log space for octave bins). This plays the role of
  CTGAN's mode-specific normalisation, with bins from a DP histogram instead of a GMM fit.

Everything is vectorised over rows (numpy / pandas), one pass per column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthgen.privacy.domains import ColumnDomain, category_labels, numeric_values, other_label
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
    return np.sign(x) * np.log1p(np.abs(x))


def _slog_inv(t: np.ndarray) -> np.ndarray:
    return np.sign(t) * np.expm1(np.abs(t))


def _nullable(dtype: str) -> bool:
    return not dtype.startswith(("int", "uint", "bool"))


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
        return len(d.bins) + 1

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

    @property
    def slot_starts(self) -> np.ndarray:
        """Column of the encoded row where each one-hot span starts."""
        return np.array([s.start for s in self.discrete_spans], dtype=np.int64)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Encode a table densely: float32 array of shape (rows, width)."""
        return self.encode(df).dense(self)

    @staticmethod
    def _discrete_slots(d: ColumnDomain, values: pd.Series) -> np.ndarray:
        null = values.isna().to_numpy()
        labels = category_labels(values, d.kind)
        codes = pd.Categorical(labels, categories=d.categories).codes.astype(np.int64)
        other = len(d.categories)
        codes = np.where(codes < 0, other, codes)  # unreleased values fold into "other"
        null_slot = len(d.categories) + int(d.has_other)
        return np.where(null, null_slot, codes)

    @staticmethod
    def _numeric_slots(d: ColumnDomain, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        x = numeric_values(values, d.kind)
        null = np.isnan(x)
        lo = np.array([b[0] for b in d.bins])
        hi = np.array([b[1] for b in d.bins])
        idx = np.clip(np.searchsorted(lo, np.nan_to_num(x), side="right") - 1, 0, len(lo) - 1)
        t = _slog if d.log_scale else (lambda v: v)
        tlo, thi = t(lo[idx]), t(hi[idx])
        width = thi - tlo
        with np.errstate(invalid="ignore", divide="ignore"):
            inside = (t(np.nan_to_num(x)) - tlo) / np.where(width > 0, width, 1)
            u = np.where(width > 0, inside, 0.5)
        offset = np.clip(u, 0.0, 1.0) * 2 - 1
        slot = np.where(null, len(d.bins), idx)
        return slot, np.where(null, 0.0, offset).astype(np.float32)

    # ------------------------------------------------------------------------- decode

    @property
    def nullable(self) -> list[bool]:
        """Per one-hot span: may its last (null) slot be emitted? Not when the input's dtype
        had no room for nulls (int64, bool)."""
        return [_nullable(d.dtype) for d in self.learned]

    @property
    def scalar_columns(self) -> list[int]:
        return [s.start for s in self.spans if s.activation == "tanh"]

    def inverse_transform(self, encoded: np.ndarray) -> pd.DataFrame:
        """Decode an encoded array (one-hot or scores per span, tanh scalars) to a table."""
        slots = np.empty((encoded.shape[0], len(self.discrete_spans)), dtype=np.int64)
        for k, (span, nullable) in enumerate(zip(self.discrete_spans, self.nullable, strict=True)):
            stop = span.stop if nullable else span.stop - 1
            slots[:, k] = encoded[:, span.start : stop].argmax(axis=1)
        return self.decode(slots, encoded[:, self.scalar_columns])

    def decode(self, slots: np.ndarray, scalars: np.ndarray) -> pd.DataFrame:
        """A table from each row's slot per one-hot span and its tanh scalars (in span order)."""
        columns: dict[str, pd.Series] = {}
        by_name = {d.name: d for d in self.learned}
        decoded: dict[str, pd.Series] = {}
        n = slots.shape[0]
        k_scalar = 0
        for k, d in enumerate(self.learned):
            slot = slots[:, k]
            if d.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                decoded[d.name] = self._decode_discrete(d, slot)
            else:
                decoded[d.name] = self._decode_numeric(d, slot, scalars[:, k_scalar])
                k_scalar += 1
        for d in self.domains:
            if d.name in by_name:
                columns[d.name] = decoded[d.name]
            else:  # dropped columns keep their place in the output, empty
                columns[d.name] = pd.Series([None] * n, dtype=object)
        return pd.DataFrame(columns)

    @staticmethod
    def _decode_discrete(d: ColumnDomain, slot: np.ndarray) -> pd.Series:
        labels = np.array(
            [*d.categories, *([other_label(d.categories)] if d.has_other else []), None],
            dtype=object,
        )
        values = pd.Series(labels[slot], dtype=object)
        if d.kind is ColumnKind.BOOLEAN:
            return values.astype("boolean" if _nullable(d.dtype) else "bool")
        if d.dtype not in ("object", "str", "string"):
            try:
                return pd.Series(pd.array(values, dtype=d.dtype))
            except (TypeError, ValueError):
                return values
        return values

    @staticmethod
    def _decode_numeric(d: ColumnDomain, slot: np.ndarray, scalar: np.ndarray) -> pd.Series:
        null = slot == len(d.bins)
        idx = np.minimum(slot, len(d.bins) - 1)
        lo = np.array([b[0] for b in d.bins])[idx]
        hi = np.array([b[1] for b in d.bins])[idx]
        u = (np.clip(scalar.astype(np.float64), -1, 1) + 1) / 2
        if d.log_scale:
            x = _slog_inv(_slog(lo) + u * (_slog(hi) - _slog(lo)))
        else:
            x = lo + u * (hi - lo)
        if d.kind is ColumnKind.INTEGER:
            x = np.round(x)
        x = np.where(null, np.nan, x)
        if d.kind is ColumnKind.DATETIME:
            stamps = pd.to_datetime(pd.Series(x), unit="s", errors="coerce")
            return stamps.astype(d.dtype) if d.dtype.startswith("datetime64") else stamps
        if d.kind is ColumnKind.INTEGER:
            if _nullable(d.dtype):
                return pd.Series(pd.array(x, dtype="Float64")).astype(d.dtype)
            return pd.Series(x.astype(d.dtype))
        return pd.Series(x, dtype="float64")
