"""What the DP code really does, pinned against what its ledger claims.

Each test watches a real fit (or a real histogram release) through a spy on the function that
applies the mechanism, and compares what reached it with the ledger entry that pays for it: the
noise multiplier and clipping norm of every DP step, the number of DP steps, the Poisson rate and
the batch sizes it produces, the histograms' noise and their threshold's delta. A planted privacy
bug (``bench/privacy_mutations.py``) must fail one of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
import torch

import synthgen.models.trainer as trainer_module
import synthgen.privacy.domains as domains_module
from synthgen import Synthesizer
from synthgen.privacy import BudgetPlan
from synthgen.privacy.domains import estimate_domains
from synthgen.privacy.release import Releaser
from synthgen.schema import ColumnKind, ColumnSpec, TableSchema


@dataclass
class DPSteps:
    """What reached each call of the fused DP step, and the Poisson rate of each draw."""

    noise: list[float] = field(default_factory=list)
    clip: list[float] = field(default_factory=list)
    real_rows: list[int] = field(default_factory=list)
    poisson: list[tuple[int, float]] = field(default_factory=list)


@pytest.fixture
def dp_steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[DPSteps]:
    seen = DPSteps()
    real_step = trainer_module.private_discriminator_step
    real_mask = trainer_module.GANTrainer._poisson_mask

    def step(disc: Any, opt: Any, rows: torch.Tensor, n_real: int, **kw: Any) -> Any:
        release = kw["release"]  # the fit's DP-SGD release: its noise and norm are applied
        seen.noise.append(float(release.noise_multiplier))
        seen.clip.append(float(release.max_grad_norm))
        weight = kw.get("real_weight")
        seen.real_rows.append(int(weight.sum()) if weight is not None else int(n_real))
        return real_step(disc, opt, rows, n_real, **kw)

    def mask(self: Any, rows: int, q: float) -> torch.Tensor:
        seen.poisson.append((rows, float(q)))
        return real_mask(self, rows, q)

    monkeypatch.setattr(trainer_module, "private_discriminator_step", step)
    monkeypatch.setattr(trainer_module.GANTrainer, "_poisson_mask", mask)
    yield seen


def _sgd_entry(synth: Synthesizer) -> Any:
    assert synth.ledger is not None
    (entry,) = [e for e in synth.ledger.entries if e.mechanism == "dp_sgd"]
    return entry


def test_sigma_clipping_norm_rate_and_step_count_reach_the_dp_step(
    people: pd.DataFrame, dp_steps: DPSteps
) -> None:
    synth = Synthesizer(epsilon=1.0, epochs=2, batch_size=50, seed=0, device="cpu")
    synth.fit(people)
    entry = _sgd_entry(synth)
    # Every DP step ran with the calibrated noise and the declared clipping norm ...
    assert dp_steps.noise and set(dp_steps.noise) == {entry.noise_multiplier}
    assert entry.noise_multiplier > 0.3  # a real calibration, not a placeholder
    assert set(dp_steps.clip) == {entry.params["max_grad_norm"]} == {1.0}
    # ... the ledger charges exactly the steps that ran ...
    assert len(dp_steps.noise) == entry.steps == synth.info["training"]["steps"]
    # ... and its sampling rate is the one the rows were drawn with, over the rows trained on.
    assert len(dp_steps.poisson) == entry.steps
    assert {rows for rows, _ in dp_steps.poisson} == {len(people)}
    for _, q in dp_steps.poisson:
        assert q == pytest.approx(entry.sampling_rate, rel=1e-12)


def test_batch_sizes_of_many_steps_follow_binomial_n_q(dp_steps: DPSteps) -> None:
    """Poisson sampling: each row independently with probability q, so the batch size of a step
    is Binomial(n, q). Fixed-size (shuffled) batches have no variance at all."""
    from synthgen.models.trainer import GANTrainer, TrainingConfig
    from synthgen.privacy.domains import ColumnDomain
    from synthgen.transform import TableEncoder

    n, batch, steps = 400, 40, 300
    encoder = TableEncoder([ColumnDomain("c", ColumnKind.CATEGORICAL, "object", "public",
                                         categories=["a", "b"], frequencies=[0.5, 0.3, 0.2])])
    data = encoder.encode(pd.DataFrame({"c": np.random.default_rng(0).choice(["a", "b"], n)}))
    config = TrainingConfig(batch_size=batch, d_hidden=(8,), g_hidden=(8,), noise_dim=4,
                            ema_decay=0.0)
    trainer = GANTrainer(encoder, config, torch.device("cpu"), seed=1)
    trainer.train(data, noise_multiplier=1.0, total_steps=steps, sampling_rate=batch / n,
                  batch=batch, epsilon_at=lambda _: 0.0)
    sizes = np.array(dp_steps.real_rows, dtype=float)
    assert len(sizes) == steps
    q = batch / n
    mean, var = n * q, n * q * (1 - q)
    # the mean within 4 standard errors; the variance within a factor 1.5 (its relative
    # standard error over 300 steps is about 8 %)
    assert abs(sizes.mean() - mean) < 4 * math.sqrt(var / steps)
    assert var / 1.5 < sizes.var(ddof=1) < var * 1.5


class _RecordingNormal:
    """A generator that keeps the scale and the values of every Gaussian draw it makes."""

    def __init__(self, rng: np.random.Generator, seen: list[tuple[float, np.ndarray]]) -> None:
        self._rng, self._seen = rng, seen

    def normal(self, loc: float, scale: float, size: Any) -> np.ndarray:
        out = self._rng.normal(loc, scale, size=size)
        self._seen.append((float(scale), np.asarray(out)))
        return out


def test_histogram_noise_matches_its_ledger_entry() -> None:
    """The joint histogram's noise: sigma = noise multiplier x sqrt(k + 1) (each row adds 1 to one
    key of each of k columns, and to the row count), as applied and as recorded; its threshold's
    delta is in the ledger."""
    applied: list[tuple[float, np.ndarray]] = []
    k, n = 6, 3000
    rng = np.random.default_rng(0)
    df = pd.DataFrame({f"c{i}": rng.choice([f"v{j}" for j in range(40)], n) for i in range(k)})
    schema = TableSchema(columns=[ColumnSpec(name=c, kind=ColumnKind.CATEGORICAL) for c in df])
    plan = BudgetPlan(1.0, 1e-6)
    release = Releaser.scratch(np.random.default_rng(1), plan.accountant_delta)
    # a spy on the generator the release draws its noise from
    release.streams["main"] = cast(np.random.Generator, _RecordingNormal(
        release.streams["main"], applied))
    est = estimate_domains(df, schema, plan, release)
    entry = est.entry
    assert entry is not None and entry.mechanism == "gaussian_histograms"
    # k histograms and the DP row count: each row adds 1 to one key of each, so sqrt(k + 1)
    sensitivity = math.sqrt(k + 1)
    for sigma, _ in applied:
        assert sigma == pytest.approx(entry.noise_multiplier * sensitivity, rel=1e-12)
    noise = np.concatenate([d for _, d in applied if d.size])
    assert len(noise) >= k * 40
    # the empirical spread of the noise actually added (relative standard error ~4 %)
    assert np.std(noise) == pytest.approx(entry.noise_multiplier * sensitivity, rel=0.2)
    # the threshold's failure probability (categories discovered from the data) is charged
    assert entry.extra_delta == pytest.approx(plan.threshold_delta)
    assert entry.extra_delta > 0


def test_the_rest_beside_an_atom_is_sized_by_released_counts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The window kept for a declared number's rest (grids._rest_window) is sized by the DP
    row count less the column's noisy null count, with their noise as its deviation: never by
    the exact row count. A column with declared bounds has public keys (atoms among them) but
    its bins and atoms are read off the released counts like any other's."""

    calls: list[tuple[np.ndarray, tuple[float, float] | None]] = []
    real_number_bins = domains_module.number_bins

    def spy_bins(grid: Any, noisy: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        calls.append((noisy, kwargs.get("total")))
        return real_number_bins(grid, noisy, *args, **kwargs)

    monkeypatch.setattr(domains_module, "number_bins", spy_bins)
    release = Releaser.scratch(np.random.default_rng(1))
    released: list[Any] = []
    real_gaussian = release.gaussian

    def spy_gaussian(*args: Any, **kwargs: Any) -> Any:
        out = real_gaussian(*args, **kwargs)
        released.extend(out)
        return out

    monkeypatch.setattr(release, "gaussian", spy_gaussian)
    rng = np.random.default_rng(0)
    n = 3000
    gain = np.where(rng.random(n) < 0.1, rng.integers(2000, 9000, n), 0)
    df = pd.DataFrame({"gain": gain, "hours": rng.integers(1, 99, n).astype(float),
                       "loss": np.where(rng.random(n) < 0.05, 1900, 0)})
    df.loc[:99, "hours"] = np.nan
    schema = TableSchema(columns=[
        ColumnSpec(name="gain", kind=ColumnKind.INTEGER),
        ColumnSpec(name="hours", kind=ColumnKind.INTEGER, nullable=True),
        # declared bounds: public keys (its atoms among them), noisy counts all the same
        ColumnSpec(name="loss", kind=ColumnKind.INTEGER, lower=0, upper=4356)])
    est = estimate_domains(df, schema, BudgetPlan(1.0, 1e-6), release)
    assert est.entry is not None
    sigma = est.entry.params["sigma"]
    # the row count, then per column its null count, its number keys, its (empty) texts
    assert len(released) == 1 + 3 * 3
    rows = max(float(released[0][0]), 1.0)
    assert rows != n
    numbers = [released[2], released[5], released[8]]
    assert len(calls) == 3
    for (noisy, _), number in zip(calls, numbers, strict=True):
        assert np.array_equal(noisy, number)  # the released counts, none exact
    (_, gain_total), (_, hours_total), _ = calls
    assert gain_total == (pytest.approx(rows), pytest.approx(sigma))  # declared not nullable
    assert hours_total is not None
    assert hours_total[0] == pytest.approx(rows - float(released[4][0]))
    assert hours_total[1] == pytest.approx(sigma * math.sqrt(2))
