"""DP mechanisms on histograms.

All histograms of one fit are released together as one Gaussian mechanism: each row adds 1 to
exactly one key of each measured column's histogram, so adding or removing a row moves the joint
vector of counts by sqrt(k) in L2 (k = measured columns). Keys that are *discovered* from the data
(the category set of a column without a public list) are released only if their noisy count
clears a threshold; a key that only the added row has clears it with probability at most
``delta_threshold / k`` per column, which is the mechanism's extra delta (Gaussian partition
selection, as in Google's DP SQL / Wilson et al. 2020).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def noisy_counts(counts: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Counts plus independent Gaussian noise of standard deviation ``sigma``."""
    return counts.astype(np.float64) + rng.normal(0.0, sigma, size=counts.shape)


def partition_threshold(sigma: float, delta: float, discovered_columns: int) -> float:
    """The noisy count a discovered key must exceed to be released.

    A key present only because of one added row has true count 1; it is released with
    probability P(1 + N(0, sigma^2) > T) = delta / k, so across the row's k new keys at most delta.
    """
    if discovered_columns <= 0:
        return 0.0
    return 1.0 + sigma * float(norm.isf(delta / discovered_columns))
