"""Budget, mechanisms, accounting and the ledger of one fit."""

from synthgen.privacy.accountant import (
    ACCOUNTANTS,
    calibrate_sgd_noise,
    epsilon_of,
    gaussian_epsilon,
    gaussian_noise_multiplier,
)
from synthgen.privacy.budget import BudgetPlan, default_delta
from synthgen.privacy.ledger import LedgerEntry, PrivacyLedger

__all__ = [
    "ACCOUNTANTS",
    "BudgetPlan",
    "LedgerEntry",
    "PrivacyLedger",
    "calibrate_sgd_noise",
    "default_delta",
    "epsilon_of",
    "gaussian_epsilon",
    "gaussian_noise_multiplier",
]
