"""The accountant wrapper, noise calibration and the ledger's composition."""

from __future__ import annotations

import math

import pytest

from synthgen.errors import BudgetError
from synthgen.privacy import (
    BudgetPlan,
    LedgerEntry,
    PrivacyLedger,
    calibrate_sgd_noise,
    default_delta,
    epsilon_of,
    gaussian_epsilon,
    gaussian_noise_multiplier,
)


def test_gaussian_calibration_inverts_the_analytic_gaussian() -> None:
    for eps in (0.05, 0.1, 1.0, 5.0):
        m = gaussian_noise_multiplier(eps, 1e-6)
        assert gaussian_epsilon(m, 1e-6) == pytest.approx(eps, rel=1e-6)
        # the classic bound sqrt(2 ln(1.25/delta))/eps is looser than the analytic one
        if eps <= 1:
            assert m < math.sqrt(2 * math.log(1.25 / 1e-6)) / eps


def test_prv_agrees_with_the_exact_gaussian_and_is_tighter_than_rdp() -> None:
    m = gaussian_noise_multiplier(0.5, 1e-6)
    prv = epsilon_of([(m, 1.0, 1)], 1e-6, "prv")
    rdp = epsilon_of([(m, 1.0, 1)], 1e-6, "rdp")
    assert 0.5 <= prv <= 0.5 + 0.02  # PRV returns an upper bound within eps_error
    assert prv < rdp


def test_composition_is_tighter_than_adding_and_looser_than_the_largest_part() -> None:
    pre = (gaussian_noise_multiplier(0.1, 1e-6), 1.0, 1)
    sgd = (5.0, 0.1, 200)
    both = epsilon_of([pre, sgd], 1e-6)
    parts = [epsilon_of([pre], 1e-6), epsilon_of([sgd], 1e-6)]
    assert max(parts) < both < sum(parts)


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_full_batch_gaussians_merge_into_one_without_changing_epsilon(accountant: str) -> None:
    """epsilon_of composes the releases before DP-SGD as one Gaussian (exact for Gaussians):
    the figure is Opacus's on the history as recorded, to PRV's discretisation (RDP: equal),
    and a release with more noise still counts (not only the smallest noise)."""
    from opacus.accountants import create_accountant

    from synthgen.privacy.accountant import merge_gaussians

    history = [(163.2, 1.0, 1), (146.2, 1.0, 1), (37.7, 1.0, 1), (12.45, 1.0, 1),
               (13.9, 1.0, 2), (8.4, 1.0, 1), (11.7, 0.125, 240)]
    (sigma, q, t), sgd = merge_gaussians(history)
    assert (q, t) == (1.0, 1) and sgd == history[-1]
    assert sigma == pytest.approx((sum(t / s**2 for s, _, t in history[:-1])) ** -0.5, rel=1e-12)
    acc = create_accountant(accountant)
    acc.history = list(history)
    unmerged = acc.get_epsilon(delta=1e-6, **({"eps_error": 0.01} if accountant == "prv"
                                              else {}))
    merged = epsilon_of(history, 1e-6, accountant)
    assert merged == pytest.approx(unmerged, rel=1e-9 if accountant == "rdp" else 1e-4)
    # the 8.4 release alone spends less than all of them together
    assert epsilon_of([(8.4, 1.0, 1), history[-1]], 1e-6, accountant) < merged - 1e-3


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_calibrated_noise_lands_at_the_target_and_never_above(accountant: str) -> None:
    prior = [(gaussian_noise_multiplier(0.1, 1e-6), 1.0, 1)]
    sigma = calibrate_sgd_noise(prior, 0.05, 300, 1.0, 1e-6, accountant)
    spent = epsilon_of([*prior, (sigma, 0.05, 300)], 1e-6, accountant)
    assert 0.97 <= spent <= 1.0
    # one more step than planned would overshoot: the plan stops exactly at the budget
    more = epsilon_of([*prior, (sigma, 0.05, 330)], 1e-6, accountant)
    assert more > 1.0


def test_ledger_total_is_composed_from_its_entries_and_deltas_add() -> None:
    ledger = PrivacyLedger(1.0, 1e-6, "prv", accountant_delta=9e-7)
    ledger.record(LedgerEntry("gaussian_histograms", "x", 40.0, 1.0, 1, 0.09, extra_delta=1e-7))
    ledger.record(LedgerEntry("dp_sgd", "y", 6.0, 0.1, 100, 0.5))
    assert ledger.epsilon() == pytest.approx(
        epsilon_of([(40.0, 1.0, 1), (6.0, 0.1, 100)], 9e-7), rel=1e-9
    )
    assert ledger.delta() == pytest.approx(1e-6)
    again = PrivacyLedger.from_dict(ledger.to_dict())
    assert again.epsilon() == pytest.approx(ledger.epsilon())


def test_budget_plan_checks_its_inputs() -> None:
    # a constant: a default computed from the row count would release it
    assert default_delta() == 1e-6
    with pytest.raises(BudgetError):
        BudgetPlan(0.0, 1e-6)
    with pytest.raises(BudgetError):
        BudgetPlan(1.0, 0.5)
    plan = BudgetPlan(2.0, 1e-6, preprocessing_share=0.25)
    assert plan.preprocessing_epsilon == 0.5
    assert plan.accountant_delta + plan.threshold_delta == pytest.approx(1e-6)


def test_calibration_reaches_targets_below_the_rdp_floor() -> None:
    # RDP's orders stop at 63: its epsilon never falls below ~0.26 at delta 1e-7, which made a
    # target of 0.1 fail after the histograms were already released. PRV brackets it instead.
    prior = [(gaussian_noise_multiplier(0.01, 9e-8), 1.0, 1)]
    for target in (0.05, 0.1):
        sigma = calibrate_sgd_noise(prior, 0.125, 240, target, 9e-8, "prv")
        spent = epsilon_of([*prior, (sigma, 0.125, 240)], 9e-8, "prv")
        assert 0.9 * target <= spent <= target


def test_an_epsilon_below_the_minimum_is_refused_before_any_row_is_read() -> None:
    from synthgen.privacy.budget import MIN_EPSILON, MIN_EPSILON_RDP, check_epsilon
    from synthgen.synthesizer import Synthesizer

    check_epsilon(MIN_EPSILON, "prv")
    check_epsilon(MIN_EPSILON_RDP, "rdp")
    for epsilon, accountant in ((MIN_EPSILON / 2, "prv"), (MIN_EPSILON_RDP / 2, "rdp")):
        with pytest.raises(BudgetError, match="epsilon must be between"):
            check_epsilon(epsilon, accountant)
        with pytest.raises(BudgetError):  # the constructor, before fit() sees a table
            Synthesizer(epsilon, accountant=accountant)
