"""The budget plan is checked before any row is read (issue 22, item 5): every epsilon from the
documented minimum up runs with the defaults, and a plan that would leave DP-SGD nothing is
refused from the options alone, so a refused run has read nothing and spent nothing."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conftest import make_people
from test_report_schema import one_torch_thread
from typer.testing import CliRunner

from synthgen import Synthesizer
from synthgen.cli import app
from synthgen.errors import BudgetError, SynthgenWarning
from synthgen.privacy.budget import (
    MAX_EPSILON,
    MIN_EPSILON,
    MIN_EPSILON_RDP,
    BudgetPlan,
    check_plan,
    planned_prior,
)

runner = CliRunner()


@pytest.mark.parametrize("accountant,low", [("prv", MIN_EPSILON), ("rdp", MIN_EPSILON_RDP)])
def test_every_epsilon_from_the_minimum_up_has_a_plan_with_the_defaults(
    accountant: str, low: float
) -> None:
    for epsilon in (low, low * 1.001, 0.07, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 2, 3, 10, MAX_EPSILON):
        if epsilon >= low:
            for delta in (None, 1e-7, 1e-9):
                check_plan(epsilon, delta, accountant)


def test_the_planned_prior_bounds_what_a_fit_spends_before_training() -> None:
    # The plan is the largest history the mechanisms before DP-SGD can have: a fit's own
    # (whatever the table's size) composes to no more.
    with warnings.catch_warnings(), one_torch_thread():
        warnings.simplefilter("ignore", SynthgenWarning)
        synth = Synthesizer(epsilon=0.05, epochs=1, seed=0).fit(make_people(300, 0))
    assert synth.ledger is not None
    before = [h for e, h in zip(synth.ledger.entries, synth.ledger.history(), strict=True)
              if e.mechanism != "dp_sgd"]
    # Gaussian releases compose exactly: 1/sigma^2 adds up (PRV's figures differ by its error)
    def mu2(history: list[tuple[float, float, int]]) -> float:
        return sum(t / s**2 for s, q, t in history if q == 1.0)

    assert len(before) >= 5 and mu2(before) <= mu2(planned_prior(0.05, 1e-6)) * (1 + 1e-9)
    # and the run lands within its target at the documented minimum
    assert 0.04 < synth.report()["epsilon"] <= 0.05
    assert synth.report()["delta"] <= 1e-6


def test_a_plan_that_leaves_training_nothing_is_refused_before_fit() -> None:
    with pytest.raises(BudgetError, match="nothing was read") as caught:
        Synthesizer(epsilon=0.05, preprocessing_share=0.99)
    assert caught.value.code == "epsilon-too-small"
    with pytest.raises(BudgetError, match="leaves DP-SGD nothing"):
        Synthesizer(epsilon=0.5, delta=1e-12, accountant="rdp")
    with pytest.raises(BudgetError):
        check_plan(1.0, None, "prv", 0.5, 0.49)
    BudgetPlan(1.0, 1e-6, 0.5, marginal_share=0.3)  # a plan that leaves room is fine
    check_plan(1.0, None, "prv", 0.5, 0.3)


def test_the_cli_refuses_a_plan_before_reading_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "people.csv"
    make_people(300, 0).to_csv(src, index=False)
    reads: list[object] = []

    def read_table(*args: object, **kwargs: object) -> None:
        reads.append(args)
        raise AssertionError("the table was read")

    import synthgen.sources  # imported first: it binds synthgen.io.read_table at import

    monkeypatch.setattr(synthgen.sources, "read_source", read_table)
    monkeypatch.setattr("synthgen.io.read_table", read_table)
    result = runner.invoke(app, ["run", str(src), "--epsilon", "0.05",
                                 "--preprocessing-share", "0.99", "--out",
                                 str(tmp_path / "out.csv"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "leaves DP-SGD nothing" in result.output and reads == []
    assert not (tmp_path / "out.csv").exists()
