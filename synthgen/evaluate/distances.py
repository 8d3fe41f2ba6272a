"""Distances between rows of mixed tables, for the privacy audit.

A row becomes a vector in which every column weighs at most 1 in squared Euclidean distance:

- numerical and datetime columns: the value's mid-rank in the real reference rows, in [0, 1]
  (robust to outliers and to the scale of the column), plus a missing-value flag;
- categorical columns: a one-hot vector scaled by 1/sqrt(2), so two different labels are at
  distance 1; the :data:`MAX_LABELS` most frequent labels of the reference get a slot, and every
  other label (including the synthesizer's "Other") is the zero vector, at distance 1/sqrt(2).

Nearest neighbours are exact (brute force): matrix products in float32 on chunks of rows, which
is a few seconds for tens of thousands of rows on two cores. Distances are rounded to
:data:`RESOLUTION` so that float32 round-off cannot turn a tie into a win (ties matter: many rows
of a categorical table are at exactly the same distance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from synthgen.evaluate.columns import CATEGORICAL, labels, values

MAX_LABELS = 200
RESOLUTION = 1e-4
_CHUNK = 2048


@dataclass
class RowEncoder:
    """Maps rows to vectors; fitted on real rows only."""

    kinds: dict[str, str]
    ranks: dict[str, np.ndarray] = field(default_factory=dict)  # sorted reference values
    vocabularies: dict[str, dict[str, int]] = field(default_factory=dict)
    width: int = 0

    @classmethod
    def fit(cls, reference: pd.DataFrame, kinds: dict[str, str]) -> RowEncoder:
        enc = cls(kinds)
        for name, sdtype in kinds.items():
            if sdtype == CATEGORICAL:
                counts = pd.Series(labels(reference[name])).value_counts()
                enc.vocabularies[name] = {
                    str(v): i for i, v in enumerate(counts.index[:MAX_LABELS])
                }
                enc.width += len(enc.vocabularies[name])
            else:
                x = values(reference[name], sdtype)
                enc.ranks[name] = np.sort(x[~np.isnan(x)])
                enc.width += 2
        return enc

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(df), self.width), dtype=np.float32)
        col = 0
        for name, sdtype in self.kinds.items():
            if sdtype == CATEGORICAL:
                vocab = self.vocabularies[name]
                slot = pd.Series(labels(df[name])).map(vocab).to_numpy(dtype=np.float64,
                                                                      na_value=np.nan)
                rows = np.flatnonzero(~np.isnan(slot))
                out[rows, col + slot[rows].astype(np.int64)] = np.float32(1 / np.sqrt(2))
                col += len(vocab)
            else:
                ref = self.ranks[name]
                x = values(df[name], sdtype)
                missing = np.isnan(x)
                if ref.size:
                    ties = np.searchsorted(ref, x, "left") + np.searchsorted(ref, x, "right")
                    rank = ties / (2.0 * ref.size)
                else:
                    rank = np.full(len(x), 0.5)
                out[:, col] = np.where(missing, 0.5, rank)
                out[:, col + 1] = missing
                col += 2
        return out


def _rounded(d2: torch.Tensor) -> np.ndarray:
    d = d2.clamp_min(0).sqrt().cpu().numpy().astype(np.float64)
    return np.round(d / RESOLUTION) * RESOLUTION


def cross_nearest(
    queries: np.ndarray, pool: np.ndarray, k: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each query row to its ``k`` nearest pool rows, shape (n, k), and from each
    pool row to its nearest query row, shape (m,): one pass over the distance matrix gives both.

    Missing neighbours (a pool smaller than ``k``) are ``inf``.
    """
    n, m = queries.shape[0], pool.shape[0]
    if n == 0 or m == 0:
        return np.full((n, k), np.inf), np.full(m, np.inf)
    k_eff = min(k, m)
    # Squared distances in one matrix product: [q, |q|^2, 1] . [-2p, 1, |p|^2] = |q - p|^2, so
    # no extra pass over the (chunk x pool) matrix is spent adding the norms.
    # On a GPU node the distance matrices (10k x 10k x the encoded width, a few times per
    # audit) take milliseconds there instead of seconds to minutes on the CPU.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    p = torch.from_numpy(np.ascontiguousarray(pool, dtype=np.float32)).to(device)
    ones = torch.ones(m, 1, device=device)
    p_aug = torch.cat([-2.0 * p, ones, (p * p).sum(1, keepdim=True)], dim=1).T.contiguous()
    to_pool = []
    from_pool = torch.full((m,), float("inf"), device=device)
    with torch.no_grad():
        for start in range(0, n, _CHUNK):
            q = torch.from_numpy(np.ascontiguousarray(queries[start : start + _CHUNK],
                                                      dtype=np.float32)).to(device)
            q_aug = torch.cat([q, (q * q).sum(1, keepdim=True),
                               torch.ones(len(q), 1, device=device)], dim=1)
            d2 = q_aug @ p_aug
            to_pool.append(torch.topk(d2, k_eff, dim=1, largest=False).values)
            from_pool = torch.minimum(from_pool, torch.amin(d2, dim=0))
    near = _rounded(torch.cat(to_pool))
    if k_eff < k:
        near = np.pad(near, ((0, 0), (0, k - k_eff)), constant_values=np.inf)
    return near, _rounded(from_pool)
