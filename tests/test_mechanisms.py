"""DP histograms: the threshold keeps a category only with enough support."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthgen.privacy import BudgetPlan
from synthgen.privacy.domains import estimate_domains
from synthgen.privacy.mechanisms import noisy_counts, partition_threshold
from synthgen.schema import ColumnKind, ColumnSpec, TableSchema, infer_schema


def test_a_key_only_the_added_row_has_is_released_with_probability_at_most_delta() -> None:
    sigma, delta, k = 10.0, 1e-3, 3
    threshold = partition_threshold(sigma, delta, k)
    rng = np.random.default_rng(0)
    draws = noisy_counts(np.ones(400_000), sigma, rng)
    released = float(np.mean(draws > threshold))
    assert released <= 2 * delta / k  # binomial slack around delta / k
    assert released > 0  # the threshold is tight, not absurdly high


def test_threshold_keeps_frequent_values_and_folds_rare_ones() -> None:
    n = 4000
    values = ["common"] * 3000 + ["medium"] * 900 + [f"rare{i}" for i in range(100)]
    df = pd.DataFrame({"c": values})
    schema = TableSchema(columns=[ColumnSpec(name="c", kind=ColumnKind.CATEGORICAL)])
    est = estimate_domains(df, schema, BudgetPlan(1.0, 1e-6), np.random.default_rng(1))
    (domain,) = est.domains
    assert domain.categories[:2] == ["common", "medium"]
    assert not any(str(c).startswith("rare") for c in domain.categories)
    assert domain.has_other
    assert est.entry is not None and est.entry.extra_delta > 0
    # frequencies: common, medium, other, null
    assert abs(domain.frequencies[0] - 3000 / n) < 0.05
    assert len(domain.frequencies) == 4


def test_public_categories_need_no_threshold_and_no_extra_delta() -> None:
    df = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 50})
    schema = TableSchema(columns=[ColumnSpec(name="c", kind=ColumnKind.CATEGORICAL,
                                             categories=["a", "b", "zzz"])])
    est = estimate_domains(df, schema, BudgetPlan(1.0, 1e-6), np.random.default_rng(2))
    assert est.domains[0].categories == ["a", "b", "zzz"]
    assert est.domains[0].source == "public"
    assert est.entry is not None and est.entry.extra_delta == 0


def test_identifier_like_text_is_dropped_from_dp_outputs_alone() -> None:
    df = pd.DataFrame({"note": [f"free text {i}" for i in range(5000)], "x": range(5000)})
    est = estimate_domains(df, infer_schema(df), BudgetPlan(1.0, 1e-6),
                           np.random.default_rng(3))
    note = est.domains[0]
    assert note.kind is ColumnKind.DROP and note.source == "dropped"
    assert any("note" in w for w in est.warnings)


def test_numeric_range_comes_from_significant_public_grid_bins() -> None:
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"age": rng.integers(20, 60, 20_000)})
    est = estimate_domains(df, infer_schema(df), BudgetPlan(1.0, 1e-6), rng)
    bins = est.domains[0].bins
    lo, hi = min(b[0] for b in bins), max(b[1] for b in bins)
    assert 8 <= lo <= 20 and 60 <= hi <= 128  # octaves around the data, not the data's min/max
    assert est.domains[0].source == "dp"


def test_noise_alone_rarely_makes_a_numeric_bin() -> None:
    # A positive column: a bin on the negative side could only come from noise.
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"w": rng.lognormal(12, 0.5, 5000).round()})
    schema = infer_schema(df)
    spurious = 0
    for seed in range(40):
        est = estimate_domains(df, schema, BudgetPlan(1.0, 1e-6), np.random.default_rng(seed))
        spurious += min(b[0] for b in est.domains[0].bins) < 0
    assert spurious <= 1


def test_a_column_with_one_frequent_value_is_kept_with_a_warning_not_dropped() -> None:
    values = ["Husband"] * 1500 + [f"r{i % 40}" for i in range(1500)]
    df = pd.DataFrame({"rel": values})
    est = estimate_domains(df, infer_schema(df), BudgetPlan(1.0, 1e-6), np.random.default_rng(6))
    (rel,) = est.domains
    assert rel.source == "dp" and rel.categories == ["Husband"] and rel.has_other
    assert any("fold into 'Other'" in w for w in est.warnings)
