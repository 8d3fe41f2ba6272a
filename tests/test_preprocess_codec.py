"""Fast preprocessing and decoding keep their meaning: the same DP release whatever form the
text arrives in, categorical output that writes the same CSV, and parallel decoding."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from synthgen.io import write_csv
from synthgen.privacy import BudgetPlan
from synthgen.privacy.domains import estimate_domains, label_codes
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
