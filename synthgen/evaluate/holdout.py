"""The holdout: real rows split off before training, for the audit and the utility test.

The split happens before :meth:`Synthesizer.fit` sees the table, so the holdout rows are read by
no mechanism of the fit and spend no budget; the price is a smaller training table. Each row goes
to the holdout independently with probability ``share`` (Poisson), from a secret seed: adding or
removing one input row then adds or removes at most that row of the training table, so
neighbouring input tables give neighbouring training tables and the fit's guarantee holds with
respect to the input table. (A split of a fixed size could swap a row between training and
holdout when one row was added: for about 10 % of table sizes the guarantee against the input
table was about epsilon 1.91 instead of 1, issue 22.) The split itself is not released: the
evaluation (owner-only) declares it, the public report says only that there was one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import pandas as pd

from synthgen.models.trainer import noise_rng

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
                "These real rows were split off at random before training, each row on its own "
                "with probability share (Poisson): the model never saw them, and the training "
                "table was smaller by as many rows."
            ),
        }


# The stream of the run's seed the split draws from (the fit's noise uses others).
SPLIT_STREAM = 2


def split_holdout(df: pd.DataFrame, share: float, seed: int | None = None) -> Holdout:
    """A Poisson split: each row goes to the holdout independently with probability ``share``,
    so the holdout's size is random (about ``share`` of the rows) and neighbouring tables give
    neighbouring training tables. ``seed`` is secret (None: fresh OS entropy)."""
    if not 0 < share <= MAX_SHARE:
        raise ValueError(f"the holdout share must be in (0, {MAX_SHARE}]; got {share}")
    mask = noise_rng(seed, SPLIT_STREAM).random(len(df)) < share
    return Holdout(df[~mask].reset_index(drop=True), df[mask].reset_index(drop=True), share)


SPLIT_NOTE = (
    "Before training, each input row was held out at random with probability {share:g}, on its "
    "own (Poisson), for the owner-only evaluation. The guarantee holds with respect to the input "
    "table: adding or removing one input row adds or removes at most that row of the training "
    "table. Which rows, and how many, were held out is not released."
)


def public_split(share: float) -> dict[str, object]:
    """What the public report says of a holdout split: its (public) share and method only."""
    return {"holdout_share": share, "method": "poisson", "note": SPLIT_NOTE.format(share=share)}


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
