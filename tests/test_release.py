"""The release interface (synthgen/privacy/release.py): what each release applies is what its
ledger entry claims, and what a fit reports stays within its target.

The replay test (tests/test_replay.py) shows that nothing outside these releases reads the
rows; these tests show that each release is what the ledger pays for.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm

from synthgen import Synthesizer
from synthgen.models.trainer import TrainingConfig
from synthgen.privacy import BudgetPlan, PrivacyLedger
from synthgen.privacy.domains import estimate_domains
from synthgen.privacy.release import Keys, Releaser
from synthgen.schema import ColumnKind, ColumnSpec, TableSchema


def test_a_gaussian_release_adds_the_noise_its_entry_claims() -> None:
    release = Releaser.scratch(np.random.default_rng(0))
    exact = np.zeros(200_000)
    (noisy,) = release.gaussian("m", "a test", [exact], noise_multiplier=3.0,
                                sensitivity=math.sqrt(5))
    (entry,) = release.ledger.entries
    claimed = entry.noise_multiplier * entry.params["l2_sensitivity"]
    assert entry.params["sigma"] == pytest.approx(claimed, rel=1e-12)
    assert isinstance(noisy, np.ndarray)
    assert np.std(noisy) == pytest.approx(claimed, rel=0.01)  # relative error ~0.2 %
    assert (entry.noise_multiplier, 1.0, 1) in release.ledger.history()


def test_discovered_keys_are_released_only_above_the_threshold() -> None:
    release = Releaser.scratch(np.random.default_rng(1))
    labels = np.array([f"k{i}" for i in range(1000)], dtype=object)
    counts = np.where(np.arange(1000) < 10, 500, 1)
    (keys,) = release.gaussian("m", "a test", [Keys(labels, counts)], noise_multiplier=1.0,
                               sensitivity=1.0, threshold=50.0)
    assert isinstance(keys, Keys)
    assert list(keys.labels) == [f"k{i}" for i in range(10)]
    assert (keys.counts > 50.0).all()
    with pytest.raises(ValueError, match="threshold"):
        release.gaussian("m", "a test", [Keys(labels, counts)], noise_multiplier=1.0,
                         sensitivity=1.0)


def test_dp_sgd_noise_is_what_its_entry_claims() -> None:
    ledger = PrivacyLedger(1.0, 1e-6)
    release = Releaser(ledger, np.random.default_rng(2))
    sgd = release.dp_sgd(1.7, 0.01, 100, 0.5, torch.device("cpu"))
    zeros = [torch.zeros(100_000), torch.zeros(300, 100)]
    noisy = sgd.noisy_sum(zeros, sgd.generator)
    (entry,) = ledger.entries
    assert entry.mechanism == "dp_sgd" and entry.steps == 0
    std = float(torch.cat([t.reshape(-1) for t in noisy]).std())
    assert std == pytest.approx(entry.noise_multiplier * entry.params["max_grad_norm"], rel=0.01)
    sgd.charge(40)
    assert ledger.entries[-1].steps == 40
    assert ledger.history() == [(1.7, 0.01, 40)]


def test_the_threshold_covers_every_discovered_column() -> None:
    """A key only the added row has is released with probability at most threshold_delta over
    all the columns that discover keys: each column's threshold is set for threshold_delta
    divided by their number (counted here from the schema), and nothing released is below it."""
    rng = np.random.default_rng(3)
    n = 2000
    df = pd.DataFrame({f"t{i}": rng.choice([f"v{j}" for j in range(30)], n) for i in range(3)})
    df["declared"] = rng.choice(["a", "b"], n)
    df["auto"] = rng.choice(["x", "y", "z"], n)
    schema = TableSchema(columns=[
        ColumnSpec(name="t0", kind=ColumnKind.CATEGORICAL),
        ColumnSpec(name="t1", kind=ColumnKind.CATEGORICAL),
        ColumnSpec(name="t2", kind=ColumnKind.CATEGORICAL),
        ColumnSpec(name="declared", kind=ColumnKind.CATEGORICAL, categories=["a", "b"]),
        ColumnSpec(name="auto", kind=ColumnKind.AUTO),
    ])
    plan = BudgetPlan(1.0, 1e-6)
    release = Releaser(PrivacyLedger(1.0, 1e-6, accountant_delta=plan.accountant_delta),
                       np.random.default_rng(4), record=True)
    estimate = estimate_domains(df, schema, plan, release)
    entry = estimate.entry
    assert entry is not None
    discovering = 4  # t0, t1, t2 and the undeclared column; not the declared list
    sigma = entry.noise_multiplier * math.sqrt(len(schema.columns) + 1)
    assert entry.params["sigma"] == pytest.approx(sigma, rel=1e-12)
    expected = 1.0 + sigma * float(norm.isf(plan.threshold_delta / discovering))
    assert entry.params["threshold"] == pytest.approx(expected, rel=1e-12)
    assert release.recording is not None
    (_, values), = [r for r in release.recording.releases if r[0] == "gaussian_histograms"]
    released = [v for v in values if isinstance(v, Keys) and len(v.labels)]
    assert released and all((v.counts > expected).all() for v in released)


def test_a_fit_reports_epsilon_and_delta_within_its_target(people: pd.DataFrame) -> None:
    """The reported (epsilon, delta) against the target: the accountant composes at its share
    of delta, the threshold's failure probability is the rest, and together they are the
    target delta (not above it)."""
    target_epsilon, target_delta = 1.0, 1e-6
    config = TrainingConfig(epochs=1.0, d_hidden=(16,), g_hidden=(16,), noise_dim=8,
                            table_warmup_steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synth = Synthesizer(epsilon=target_epsilon, delta=target_delta, seed=0, device="cpu",
                            config=config).fit(people)
    report = synth.report()
    assert report["target_epsilon"] == target_epsilon and report["target_delta"] == target_delta
    assert 0.9 * target_epsilon <= report["epsilon"] <= target_epsilon
    assert report["delta"] <= target_delta * (1 + 1e-12)
    assert synth.ledger is not None
    # the same figures, recomposed from the ledger's entries
    assert synth.ledger.epsilon() == pytest.approx(report["epsilon"], rel=1e-9)
    extra = sum(e.extra_delta for e in synth.ledger.entries)
    assert extra > 0  # the table has columns whose categories are discovered
    assert synth.ledger.accountant_delta + extra == pytest.approx(report["delta"], rel=1e-12)
