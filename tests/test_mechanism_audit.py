"""The white-box mechanism audit (bench/mechanism_audit.py) can fail: one mechanism audited at a
small number of trials, then again with its noise halved by the audit's planted bug."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _audit_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_mechanism_audit",
                                                  BENCH / "mechanism_audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_one_way_audit_stays_under_its_claim_and_fails_with_half_the_noise() -> None:
    audit = _audit_module()
    result = audit.audit_mechanism("one_way", trials=20_000, seed=0, planted=True, null_runs=1)
    assert 0 < result.bound.epsilon <= result.epsilon  # power, and no violation
    # the canary moves each one-way table by one count: the full sensitivity charged
    assert abs(result.canary_reach - 1.0) < 1e-9
    assert abs(result.noise_ratio - 1.0) < 0.05  # the noise the ledger claims is there
    assert result.planted is not None
    assert result.planted.epsilon > result.planted_epsilon  # halved noise: the audit fails
    assert result.caught
    assert result.null_bounds[0] <= 0  # two arms without the canary


def test_dp_sgd_audit_draws_what_the_private_step_applies() -> None:
    audit = _audit_module()
    audit.check_sgd_step_is_audited_path()
    release = audit.release_of("dp_sgd", True, 2_000, seed=1)
    exact = audit.release_of("dp_sgd", True, 1, seed=1, noise=False)
    noise = release.values - exact.values[0]
    assert abs(float(np.std(noise)) / release.sigma - 1.0) < 0.02


def test_the_audit_shows_discovered_keys_as_the_releaser_releases_them() -> None:
    _audit_module().check_keys_release_is_thresholding()


def test_identical_scores_give_no_positive_bound() -> None:
    audit = _audit_module()
    rng = np.random.default_rng(3)
    bounds = [audit.epsilon_lower_bound(rng.normal(size=5_000), rng.normal(size=5_000),
                                        1e-5).epsilon for _ in range(40)]
    assert sum(b <= 0 for b in bounds) >= 38


def test_threshold_releases_a_key_only_the_canary_has_at_its_delta_and_not_more() -> None:
    audit = _audit_module()
    result = audit.audit_threshold(trials=200_000, seed=0, planted=True)
    assert result.released > 0  # the check can see releases at all
    assert result.holds  # at most the delta the ledger charges
    assert result.caught  # the threshold for one column of two releases twice as often
