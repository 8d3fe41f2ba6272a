"""How a target (epsilon, delta) is split between the mechanisms of one fit."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

from synthgen.errors import BudgetError
from synthgen.privacy.accountant import (
    PRV_ERROR,
    epsilon_of,
    gaussian_epsilon,
    gaussian_noise_multiplier,
    prv_error,
)

if TYPE_CHECKING:
    from synthgen.privacy.release import Releaser

# The smallest target epsilon a fit accepts, checked before any row is read. With PRV, any
# target above what the preprocessing histograms spend is reachable (more noise), and 0.05 keeps
# PRV's discretisation error (0.01) a minor part of the target. RDP's orders stop at 63, so its
# epsilon never falls below about (log(1/delta) - log 63) / 62 - 0.016 however large the noise:
# 0.36 at delta 1e-12 (the default delta is 1e-6): 0.5 leaves room for training.
MIN_EPSILON = 0.05
MIN_EPSILON_RDP = 0.5
MAX_EPSILON = 100.0


DEFAULT_DELTA = 1e-6


def default_delta() -> float:
    """1e-6, whatever the table: a default computed from the row count would release it (the
    row count is not public). Below 1/(10 n) for tables up to 100,000 rows; pass a smaller
    delta for larger tables (the report warns when the DP row count says so)."""
    return DEFAULT_DELTA


def min_epsilon(accountant: str) -> float:
    return MIN_EPSILON_RDP if accountant == "rdp" else MIN_EPSILON


def check_epsilon(epsilon: float, accountant: str = "prv") -> None:
    """Refuse a target no calibration reaches, before anything reads the table."""
    low = min_epsilon(accountant)
    if not low <= epsilon <= MAX_EPSILON:
        raise BudgetError(
            f"epsilon must be between {low:g} and {MAX_EPSILON:g} with the {accountant} "
            f"accountant; got {epsilon:g}" + (
                " (use --accountant prv for a smaller epsilon)" if accountant == "rdp"
                and epsilon >= MIN_EPSILON else ""),
            code="epsilon-out-of-range")


def check_delta(delta: float) -> None:
    if not 0 < delta < 1e-3:
        raise BudgetError(f"delta must be in (0, 1e-3); got {delta}")


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
    # Share of epsilon for the DP marginals (pair selection and measurement); None: the rule
    # of :func:`marginal_share`, from the DP row count and the table's width.
    marginal_share: float | None = None
    # How the marginals' budget (in Gaussian terms, 1/sigma^2) is split between the one-way
    # tables, the pair selection and the two-way tables. Fewer, better chosen pairs: the
    # selection and the one-way tables (which every unmeasured pair leans on) get more than
    # the (0.25, 0.2, 0.55) before (bench/README.md, "Numbers keep their support and shape").
    marginal_split: tuple[float, float, float] = (0.3, 0.3, 0.4)

    def __post_init__(self) -> None:
        check_epsilon(self.epsilon)
        check_delta(self.delta)
        if not 0 < self.preprocessing_share < 1:
            raise BudgetError("the preprocessing share must be strictly between 0 and 1")
        if self.marginal_share is not None and not (
            0 <= self.marginal_share < 1 - self.preprocessing_share
        ):
            raise BudgetError("the marginal share must be at least 0 and leave room for the "
                              "preprocessing share and DP-SGD (their sum below 1)")

    @property
    def preprocessing_epsilon(self) -> float:
        return self.epsilon * self.preprocessing_share

    @property
    def threshold_delta(self) -> float:
        return self.delta * self.threshold_delta_share

    @property
    def accountant_delta(self) -> float:
        return self.delta - self.threshold_delta


def marginal_share(rows_estimate: float, columns: int) -> float:
    """The share of epsilon spent on DP marginals when none is given.

    Small tables carry little signal per DP-SGD step, while a marginal's noise shrinks relative
    to its counts as rows grow in the same way for every size: so small tables spend mostly on
    marginals, large ones keep more for DP-SGD (which learns what marginals of two columns
    cannot). From 0.8 at 1,000 rows down to 0.5 at 100,000 and above (bench/README.md, "Budget
    split", has the measurements behind it). Post-processing of DP outputs only.
    """
    del columns  # the selection adapts the number of tables to the width itself
    size = math.log10(max(rows_estimate, 1.0) / 1000.0)
    return float(min(0.8, max(0.5, 0.8 - 0.15 * size)))


def marginal_multipliers(
    plan: BudgetPlan, share: float, accountant_delta: float, code_extra: float = 0.0
) -> tuple[float, float, float]:
    """Noise multipliers (per unit of L2 sensitivity) of the one-way tables, the pair selection
    and the two-way tables, so that the domain histograms and these three compose, as Gaussian
    mechanisms do (1/sigma^2 adds up), to exactly one Gaussian release of (preprocessing +
    marginal share) of epsilon. ``code_extra``: what the domain histograms spent beyond the
    preprocessing share on weighted code columns (1/sigma^2, at most :func:`code_budget`),
    taken out of the marginals' part. DP-SGD is then calibrated on the whole ledger for the
    rest."""
    if share <= 0:
        return 0.0, 0.0, 0.0
    domain = gaussian_noise_multiplier(plan.preprocessing_epsilon, accountant_delta)
    joint = gaussian_noise_multiplier(plan.epsilon * (plan.preprocessing_share + share),
                                      accountant_delta)
    rest = 1.0 / joint**2 - 1.0 / domain**2 - code_extra
    one_way, select, two_way = (1.0 / math.sqrt(part * rest) for part in plan.marginal_split)
    return one_way, select, two_way


# Code columns (issue 21): a column the format vote calls ``code`` (digit strings with leading
# zeros: ZIP codes, account or county codes) is nothing without its codes, a code is written
# only when released, and on a small table each code holds a few dozen rows, below what a text
# needs in the joint histogram (a 2,000-row CRM export's ZIP codes: at most 98 rows each against
# about 157). Its histogram is weighted there (privacy/domains.py): each row adds w to its key,
# so its counts carry the noise sigma / w while the other columns keep theirs, and the larger
# release is paid out of the DP marginals' part of the budget (the fit's total is unchanged).
# w is sized for a code held by CODE_VALUE_SHARE of the column's cells (the vote's DP count) to
# clear the threshold, and all the code columns together take at most CODE_MAX_SHARE of the
# least the marginals get under the plan.
CODE_VALUE_SHARE = 0.03
CODE_MAX_SHARE = 0.25


def marginal_floor(plan: BudgetPlan) -> float:
    """The smallest share of epsilon the DP marginals can get under ``plan``: the declared
    share, or the rule's (never below 0.5) capped at 0.9 less the domain share, as the fit
    sets it (Synthesizer._measure_marginals)."""
    if plan.marginal_share is not None:
        return plan.marginal_share
    return min(0.5, max(0.0, 0.9 - plan.preprocessing_share))


def code_budget(plan: BudgetPlan, accountant_delta: float) -> float:
    """The most the weighted code columns may add to the domain histograms' release, in
    Gaussian terms (1/sigma^2): CODE_MAX_SHARE of the marginals' least part under ``plan``.
    From the plan alone (public options and the DP domain share)."""
    floor = marginal_floor(plan)
    if floor <= 0:
        return 0.0
    domain = gaussian_noise_multiplier(plan.preprocessing_epsilon, accountant_delta)
    joint = gaussian_noise_multiplier(plan.epsilon * (plan.preprocessing_share + floor),
                                      accountant_delta)
    return CODE_MAX_SHARE * (1.0 / joint**2 - 1.0 / domain**2)


# The domain histograms' share of epsilon adapts to the table: the smallest share in
# [MIN_DOMAIN_SHARE, MAX_DOMAIN_SHARE] (in steps of 0.05) at which a value held by
# RELEASED_VALUE_SHARE of the rows clears the release threshold. A large table stays at 10 %
# (Adult: a value needs ~800 of 32,561 rows); a small or wide one spends up to half on its
# domains, since a GAN trained on a few thousand rows learns little that the marginals would not
# give, while a column whose values are not released is lost. 5 % rather than 10 %: at 10,000
# rows Adult's education (16 values, most under 10 %) came out with shape 0.71 at share 0.1, and
# the 3,000-row sample's numeric ranges (read off the same histograms) were cut short; the full
# table is unaffected (bench/README.md, "Utility on UCI Adult").
MIN_DOMAIN_SHARE = 0.1
MAX_DOMAIN_SHARE = 0.5
RELEASED_VALUE_SHARE = 0.05


def rows_per_value(epsilon: float, delta: float, columns: int, share: float,
                   threshold_delta_share: float = 0.1) -> float:
    """Rows a discovered value needs to clear the release threshold with ``share`` of
    ``epsilon`` on the domain histograms of ``columns`` learned columns."""
    from synthgen.privacy.mechanisms import partition_threshold

    columns = max(columns, 1)
    threshold_delta = delta * threshold_delta_share
    sigma = gaussian_noise_multiplier(epsilon * share, delta - threshold_delta) * math.sqrt(
        columns)
    return partition_threshold(sigma, threshold_delta, columns)


# Share of epsilon for the DP row count that sizes the domain histograms' share (only when that
# share is left to the rule): a rough size is all the rule needs.
SIZE_PROBE_SHARE = 0.02


def size_probe(rows: int, epsilon: float, release: Releaser) -> float:
    """A Gaussian count of the rows (sensitivity 1), released and recorded by ``release``
    (``gaussian_row_count``, from a noise stream of its own); the estimate sizes the domain
    share. Seen by no other step: the domain histograms release a more precise count for
    everything else."""
    multiplier = gaussian_noise_multiplier(epsilon * SIZE_PROBE_SHARE,
                                           release.ledger.accountant_delta)
    (noisy,) = release.gaussian("gaussian_row_count",
                                "the number of rows, to size the domain share",
                                [np.array([rows])], noise_multiplier=multiplier,
                                sensitivity=1.0, stream="probe")
    estimate = max(float(cast(np.ndarray, noisy)[0]), 1.0)
    release.annotate("gaussian_row_count", rows_estimate=estimate)
    return estimate


def domain_share(epsilon: float, delta: float, rows: float, columns: int,
                 discovering: bool = True) -> float:
    """The share of epsilon for the domain histograms (see the rule above). A schema that
    declares every column's kind and category list leaves nothing to discover: the minimum."""
    share = MIN_DOMAIN_SHARE
    if not discovering:
        return share
    while share < MAX_DOMAIN_SHARE and (
        rows_per_value(epsilon, delta, columns, share) > RELEASED_VALUE_SHARE * rows
    ):
        share = round(share + 0.05, 2)
    return share


# What a plan must leave DP-SGD at least, as a share of the target: room for calibration to find
# a noise level (PRV's figures of the prior alone and of the prior with DP-SGD differ slightly).
PLAN_MARGIN = 0.01


def planned_prior(epsilon: float, delta: float, preprocessing_share: float | None = None,
                  marginal_share_: float | None = None) -> list[tuple[float, float, int]]:
    """The largest history the mechanisms before DP-SGD can have under these options, whatever
    the table: computed from the options alone, before any row is read.

    The size probe (when the domain share is left to the rule), and the domain histograms and
    DP marginals, whose noise multipliers are set so that together they compose to one
    Gaussian release of (domain + marginal share) of epsilon (:func:`marginal_multipliers`).
    The rule gives a domain share of at most ``MAX_DOMAIN_SHARE`` and a marginal share of at
    most 0.9 minus the domain share, so without options that sum is at most 0.9."""
    accountant_delta = delta - delta * BudgetPlan.threshold_delta_share
    domain = MAX_DOMAIN_SHARE if preprocessing_share is None else preprocessing_share
    if marginal_share_ is None:
        total = max(domain, 0.9)
    else:
        total = domain + marginal_share_
    prior = [(gaussian_noise_multiplier(epsilon * total, accountant_delta), 1.0, 1)]
    if preprocessing_share is None:
        prior.insert(0, (gaussian_noise_multiplier(epsilon * SIZE_PROBE_SHARE,
                                                   accountant_delta), 1.0, 1))
    return prior


def check_plan(epsilon: float, delta: float | None = None, accountant: str = "prv",
               preprocessing_share: float | None = None,
               marginal_share_: float | None = None) -> None:
    """Refuse, before any row is read, a plan whose mechanisms before DP-SGD could leave DP-SGD
    no budget (so a refused job has read nothing and is charged nothing). Cheap: the plan's
    mechanisms are Gaussian releases, whose composition is exact (1/sigma^2 adds up), so PRV's
    figure is the exact epsilon plus at most twice its error; RDP composes them in closed form."""
    check_epsilon(epsilon, accountant)
    delta = DEFAULT_DELTA if delta is None else delta
    check_delta(delta)
    plan = BudgetPlan(epsilon, delta, preprocessing_share or MIN_DOMAIN_SHARE,
                      marginal_share=marginal_share_)
    prior = planned_prior(epsilon, delta, preprocessing_share, marginal_share_)
    if accountant == "prv":
        mu2 = sum(t / s**2 for s, _, t in prior)
        spent = (gaussian_epsilon(1.0 / math.sqrt(mu2), plan.accountant_delta)
                 # the error is sized on PRV's coarse figure, which carries 0.01 more
                 + 2 * prv_error(epsilon + PRV_ERROR))
    else:
        spent = epsilon_of(prior, plan.accountant_delta, accountant)
    if spent >= epsilon * (1 - PLAN_MARGIN):
        raise BudgetError(
            f"this budget plan leaves DP-SGD nothing: the mechanisms before training may spend "
            f"epsilon {spent:.4g} of {epsilon:g} with the {accountant} accountant at delta "
            f"{delta:g}; raise epsilon or delta, or lower --preprocessing-share "
            "(nothing was read)", code="epsilon-too-small")
