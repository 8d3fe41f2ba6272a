"""Column formats: how cells are read and written back, the DP format vote that picks them, and
a messy table's synthetic columns keeping their input's look."""

from __future__ import annotations

import io
import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from synthgen.errors import SchemaError
from synthgen.formats import CANDIDATES, TEXT_KEY, from_pattern, text_key
from synthgen.io import read_csv
from synthgen.privacy import budget as budget_module
from synthgen.privacy import domains as domains_module
from synthgen.privacy.accountant import gaussian_noise_multiplier
from synthgen.privacy.budget import BudgetPlan, code_budget, marginal_floor, marginal_multipliers
from synthgen.privacy.domains import estimate_domains
from synthgen.privacy.release import Keys, Releaser
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
    # the vote and the histograms compose (1/sigma^2 adds up) to the preprocessing share, and
    # what weighting the code column adds (taken out of the marginals' part)
    whole = gaussian_noise_multiplier(plan.preprocessing_epsilon, plan.accountant_delta)
    assert 1 / vote.noise_multiplier**2 + 1 / hist.noise_multiplier**2 == pytest.approx(
        1 / whole**2 + est.code_extra, rel=1e-9)
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


# ----------------------------------------------------------------------------- code columns


def _thin_zips(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A small CRM-like table of 10 columns whose ZIP codes (40, a third with a leading zero)
    each hold at most about 5 % of the rows: below what a text needs in an unweighted joint
    histogram (about 155 rows here)."""
    rng = np.random.default_rng(seed)
    zips = np.array([f"{z:05d}" for z in np.concatenate([
        rng.integers(1000, 9999, 13), rng.integers(10000, 99999, 27)])])
    zip_cells = pd.Series(rng.choice(zips, n, p=rng.dirichlet(np.full(len(zips), 8.0))),
                          dtype=object)
    zip_cells[rng.random(n) < 0.06] = None
    return pd.DataFrame({
        "zip": zip_cells,
        "segment": rng.choice(["retail", "smb", "enterprise"], n, p=[0.5, 0.3, 0.2]),
        "score": np.round(rng.normal(6, 2, n), 1),
        "active": rng.choice(["True", "False"], n, p=[0.7, 0.3]),
        "age": rng.integers(18, 90, n),
        **{f"answer{i}": rng.choice(["a", "b", "c"], n) for i in range(5)},
    })


def test_a_thin_code_column_is_weighted_and_keeps_released_real_codes() -> None:
    """A code column whose codes are each below the joint histogram's threshold is weighted
    (each row adds w to its key): its counts carry sigma / w, the other columns keep their
    sigma, the sensitivity and the cost say so, its threshold is scaled for a key only one
    row has, and the extra cost stays within the code budget (out of the marginals' part)."""
    df = _thin_zips()
    plan = BudgetPlan(1.0, 1e-6, preprocessing_share=0.5)
    est = estimate_domains(df, infer_schema(df), plan, np.random.default_rng(0))
    hist, vote = est.entry, est.vote_entry
    assert hist is not None and vote is not None
    k = df.shape[1]
    w = hist.params["code_weights"]["zip"]
    assert set(hist.params["code_weights"]) == {"zip"} and w > 1.5
    assert hist.params["l2_sensitivity"] == pytest.approx(math.sqrt(k + 1 + w**2 - 1))
    assert hist.params["sigma"] == pytest.approx(hist.noise_multiplier
                                                 * hist.params["l2_sensitivity"])
    # the other columns keep the sigma of an unweighted release of the same share
    whole = gaussian_noise_multiplier(plan.preprocessing_epsilon, plan.accountant_delta)
    unweighted = 1 / math.sqrt(1 / whole**2 - 1 / vote.noise_multiplier**2)
    sigma = unweighted * math.sqrt(k + 1)
    assert hist.params["sigma"] == pytest.approx(sigma, rel=1e-9)
    # the extra cost: (w^2 - 1) / sigma^2, at most the code budget
    assert est.code_extra == pytest.approx((w**2 - 1) / sigma**2, rel=1e-9)
    assert 0 < est.code_extra <= code_budget(plan, plan.accountant_delta) * (1 + 1e-9)
    # a key only the added row has counts w: its threshold is w + sigma z (in weighted units)
    z = float(norm.isf(plan.threshold_delta / k))
    assert hist.params["code_thresholds"]["zip"] == pytest.approx(w + sigma * z, rel=1e-9)
    assert hist.params["threshold"] == pytest.approx(1 + sigma * z, rel=1e-9)
    zip_domain = next(d for d in est.domains if d.name == "zip")
    assert zip_domain.kind is ColumnKind.CATEGORICAL and zip_domain.format == "code"
    assert zip_domain.categories
    assert set(zip_domain.categories) <= set(df["zip"].dropna())


def test_without_its_weight_the_thin_code_column_is_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the weight buys: with no code budget the same column releases no code."""
    monkeypatch.setattr(budget_module, "CODE_MAX_SHARE", 0.0)
    df = _thin_zips()
    est = estimate_domains(df, infer_schema(df), BudgetPlan(1.0, 1e-6, preprocessing_share=0.5),
                           np.random.default_rng(0))
    assert est.entry is not None and "code_weights" not in est.entry.params
    assert est.code_extra == 0.0
    assert next(d for d in est.domains if d.name == "zip").kind is ColumnKind.DROP


def _exact_histograms(df: pd.DataFrame, plan: BudgetPlan,
                      monkeypatch: pytest.MonkeyPatch) -> tuple[dict[Any, float], float]:
    """The exact vector the histograms' release was given (arrays by position, discovered
    keys by label) and the L2 sensitivity its ledger entry records."""
    release = Releaser.scratch(np.random.default_rng(0), plan.accountant_delta)
    seen: dict[str, list[Any]] = {}
    real = release.gaussian

    def spy(mechanism: str, reads: str, exact: Any, **kwargs: Any) -> Any:
        seen[mechanism] = list(exact)
        return real(mechanism, reads, exact, **kwargs)

    monkeypatch.setattr(release, "gaussian", spy)
    est = estimate_domains(df, infer_schema(df), plan, release)
    assert est.entry is not None
    flat: dict[Any, float] = {}
    for i, value in enumerate(seen["gaussian_histograms"]):
        if isinstance(value, Keys):
            flat.update({(i, label): float(c) for label, c in zip(
                value.labels, value.counts, strict=True)})
        else:
            flat.update({(i, j): float(c) for j, c in enumerate(np.ravel(value))})
    return flat, float(est.entry.params["l2_sensitivity"])


def test_a_row_moves_the_weighted_histograms_by_the_recorded_sensitivity(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Neighbouring tables (one full row removed): the exact vector the release noises moves
    by the L2 sensitivity its ledger entry records (the weighted column's key by w), never
    more."""
    df = _thin_zips()
    plan = BudgetPlan(1.0, 1e-6, preprocessing_share=0.5)
    row = int(np.flatnonzero(df["zip"].notna().to_numpy())[0])
    a, sensitivity = _exact_histograms(df, plan, monkeypatch)
    b, other = _exact_histograms(df.drop(index=row).reset_index(drop=True), plan, monkeypatch)
    assert other == pytest.approx(sensitivity)
    moved = math.sqrt(sum((a.get(key, 0.0) - b.get(key, 0.0)) ** 2 for key in {*a, *b}))
    assert sensitivity > math.sqrt(df.shape[1] + 1) + 0.1  # weighted
    assert moved == pytest.approx(sensitivity, rel=1e-9)


def test_the_marginals_give_up_what_the_code_columns_took() -> None:
    """The domain histograms (with the code columns' extra) and the marginals still compose
    to one Gaussian release of (domain + marginal share) of epsilon."""
    plan = BudgetPlan(1.0, 1e-6, preprocessing_share=0.5)
    delta = plan.accountant_delta
    extra = code_budget(plan, delta)
    assert extra > 0
    split = marginal_multipliers(plan, marginal_floor(plan), delta, extra)
    domain = gaussian_noise_multiplier(plan.preprocessing_epsilon, delta)
    joint = gaussian_noise_multiplier(plan.epsilon * (0.5 + marginal_floor(plan)), delta)
    assert 1 / domain**2 + extra + sum(1 / m**2 for m in split) == pytest.approx(
        1 / joint**2, rel=1e-9)
    # no room without marginals
    assert code_budget(BudgetPlan(1.0, 1e-6, 0.5, marginal_share=0.0), delta) == 0.0
