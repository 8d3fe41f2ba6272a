"""Column formats: how cells are read and written back, the DP format vote that picks them, and
a messy table's synthetic columns keeping their input's look."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pandas as pd
import pytest

from synthgen.errors import SchemaError
from synthgen.formats import CANDIDATES, TEXT_KEY, from_pattern, text_key
from synthgen.io import read_csv
from synthgen.privacy import domains as domains_module
from synthgen.privacy.accountant import gaussian_noise_multiplier
from synthgen.privacy.budget import BudgetPlan
from synthgen.privacy.domains import estimate_domains
from synthgen.schema import ColumnKind, infer_schema, parse_schema


def _key(text: str) -> str:
    k = text_key(text)
    return "text" if k == TEXT_KEY else CANDIDATES[k].pattern


@pytest.mark.parametrize(("cell", "pattern"), [
    ("$1,234.50", "$#,##0.00"), ("1.234,50 €", "#.##0,00 €"), ("12.5%", "0.0%"),
    ("03/15/2021", "%m/%d/%Y"), ("15/03/2021", "%d/%m/%Y"), ("15.03.2021", "%d.%m.%Y"),
    ("2021-03-15", "%Y-%m-%d"), ("2021-03-15 10:04", "%Y-%m-%d %H:%M"),
    ("2021-03-15T10:04:05Z", "%Y-%m-%dT%H:%M:%S%:z"), ("02139", "code"), ("yes", "yes/no"),
    ("3.7", "0.0"), ("12", "0"), ("-4", "0"), ("1,234", "#,##0"), ("0.123456", "0.#"),
    ("Person 12", "text"), ("N", "Y/N"),
])
def test_each_cell_votes_for_the_format_it_is_written_in(cell: str, pattern: str) -> None:
    assert _key(cell) == pattern


@pytest.mark.parametrize(("pattern", "texts", "values"), [
    ("$#,##0.00", ["$1,234.50", "$3.00", "-$12.25"], [1234.5, 3.0, -12.25]),
    ("#.##0,00 €", ["1.234,50 €", "3,00 €"], [1234.5, 3.0]),
    ("0.0%", ["12.5%", "0.0%"], [12.5, 0.0]),
    ("#,##0", ["1,234", "12"], [1234.0, 12.0]),
    ("%m/%d/%Y", ["03/15/2021", "12/01/1999"], None),
    ("%d.%m.%Y %H:%M", ["15.03.2021 10:04", "01.12.1999 00:00"], None),
])
def test_a_format_reads_its_cells_and_writes_them_back_unchanged(
        pattern: str, texts: list[str], values: list[float] | None) -> None:
    fmt = from_pattern(pattern)
    parsed = fmt.parse(np.array(texts, dtype=object))
    if values is not None:
        assert parsed.tolist() == pytest.approx(values)
    written = fmt.write(parsed, np.zeros(len(texts), dtype=bool))
    assert written.tolist() == texts


def test_a_cell_in_another_format_reads_as_nothing() -> None:
    fmt = from_pattern("%m/%d/%Y")
    assert np.isnan(fmt.parse(np.array(["2021-03-15", "soon"], dtype=object))).all()


@pytest.mark.parametrize("bad", ["", "%Y-%q", "abc", "0.0.0", "%d/%m"])
def test_a_declared_format_that_is_not_understood_is_refused(bad: str) -> None:
    with pytest.raises(SchemaError, match="format"):
        parse_schema({"columns": [{"name": "x", "kind": "continuous", "format": bad}]})


def test_a_declared_format_must_fit_the_kind() -> None:
    with pytest.raises(SchemaError, match="does not apply"):
        parse_schema({"columns": [{"name": "x", "kind": "integer", "format": "%Y-%m-%d"}]})
    spec = parse_schema({"columns": [{"name": "d", "kind": "datetime",
                                      "datetime_format": "%d.%m.%Y"}]}).columns[0]
    assert spec.format == "%d.%m.%Y"  # SDV's name for it


def test_digit_strings_with_leading_zeros_stay_text_when_read() -> None:
    raw = b"zip,n\n02139,1\n94105,2\n01002,3\n" + b"".join(b"10001,4\n" for _ in range(30))
    df = read_csv(io.BytesIO(raw))
    assert df["zip"].astype(str).tolist()[:3] == ["02139", "94105", "01002"]
    assert pd.api.types.is_integer_dtype(df["n"].dtype)


# ----------------------------------------------------------------------------- the vote


def _messy(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D")

    def missing(values: object, share: float) -> pd.Series:
        s = pd.Series(values, dtype=object)
        s[rng.random(n) < share] = None
        return s

    return pd.DataFrame({
        "ordered": missing(days.strftime("%m/%d/%Y"), 0.1),
        "balance": missing([f"${v:,.2f}" for v in np.exp(rng.normal(7, 1, n))], 0.1),
        "zip": missing(rng.choice(["02139", "02140", "01002", "94105"], n), 0.1),
        "active": missing(rng.choice(["True", "False"], n, p=[0.7, 0.3]), 0.25),
        "score": missing(np.round(rng.normal(6, 2, n), 1), 0.2),
        "segment": rng.choice(["retail", "smb", "enterprise"], n),
    })


def test_the_format_vote_is_a_gaussian_release_composed_into_the_preprocessing_share(
        ) -> None:
    df = _messy()
    plan = BudgetPlan(1.0, 1e-6, preprocessing_share=0.5)
    est = estimate_domains(df, infer_schema(df), plan, np.random.default_rng(0))
    vote, hist = est.vote_entry, est.entry
    assert vote is not None and hist is not None
    assert vote.mechanism == "gaussian_format_votes"
    k = df.shape[1]
    # each row adds 1 to one key of each undeclared column's vote: sqrt(k)
    assert vote.params["l2_sensitivity"] == pytest.approx(math.sqrt(k))
    assert vote.params["sigma"] == pytest.approx(vote.noise_multiplier * math.sqrt(k))
    assert vote.params["keys_per_column"] == TEXT_KEY + 1
    # the vote and the histograms compose (1/sigma^2 adds up) to the preprocessing share
    whole = gaussian_noise_multiplier(plan.preprocessing_epsilon, plan.accountant_delta)
    assert 1 / vote.noise_multiplier**2 + 1 / hist.noise_multiplier**2 == pytest.approx(
        1 / whole**2, rel=1e-9)
    assert vote.noise_multiplier == pytest.approx(4 * whole)  # 1/16 of the share
    formats = {d.name: d.format for d in est.domains}
    assert formats == {"ordered": "%m/%d/%Y", "balance": "$#,##0.00", "zip": "code",
                       "active": "True/False", "score": "0.0", "segment": None}
    kinds = {d.name: d.kind for d in est.domains}
    assert kinds["ordered"] is ColumnKind.DATETIME and kinds["balance"] is ColumnKind.CONTINUOUS
    assert kinds["zip"] is ColumnKind.CATEGORICAL
    assert est.domains[2].categories and all(re.fullmatch(r"\d{5}", c)
                                             for c in est.domains[2].categories)


def test_the_vote_decides_from_noisy_counts_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the vote's noise made huge, the formats come out of the noise, not the data: a
    vote that read the exact counts would still find them."""
    df = _messy()
    monkeypatch.setattr(domains_module, "FORMAT_VOTE_RATIO", 1e6)
    est = estimate_domains(df, infer_schema(df), BudgetPlan(1.0, 1e-6, preprocessing_share=0.5),
                           np.random.default_rng(0))
    assert {d.name: d.format for d in est.domains}["balance"] is None


def test_a_declared_column_uses_its_declared_format_at_no_cost() -> None:
    df = _messy()[["ordered", "balance"]]
    schema = parse_schema({"columns": [
        {"name": "ordered", "kind": "datetime", "format": "%m/%d/%Y", "nullable": True},
        {"name": "balance", "kind": "continuous", "format": "$#,##0.00", "nullable": True}]})
    est = estimate_domains(df, schema, BudgetPlan(1.0, 1e-6), np.random.default_rng(0))
    assert est.vote_entry is None
    assert [d.format for d in est.domains] == ["%m/%d/%Y", "$#,##0.00"]
    assert [d.decided["format"] for d in est.domains] == ["declared", "declared"]
    bare = parse_schema({"columns": [{"name": "balance", "kind": "continuous",
                                      "nullable": True}]})
    with pytest.raises(SchemaError, match='"format"'):
        estimate_domains(df[["balance"]], bare, BudgetPlan(1.0, 1e-6), np.random.default_rng(0))
