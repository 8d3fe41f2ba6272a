"""How a target (epsilon, delta) is split between the mechanisms of one fit."""

from __future__ import annotations

from dataclasses import dataclass

from synthgen.errors import BudgetError

MIN_EPSILON = 0.05
MAX_EPSILON = 100.0


def default_delta(rows: int) -> float:
    """min(1e-6, 1/(10 n)): well below 1/n, fixed before any mechanism runs."""
    return min(1e-6, 1.0 / (10 * max(rows, 1)))


@dataclass(frozen=True)
class BudgetPlan:
    """The split of a target budget.

    ``preprocessing_share`` of epsilon pays for the histograms that make the schema (domains,
    null rates, frequencies); the rest goes to DP-SGD, calibrated on the composed ledger so the
    total lands at the target. ``threshold_delta_share`` of delta covers releasing discovered
    category keys; the accountant gets the rest.
    """

    epsilon: float
    delta: float
    preprocessing_share: float = 0.1
    threshold_delta_share: float = 0.1

    def __post_init__(self) -> None:
        if not MIN_EPSILON <= self.epsilon <= MAX_EPSILON:
            raise BudgetError(
                f"epsilon must be between {MIN_EPSILON} and {MAX_EPSILON}; got {self.epsilon}"
            )
        if not 0 < self.delta < 1e-3:
            raise BudgetError(f"delta must be in (0, 1e-3); got {self.delta}")
        if not 0 < self.preprocessing_share < 1:
            raise BudgetError("the preprocessing share must be strictly between 0 and 1")

    @property
    def preprocessing_epsilon(self) -> float:
        return self.epsilon * self.preprocessing_share

    @property
    def threshold_delta(self) -> float:
        return self.delta * self.threshold_delta_share

    @property
    def accountant_delta(self) -> float:
        return self.delta - self.threshold_delta
