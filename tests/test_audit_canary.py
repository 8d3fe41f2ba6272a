"""Canaries: planted unique outlier rows. At epsilon 1 the synthetic table never reproduces them
and a membership attack on them is at chance; with DP switched off (the NOT PRIVATE debug model)
the same attack finds them, so the audit is shown to be able to fail."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_report_schema import one_torch_thread

from synthgen import ColumnSpec, Synthesizer, TableSchema
from synthgen.evaluate import canary_attack, evaluation_kinds
from synthgen.evaluate.debug import NonPrivateSynthesizer

CITIES = ["north", "south", "east", "west", "centre"]
JOBS = ["clerk", "nurse", "driver", "teacher"]
CANARIES = 40  # half planted, half withheld: the attack must tell the two halves apart
SYNTHETIC_ROWS = 5000


def canary_tables(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(training table with the planted canaries, planted, withheld)."""
    rng = np.random.default_rng(seed)
    n = 600
    base = pd.DataFrame({
        "age": rng.integers(18, 70, n),
        "income": rng.lognormal(10, 0.5, n).round(2),
        "city": rng.choice(CITIES, n),
        "job": rng.choice(JOBS, n),
        "y": rng.choice(["yes", "no"], n),
    })
    # Outliers on every column, each with labels no other row has. Planted and withheld
    # canaries are drawn alike and split at random, so only training can tell them apart.
    canaries = pd.DataFrame({
        "age": rng.integers(90, 100, CANARIES),
        "income": rng.uniform(5e6, 2e7, CANARIES).round(2),
        "city": [f"canary-city-{i}" for i in range(CANARIES)],
        "job": [f"canary-job-{i}" for i in range(CANARIES)],
        "y": "yes",
    })
    order = rng.permutation(CANARIES)
    planted, withheld = canaries.iloc[order[:20]], canaries.iloc[order[20:]]
    table = pd.concat([base, planted], ignore_index=True)
    return table.sample(frac=1, random_state=seed).reset_index(drop=True), planted, withheld


def attack(synth: Any) -> tuple[dict[str, Any], pd.DataFrame]:
    table, planted, withheld = canary_tables()
    with one_torch_thread():
        synth.fit(table)
        synthetic = synth.sample(SYNTHETIC_ROWS, seed=1)
    result = canary_attack(planted, withheld, synthetic, evaluation_kinds(table),
                           reference=pd.concat([table, withheld]))
    return result, synthetic


@pytest.fixture(scope="module")
def private() -> tuple[dict[str, Any], pd.DataFrame]:
    # the ordinary labels are public; canary labels are not (they may only reach "Other")
    public = TableSchema(columns=[
        ColumnSpec(name="city", kind="categorical", categories=CITIES, other=True, nullable=None),
        ColumnSpec(name="job", kind="categorical", categories=JOBS, other=True, nullable=None),
        ColumnSpec(name="y", kind="categorical", categories=["yes", "no"], other=True,
                   nullable=None),
    ])
    return attack(Synthesizer(1.0, schema=public, epochs=3, seed=0, accountant="rdp"))


@pytest.fixture(scope="module")
def leaky() -> tuple[dict[str, Any], pd.DataFrame]:
    return attack(NonPrivateSynthesizer(epochs=3, seed=0))


def planted_labels_in(synthetic: pd.DataFrame) -> int:
    _, planted, _ = canary_tables()
    return int(synthetic["city"].isin(planted["city"]).sum()
               + synthetic["job"].isin(planted["job"]).sum())


def test_at_epsilon_1_canaries_are_neither_reproduced_nor_detectable(
    private: tuple[dict[str, Any], pd.DataFrame]
) -> None:
    result, synthetic = private
    assert result["reproduced"] == 0
    assert planted_labels_in(synthetic) == 0
    # 20 against 20 canaries: chance alone moves the AUC by about 0.09 (one standard error).
    assert abs(result["auc"] - 0.5) <= 0.25


def test_without_dp_the_same_attack_detects_memorisation(
    leaky: tuple[dict[str, Any], pd.DataFrame]
) -> None:
    result, synthetic = leaky
    assert planted_labels_in(synthetic) > 0  # unique values of training rows come back out
    assert result["auc"] >= 0.9
    assert result["inserted_distance_median"] < result["withheld_distance_median"]


def test_the_non_private_model_never_passes_for_a_private_one(tmp_path: Any) -> None:
    table, _, _ = canary_tables()
    with one_torch_thread():
        model = NonPrivateSynthesizer(epochs=1, seed=0).fit(table)
    report = model.report()
    assert report["dp"] is False and "NOT DIFFERENTIALLY PRIVATE" in report["warning"]
    assert report["epsilon"] is None and model.ledger is None
    with pytest.raises(RuntimeError, match="never saved"):
        model.save(tmp_path / "model.zip")
    import synthgen
    import synthgen.evaluate

    assert not hasattr(synthgen, "NonPrivateSynthesizer")
    assert not hasattr(synthgen.evaluate, "NonPrivateSynthesizer")
