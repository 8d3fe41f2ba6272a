"""The holdout: real rows split off before training, for the audit and the utility test.

The split happens before :meth:`Synthesizer.fit` sees the table, so the holdout rows are read by
no mechanism of the fit and spend no budget; the price is a smaller training table. The report
declares the split (``holdout``) so a reader knows how many rows the model learned from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_SHARE = 0.1
MAX_SHARE = 0.5
# Below this many holdout rows the audit's figures are mostly noise: it is skipped, with a note.
MIN_HOLDOUT_ROWS = 20


@dataclass(frozen=True)
class Holdout:
    train: pd.DataFrame
    holdout: pd.DataFrame
    share: float

    def describe(self, purposes: Sequence[str]) -> dict[str, object]:
        return {
            "rows": len(self.holdout),
            "share": self.share,
            "training_rows": len(self.train),
            "used_for": list(purposes),
            "note": (
                "These real rows were split off at random before training: the model never "
                "saw them, and the training table was smaller by as many rows."
            ),
        }


def split_holdout(df: pd.DataFrame, share: float, seed: int | None = None) -> Holdout:
    """A uniformly random split: ``share`` of the rows (rounded) go to the holdout."""
    if not 0 < share <= MAX_SHARE:
        raise ValueError(f"the holdout share must be in (0, {MAX_SHARE}]; got {share}")
    rows = int(round(len(df) * share))
    if rows < MIN_HOLDOUT_ROWS:
        raise ValueError(
            f"a holdout share of {share:g} of {len(df)} rows is {rows} rows, fewer than the "
            f"{MIN_HOLDOUT_ROWS} the audit needs; raise --holdout-share or pass --no-audit"
        )
    order = np.random.default_rng(seed).permutation(len(df))
    mask = np.zeros(len(df), dtype=bool)
    mask[order[:rows]] = True
    return Holdout(df[~mask].reset_index(drop=True), df[mask].reset_index(drop=True), share)


def keep_head(
    chunks: Iterable[pd.DataFrame], rows: int
) -> tuple[Iterator[pd.DataFrame], list[pd.DataFrame]]:
    """Pass chunks through (to a writer) while keeping the first ``rows`` rows for evaluation,
    so the evaluation sees exactly the rows that were released, without reading them back."""
    kept: list[pd.DataFrame] = []

    def through() -> Iterator[pd.DataFrame]:
        have = 0
        for chunk in chunks:
            if have < rows:
                kept.append(chunk.iloc[: rows - have])
                have += len(kept[-1])
            yield chunk

    return through(), kept
