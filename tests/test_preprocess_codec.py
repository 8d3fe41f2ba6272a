"""Fast preprocessing and decoding keep their meaning: the same DP release whatever form the
text arrives in, categorical output that writes the same CSV, and parallel decoding."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from synthgen.io import write_csv
from synthgen.privacy import BudgetPlan, cells
from synthgen.privacy.domains import (
    MAX_NUMERIC_BINS,
    ColumnDomain,
    estimate_domains,
    label_codes,
)
from synthgen.privacy.grids import _merge_lightest
from synthgen.schema import ColumnKind, infer_schema
from synthgen.transform import TableEncoder


def _categorical_text(df: pd.DataFrame) -> pd.DataFrame:
    return df.apply(lambda c: c.astype("category") if c.dtype == object else c)


def _release(df: pd.DataFrame) -> tuple[list[dict], dict]:
    schema = infer_schema(df)
    est = estimate_domains(df, schema, BudgetPlan(3.0, 1e-6, 0.5), np.random.default_rng(7))
    assert est.entry is not None
    return [d.to_dict() for d in est.domains], est.entry.params


def test_text_as_categoricals_gets_the_same_seeded_release(people: pd.DataFrame) -> None:
    df = pd.concat([people] * 8, ignore_index=True)
    df["joined"] = df["joined"].dt.strftime("%Y-%m-%d")  # a date column read as text
    as_read = _categorical_text(df)
    assert isinstance(as_read["joined"].dtype, pd.CategoricalDtype)
    assert infer_schema(as_read) == infer_schema(df)
    assert _release(as_read) == _release(df)
    # a categorical with unused categories (a row subset) releases only the observed ones
    subset = as_read[as_read["city"] != "Lille"]
    domains, _ = _release(subset)
    city = next(d for d in domains if d["name"] == "city")
    assert "Lille" not in city["categories"]
    assert _release(subset) == _release(df[df["city"] != "Lille"])


def test_labels_merge_values_that_print_alike() -> None:
    values = pd.Series([1, "1", None, "a", 1.5, "a"], dtype=object)
    codes, labels = label_codes(values, ColumnKind.CATEGORICAL)
    assert labels.tolist() == ["1", "a", "1.5"]
    assert codes.tolist() == [0, 0, -1, 1, 2, 1]
    codes, labels = label_codes(pd.Series(["yes", "No", None, "TRUE"]), ColumnKind.BOOLEAN)
    assert labels.tolist() == [True, False] and codes.tolist() == [0, 1, -1, 0]


@pytest.mark.parametrize("slot_dtype", [np.int32, np.int64])
def test_decode_gives_categoricals_with_the_same_text(people: pd.DataFrame,
                                                      slot_dtype: type) -> None:
    df = pd.concat([people] * 8, ignore_index=True).assign(note=lambda d: np.where(
        d["age"] % 2 == 0, "=HYPERLINK(x)", "plain"))
    enc = TableEncoder(estimate_domains(df, infer_schema(df), BudgetPlan(5.0, 1e-6, 0.5),
                                        np.random.default_rng(0)).domains)
    encoded = enc.encode(df)
    back = enc.decode(encoded.slots.astype(slot_dtype), encoded.scalars)
    assert isinstance(back["city"].dtype, pd.CategoricalDtype)
    assert back["city"].astype(object).where(back["city"].notna(), None).tolist() == (
        df["city"].where(df["city"].notna(), None).tolist())
    assert back["member"].dtype == bool and back["member"].equals(df["member"])
    assert back["children"].dtype == "Int64"
    # the CSV is the text an object column gives, formula cells escaped in both
    as_objects = back.assign(city=back["city"].astype(object), note=back["note"].astype(object))
    a, b = io.StringIO(), io.StringIO()
    write_csv(back, a)
    write_csv(as_objects, b)
    assert a.getvalue() == b.getvalue() and "'=HYPERLINK(x)" in a.getvalue()
    # threads decode the same table
    pd.testing.assert_frame_equal(enc.decode(encoded.slots, encoded.scalars, threads=4), back)


def test_escaping_a_category_that_collides_with_an_escaped_one() -> None:
    df = pd.DataFrame({"t": pd.Categorical(["=1", "'=1", None]), "n": [1, 2, 3]})
    out = io.StringIO()
    write_csv(df, out)
    assert out.getvalue() == "t,n\n'=1,1\n'=1,2\n,3\n"


def test_dropped_columns_decode_empty(people: pd.DataFrame) -> None:
    df = pd.concat([people] * 8, ignore_index=True).assign(user_id=lambda d: range(len(d)))
    enc = TableEncoder(estimate_domains(df, infer_schema(df), BudgetPlan(5.0, 1e-6, 0.5),
                                        np.random.default_rng(0)).domains)
    back = enc.inverse_transform(enc.transform(df))
    assert list(back.columns) == list(df.columns) and back["user_id"].isna().all()


def _reads_every_integer_per_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """No integer column is narrow enough to be read by value: every cell is read on its own."""
    monkeypatch.setattr(cells, "_SPAN_PER_ROW", 0)
    monkeypatch.setattr(cells, "_MIN_SPAN", 0)


def test_integers_counted_by_value_get_the_same_release_and_encoding(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    n = 6000
    df = pd.DataFrame({
        "code": rng.choice([-3, 0, 1, 2, 7, 31, 32, 40], n),  # points and octaves around them
        "count": rng.poisson(300, n),
        "wide": rng.integers(-50_000, 50_000, n),  # a span of 100,000 for 6,000 rows
        "small": rng.integers(0, 4, n).astype(np.uint8),
    })
    assert cells.integer_values(df["code"]) is not None
    assert cells.integer_values(df["wide"]) is None  # too wide a span: read per row

    def release_and_encoding(table: pd.DataFrame) -> tuple[list[dict], dict, np.ndarray,
                                                          np.ndarray]:
        est = estimate_domains(table, infer_schema(table), BudgetPlan(3.0, 1e-6, 0.5),
                               np.random.default_rng(7))
        assert est.entry is not None
        encoded = TableEncoder(est.domains).encode(table)
        return [d.to_dict() for d in est.domains], est.entry.params, encoded.slots, (
            encoded.scalars)

    by_value = release_and_encoding(df)
    as_text = release_and_encoding(df.astype(str).astype(object))
    with monkeypatch.context() as m:
        _reads_every_integer_per_row(m)
        assert cells.integer_values(df["code"]) is None
        per_row = release_and_encoding(df)
    for other in (per_row, as_text):
        assert other[:2] == by_value[:2]
        np.testing.assert_array_equal(other[2], by_value[2])
        np.testing.assert_array_equal(other[3], by_value[3])


def test_merging_the_lightest_bins_matches_the_plain_rule() -> None:
    """The kept pair sums give what summing every pair on each merge gave: the lightest pair
    (the leftmost of equals) merges first, point masses stay apart, groups join."""

    def plain(lo: list[float], hi: list[float], weights: list[float], groups: list[int]
              ) -> tuple[list[tuple[float, float]], list[float], list[int]]:
        bins = list(zip(lo, hi, strict=True))
        while len(bins) > MAX_NUMERIC_BINS:
            j = min((k for k in range(len(bins) - 1) if bins[k][0] != bins[k][1]
                     and bins[k + 1][0] != bins[k + 1][1]),
                    key=lambda k: weights[k] + weights[k + 1], default=None)
            if j is None:
                break
            bins[j: j + 2] = [(bins[j][0], bins[j + 1][1])]
            weights[j: j + 2] = [weights[j] + weights[j + 1]]
            absorbed = groups[j + 1]
            groups = [groups[j] if g == absorbed else g for g in groups]
            groups[j: j + 2] = [groups[j]]
        return bins, weights, groups

    rng = np.random.default_rng(11)
    merged = 0
    for trial in range(200):
        n = int(rng.integers(1, 4 * MAX_NUMERIC_BINS))
        edges = np.cumsum(rng.integers(0, 3, n + 1)).astype(float)  # zero steps: points
        lo, hi = edges[:-1].tolist(), edges[1:].tolist()
        # few distinct weights: many ties, which must go to the leftmost pair
        weights = rng.choice([0.0, 0.5, 1.0, 2.0], n).tolist() if trial % 2 else (
            rng.exponential(1.0, n).tolist())
        groups = (np.arange(n) // int(rng.integers(1, 9))).tolist()
        expected = plain(list(lo), list(hi), list(weights), list(groups))
        assert _merge_lightest(lo, hi, weights, groups) == expected
        merged += len(expected[0]) < n
    assert merged > 50  # the rule was exercised, not only short lists


@pytest.mark.parametrize("kind", [ColumnKind.INTEGER, ColumnKind.CONTINUOUS,
                                  ColumnKind.DATETIME])
def test_an_integer_column_encodes_by_value_as_it_does_per_row(
        monkeypatch: pytest.MonkeyPatch, kind: ColumnKind) -> None:
    """Whatever kind was released for it: an integer cell of a date column is parsed as dates
    are, not taken as a number of seconds."""
    values = pd.Series(np.random.default_rng(3).integers(-20, 3000, 5000))
    bins = [(-32.0, -16.0), (-3.0, -3.0), (0.0, 64.0), (64.0, 1024.0), (1024.0, 4096.0)]
    domain = ColumnDomain(name="x", kind=kind, dtype="float64", source="dp", bins=bins,
                          bin_groups=list(range(len(bins))), log_scale=kind is not (
                              ColumnKind.DATETIME), frequencies=[1 / 6] * 6)
    encoder = TableEncoder([domain])
    by_value = encoder.encode(values.to_frame("x"))
    with monkeypatch.context() as m:
        _reads_every_integer_per_row(m)
        per_row = encoder.encode(values.to_frame("x"))
    np.testing.assert_array_equal(by_value.slots, per_row.slots)
    np.testing.assert_array_equal(by_value.scalars, per_row.scalars)
