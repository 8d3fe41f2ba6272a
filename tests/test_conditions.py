"""Conditioned sampling: fixed values, ranges, rebalancing and seed rows (library level)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthgen import Synthesizer
from synthgen.errors import ConditionError
from synthgen.models.conditions import parse_condition, parse_rebalance


@pytest.fixture
def model(adult_model: Synthesizer) -> Synthesizer:
    return adult_model


def tvd(a: pd.Series, b: pd.Series) -> float:
    """Total variation distance of two columns: categories as they are, numbers in the deciles
    of both together (nulls as one more bin)."""
    if a.dtype.kind in "iufM" or str(a.dtype) in ("Int64", "Float64"):
        x, y = a.astype(float), b.astype(float)
        edges = np.unique(np.nanquantile(pd.concat([x, y]), np.linspace(0, 1, 11)))
        if len(edges) < 2:  # one value only: one bin
            edges = np.append(edges, edges[-1] + 1)
        pa = np.append(np.histogram(x.dropna(), edges)[0], x.isna().sum())
        pb = np.append(np.histogram(y.dropna(), edges)[0], y.isna().sum())
        return float(0.5 * np.abs(pa / pa.sum() - pb / pb.sum()).sum())
    pa = a.astype(str).value_counts(normalize=True)
    pb = b.astype(str).value_counts(normalize=True)
    return float(0.5 * pa.subtract(pb, fill_value=0).abs().sum())


def test_parsing_the_cli_forms() -> None:
    assert parse_condition("Y=>50K") == parse_condition("Y='>50K'")
    assert parse_condition("Y=>50K").value == ">50K"
    assert (parse_condition("age>=60").op, parse_condition("age>=60").value) == (">=", "60")
    assert parse_rebalance("Y='>50K':0.5") == ("Y", ">50K", 0.5)
    with pytest.raises(ConditionError, match="COLUMN=VALUE"):
        parse_condition("sex")


def test_two_categorical_conditions_are_honoured_and_follow_the_model(model: Synthesizer) -> None:
    conditions = {"sex": "Female", "Y": ">50K"}
    out = model.sample(10_000, seed=1, conditions=conditions)
    assert len(out) == 10_000
    assert (out["sex"] == "Female").all() and (out["Y"] == ">50K").all()
    assert model.sampling is not None
    assert model.sampling["conditions"] == ["sex=Female", "Y=>50K"]
    assert "no privacy budget" in model.sampling["note"]
    # The model's own conditional distribution: a large unconditioned sample, filtered.
    reference = model.sample(200_000, seed=2)
    reference = reference[(reference["sex"] == "Female") & (reference["Y"] == ">50K")]
    assert len(reference) > 2_000
    distances = {c: tvd(out[c], reference[c]) for c in out.columns if c not in conditions}
    assert max(distances.values()) < 0.05, distances


def test_rebalancing_sets_the_share_exactly(model: Synthesizer) -> None:
    # (bench/conditional.py measures the bar's 100,000 rows; the count is exact at any size)
    out = model.sample(40_000, seed=3, rebalance={"Y": {">50K": 0.5}})
    assert len(out) == 40_000
    assert (out["Y"] == ">50K").mean() == 0.5
    # the rows are mixed, not one block after the other
    assert 0.45 < (out["Y"].iloc[:1000] == ">50K").mean() < 0.55
    assert model.sampling is not None
    assert model.sampling["rebalance"] == {"column": "Y", "shares": {">50K": 0.5}}


def test_numeric_ranges_hold_exactly_with_a_categorical_condition(model: Synthesizer) -> None:
    out = model.sample(2_000, seed=4, conditions=["age>=60", "age<70", "sex=Female"])
    assert out["age"].between(60, 69).all() and (out["sex"] == "Female").all()
    ranged = model.sample(500, seed=4, conditions={"hours-per-week": [50, None]})
    assert (ranged["hours-per-week"] >= 50).all()


def test_seed_rows_keep_their_values_and_fill_the_rest(model: Synthesizer) -> None:
    seed = pd.DataFrame({
        "sex": ["Female", None, "Male", "Female"],
        "age": [65, 30, None, 41],
        "race": [None, "Black", None, "White"],
        "fnlwgt": [None, None, 123456, None],
    })
    out = model.sample(seed_rows=seed, seed=5)
    assert len(out) == 4
    assert list(out["sex"].iloc[[0, 2, 3]]) == ["Female", "Male", "Female"]
    assert list(out["age"].iloc[[0, 1, 3]]) == [65, 30, 41]
    assert list(out["race"].iloc[[1, 3]]) == ["Black", "White"]
    assert out["fnlwgt"].iloc[2] == 123456
    assert out[["Y", "education", "hours-per-week"]].notna().all().all()  # never null in Adult
    assert model.sampling is not None
    assert "not training data" in model.sampling["seed_rows"]["note"]


def test_plain_sampling_is_unchanged_by_the_conditions_code(model: Synthesizer) -> None:
    a = model.sample(1000, seed=6)
    b = model.sample(1000, seed=6, conditions={}, rebalance=None)
    pd.testing.assert_frame_equal(a, b)
    assert model.sampling is None


@pytest.mark.parametrize(("kwargs", "code", "words"), [
    ({"conditions": {"sexx": "Female"}}, "unknown-column", "no column 'sexx'"),
    ({"conditions": {"sex": "Femal"}}, "unknown-category", "not a category of sex"),
    ({"conditions": ["age>=60", "age<50"]}, "contradictory-conditions", "contradict"),
    ({"conditions": ["sex=Female", "sex=Male"]}, "contradictory-conditions", "contradict"),
    ({"conditions": ["age>=200"]}, "contradictory-conditions", "lie between"),
    ({"conditions": ["sex>=Female"]}, "invalid-condition", "takes = only"),
    ({"conditions": ["age>=sixty"]}, "invalid-condition", "not a number"),
    ({"rebalance": {"Y": {">50K": 1.5}}}, "invalid-condition", "between 0 and 1"),
    ({"rebalance": {"Y": {">50K": 0}}}, "invalid-condition", "between 0 and 1"),
    ({"rebalance": {"age": {"60": 0.5}}}, "invalid-condition", "categorical or boolean"),
    ({"rebalance": ["Y=>50K:0.6", "Y=<=50K:0.6"]}, "contradictory-conditions", "more than 1"),
    ({"conditions": {"Y": ">50K"}, "rebalance": {"Y": {">50K": 0.5}}},
     "contradictory-conditions", "also fixed"),
    ({"seed_rows": pd.DataFrame({"sex": ["Femal"]})}, "unknown-category", "line 2"),
    ({"seed_rows": pd.DataFrame({"nope": [1]})}, "unknown-column", "no column 'nope'"),
    ({"seed_rows": pd.DataFrame({"sex": ["Male"]}), "conditions": {"sex": "Male"}},
     "contradictory-conditions", "also fixed"),
    ({"seed_rows": pd.DataFrame({"age": ["old"]})}, "invalid-condition", "line 2: age"),
])
def test_bad_requests_get_a_clear_error(model: Synthesizer, kwargs: dict, code: str,
                                        words: str) -> None:
    with pytest.raises(ConditionError, match=words) as caught:
        model.sample(None if "seed_rows" in kwargs else 100, **kwargs)
    assert caught.value.code == code


def test_too_rare_a_condition_stops_with_the_share_it_measured(model: Synthesizer) -> None:
    with pytest.raises(ConditionError, match=r"a share of \d+\.\d+%") as caught:
        model.sample(1_000, conditions=["age>=85", "sex=Female", "race=Black",
                                        "Y=>50K"])
    assert caught.value.code == "condition-too-rare"


def test_dates_and_booleans_as_conditions_and_seeds(people: pd.DataFrame) -> None:
    synth = Synthesizer(epsilon=3.0, epochs=2, seed=0, device="cpu").fit(people)
    middle = synth.sample(2000, seed=0)["joined"].median().floor("D")  # in the model's range
    out = synth.sample(300, seed=1, conditions=[f"joined>={middle.date()}", "member=true"])
    assert (out["joined"] >= middle).all() and out["member"].all()
    seeded = synth.sample(seed_rows=pd.DataFrame({"joined": ["2016-03-04", None],
                                                  "member": [None, False]}), seed=2)
    assert seeded["joined"].iloc[0] == pd.Timestamp("2016-03-04")
    assert not seeded["member"].iloc[1]
    with pytest.raises(ConditionError, match="true or false"):
        synth.sample(10, conditions={"member": "maybe"})


def test_a_table_of_numbers_only_takes_ranges_and_seed_rows() -> None:
    """No categorical column, so no conditional vector: rows are still drawn and filtered."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"age": rng.integers(18, 90, 2000),
                          "income": rng.normal(5e4, 1e4, 2000).round(2)})
    synth = Synthesizer(epsilon=3.0, epochs=1, seed=0, device="cpu").fit(table)
    out = synth.sample(300, seed=1, conditions=["age>=40"])
    assert len(out) == 300 and (out["age"] >= 40).all()
    seeded = synth.sample(seed=2, seed_rows=pd.DataFrame({"age": [20, 70, None]}))
    assert seeded["age"].iloc[:2].tolist() == [20, 70] and len(seeded) == 3
