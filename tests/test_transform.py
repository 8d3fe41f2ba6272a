"""Every column kind survives encode -> decode, with missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthgen.privacy import BudgetPlan
from synthgen.privacy.domains import OTHER_LABEL, estimate_domains
from synthgen.schema import ColumnKind, infer_schema
from synthgen.transform import TableEncoder


def _encoder(df: pd.DataFrame) -> TableEncoder:
    est = estimate_domains(df, infer_schema(df), BudgetPlan(5.0, 1e-6, 0.5),
                           np.random.default_rng(0))
    return TableEncoder(est.domains)


def test_kinds_are_released_from_dp_counts_not_dtypes(people: pd.DataFrame) -> None:
    df = pd.concat([people] * 8, ignore_index=True)
    df = df.assign(joined=df["joined"].dt.strftime("%Y-%m-%d"), user_id=range(len(df)))
    schema = infer_schema(df)  # reads names only: identifiers dropped, the rest auto
    assert {c.name: c.kind for c in schema.columns} == {
        **dict.fromkeys(people.columns, ColumnKind.AUTO), "user_id": ColumnKind.DROP}
    est = estimate_domains(df, schema, BudgetPlan(5.0, 1e-6, 0.5), np.random.default_rng(0))
    assert {d.name: d.kind for d in est.domains} == {
        "age": ColumnKind.INTEGER, "income": ColumnKind.CONTINUOUS,
        "city": ColumnKind.CATEGORICAL, "member": ColumnKind.BOOLEAN,
        "joined": ColumnKind.DATETIME, "children": ColumnKind.INTEGER,
        "user_id": ColumnKind.DROP,
    }
    assert est.entry is not None
    assert est.entry.params["decided_by_counts"]["joined"] == [
        "format", "kind", "nullable", "time_of_day"]


def test_round_trip_of_every_kind_with_missing_values(people: pd.DataFrame) -> None:
    df = pd.concat([people] * 8, ignore_index=True)  # enough support for every category
    enc = _encoder(df)
    encoded = enc.transform(df)
    assert encoded.shape == (len(df), enc.width) and encoded.dtype == np.float32
    back = enc.inverse_transform(encoded)
    assert list(back.columns) == list(df.columns)
    pd.testing.assert_series_equal(back["age"], df["age"], check_names=False)
    pd.testing.assert_series_equal(back["member"], df["member"], check_names=False)
    assert back["city"].isna().equals(df["city"].isna())
    assert (back["city"].dropna() == df["city"].dropna()).all()
    income = df["income"].to_numpy()
    np.testing.assert_allclose(back["income"].to_numpy(), income, rtol=1e-4, equal_nan=True)
    assert back["children"].dtype == "Int64"
    assert (back["children"].isna() == df["children"].isna()).all()
    # counts are points (exact); the rare 5s and 6s (16 of 3,832) release no key of their own
    # and clamp to the largest released count
    same = back["children"].dropna().to_numpy() == df["children"].dropna().to_numpy()
    assert same.mean() > 0.99
    assert (back["joined"] - df["joined"]).abs().max() < pd.Timedelta(seconds=60)


def test_unreleased_categories_decode_as_other() -> None:
    df = pd.DataFrame({"c": ["a"] * 3000 + ["b"] * 3000 + ["rare"] * 2})
    enc = _encoder(df)
    back = enc.inverse_transform(enc.transform(df))
    assert set(back["c"]) == {"a", "b", OTHER_LABEL}


def test_values_outside_the_dp_range_are_clamped_not_lost() -> None:
    df = pd.DataFrame({"x": np.r_[np.full(5000, 10.0), [1e9]]})
    enc = _encoder(df)
    back = enc.inverse_transform(enc.transform(df))
    assert back["x"].max() < 1e9
    assert back["x"].notna().all()


def test_the_fold_in_bucket_never_prints_like_a_real_other_category() -> None:
    df = pd.DataFrame({"race": ["White"] * 3000 + ["Other"] * 3000 + ["rare"] * 2})
    enc = _encoder(df)
    back = enc.inverse_transform(enc.transform(df))
    assert set(back["race"]) == {"White", "Other", "Other (rare values)"}


def test_a_thin_tail_beside_released_points_gets_slots_and_round_values_their_own() -> None:
    """Post-processing of the domain histogram: a code column's rare lowest value (below the
    release threshold but plausible, beside a released value) still gets a slot, and so does
    one more value beyond each end of that range, for the one-way marginal to measure and
    decide; values up to 64 are unit pieces, so a spike at 40 is a slot of its own rather than
    a position inside [40, 42) (it decoded as 41 a third of the time)."""
    from synthgen.privacy.grids import INT_LO, OCTAVE_EDGES, NumberGrid, number_bins

    grid = NumberGrid(OCTAVE_EDGES, True, True)
    noisy = np.zeros(grid.size)
    sigma = 10.0
    # 1: over one sigma but under the threshold; 0: under one sigma
    counts = {0: 5.0, 1: 15.0, 2: 400.0, 3: 900.0, 4: 800.0}
    for value, count in counts.items():
        noisy[value - INT_LO] = count
    octave = grid.point_keys + int(np.searchsorted(OCTAVE_EDGES, 40.0, side="right") - 1)
    noisy[octave] = 5000.0  # whole numbers in [32, 64)
    bins, _, _ = number_bins(grid, noisy, ColumnKind.INTEGER, sigma, public=False)
    assert (1.0, 1.0) in bins and (2.0, 2.0) in bins
    # 0 has no plausible count: offered as the one value beyond the range, nothing further
    assert (0.0, 0.0) in bins and (-1.0, -1.0) not in bins
    assert (5.0, 5.0) in bins and (6.0, 6.0) not in bins
    assert (40.0, 41.0) in bins and all(b - a <= 1 for a, b in bins if 32 <= a < 64)
    # a single released point (a money column's zero) is no range: its neighbours stay out
    money = np.zeros(grid.size)
    money[0 - INT_LO], money[-1 - INT_LO], money[1 - INT_LO] = 9000.0, 15.0, 15.0
    bins, _, _ = number_bins(grid, money, ColumnKind.INTEGER, sigma, public=False)
    assert bins == [(0.0, 0.0)]


def test_the_other_values_of_an_octave_holding_released_points_get_unit_slots() -> None:
    """Adult's hours-per-week: 12, 14, 15 and 16 released, 8..11 and 13 not significant alone
    nor together (four sigma of their sum), yet plausible: they get unit slots for the one-way
    marginal to measure, instead of folding into 12. A noise-only octave stays out."""
    from synthgen.privacy.grids import INT_LO, OCTAVE_EDGES, NumberGrid, number_bins

    grid = NumberGrid(OCTAVE_EDGES, True, True)
    sigma = 50.0
    noisy = np.zeros(grid.size)
    for value, count in {8: 120.0, 9: 20.0, 10: 200.0, 11: 10.0, 13: 20.0, 12: 900.0,
                         14: 900.0, 15: 900.0, 16: 900.0}.items():
        noisy[value - INT_LO] = count
    bins, _, _ = number_bins(grid, noisy, ColumnKind.INTEGER, sigma, public=False)
    # a unit piece each, or a point of the run (8..11 together are a plausible pair beside it)
    assert all((v, v + 1.0) in bins or (v, v) in bins for v in (8.0, 9.0, 10.0, 11.0, 13.0))
    # the octave below holds nothing plausible: only the one value beyond the run (7)
    assert [b for b in bins if b[1] <= 7.0] == [(7.0, 7.0)]
    noisy[[v - INT_LO for v in (8, 9, 10, 11, 13)]] = [10.0, -20.0, 30.0, 5.0, -10.0]
    bins, _, _ = number_bins(grid, noisy, ColumnKind.INTEGER, sigma, public=False)
    # not plausible: only the one value beyond the run (11) is offered
    assert (8.0, 9.0) not in bins and (10.0, 11.0) not in bins and (11.0, 11.0) in bins


def test_the_rest_beside_an_atom_keeps_the_window_of_octaves_that_holds_it() -> None:
    """A money column: the zero is released as a point, the few hundred other rows spread over
    three octaves each under the threshold. The DP count of the column's numbers less what the
    kept keys hold is significant: the window that holds it is kept, with that rest spread
    over its octaves (capital-gain came out 0 in every row). Without a significant rest, or
    without the count, nothing is added."""
    from synthgen.privacy.grids import INT_LO, OCTAVE_EDGES, NumberGrid, number_bins

    grid = NumberGrid(OCTAVE_EDGES, True, True)
    sigma = 32.0
    noisy = np.zeros(grid.size)
    noisy[0 - INT_LO] = 2750.0
    octave = {v: grid.point_keys + int(np.searchsorted(OCTAVE_EDGES, v, side="right") - 1)
              for v in (3000.0, 5000.0, 10000.0)}
    noisy[[octave[3000.0], octave[5000.0], octave[10000.0]]] = [50.0, 100.0, 60.0]
    bins, _, _ = number_bins(grid, noisy, ColumnKind.INTEGER, sigma, public=False)
    assert bins == [(0.0, 0.0)]  # each octave is under the threshold
    bins, weights, _ = number_bins(grid, noisy, ColumnKind.INTEGER, sigma, public=False,
                                   total=(3000.0, sigma))
    assert bins[0] == (0.0, 0.0) and bins[1][0] == 2048.0 and bins[-1][1] == 16384.0
    assert sum(weights[1:]) == pytest.approx(250.0)
    # a rest within the noise of its counts: nothing more
    bins, _, _ = number_bins(grid, noisy, ColumnKind.INTEGER, sigma, public=False,
                             total=(2800.0, sigma))
    assert bins == [(0.0, 0.0)]


def test_a_thin_top_octave_holds_a_falling_tail_not_an_even_spread() -> None:
    """Adult's age: [64, 128) holds a few percent of the rows, [32, 64) most of them. Its
    pieces get a density falling from half the neighbour's to zero where the octave's mass is
    used up: no value near 127 (ages of 119-127 were 3 % of the rows)."""
    from synthgen.privacy.grids import INT_LO, OCTAVE_EDGES, NumberGrid, number_bins

    grid = NumberGrid(OCTAVE_EDGES, True, True)
    noisy = np.zeros(grid.size)
    for v in range(17, 32):
        noisy[v - INT_LO] = 300.0
    for value, count in ((40.0, 1600.0), (80.0, 150.0)):
        noisy[grid.point_keys + int(np.searchsorted(OCTAVE_EDGES, value, side="right") - 1)] = count
    bins, weights, _ = number_bins(grid, noisy, ColumnKind.INTEGER, 32.0, public=False)
    top = [(b, w) for b, w in zip(bins, weights, strict=True) if b[0] >= 64]
    assert top and sum(w for _, w in top) == pytest.approx(150.0)
    # 150 rows at a density falling from 25 a year: used up by 76
    assert max(b[0] for b, w in top if w > 0) < 80
    assert [w for _, w in top if w > 0] == sorted((w for _, w in top if w > 0), reverse=True)


def test_declared_bounds_make_a_heavy_whole_number_an_atom() -> None:
    """capital-loss declared 0-4,356: the zero (most rows) is a point of its own and the bin
    it sat in starts at 1 (27 % of the rows got losses of 1-27 dollars); an integer column's
    declared bins have whole edges and the last holds the upper bound; a whole number with no
    significant count stays inside its bin."""
    from synthgen.privacy.grids import INT_LO, number_bins, number_grid
    from synthgen.schema import ColumnSpec

    spec = ColumnSpec(name="loss", kind=ColumnKind.INTEGER, lower=0, upper=4356)
    grid = number_grid(spec)
    assert np.all(grid.edges == np.round(grid.edges)) and grid.edges[-1] == 4357
    noisy = np.zeros(grid.size)
    noisy[0 - INT_LO] = 2800.0
    noisy[5 - INT_LO] = 20.0
    noisy[grid.point_keys + 13] = 100.0
    bins, weights, _ = number_bins(grid, noisy, ColumnKind.INTEGER, 140.0, public=True)
    assert bins[0] == (0.0, 0.0) and weights[0] == 2800.0
    assert bins[1] == (1.0, grid.edges[1])
    assert len(bins) == 33 and bins[-1][1] == 4357


def test_a_small_declared_date_column_stays_inside_its_years() -> None:
    """500 rows over ten years (2015-2024), declared datetime: no year is significant alone,
    and the one largest key among 585 years was now and then a noise-only one (dates in 2062,
    2210 or 1846). The rest window keeps the run of years that holds the rows."""
    from synthgen.schema import ColumnSpec, TableSchema

    rng = np.random.default_rng(0)
    n = 500
    when = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3650, n), "D")
    df = pd.DataFrame({"when": when.strftime("%Y-%m-%d"), "seg": rng.choice(list("abcd"), n),
                       "amt": rng.integers(1, 500, n)})
    schema = TableSchema(columns=[ColumnSpec(name="when", kind=ColumnKind.DATETIME),
                                  ColumnSpec(name="seg", kind=ColumnKind.CATEGORICAL),
                                  ColumnSpec(name="amt", kind=ColumnKind.INTEGER)])
    for seed in range(8):
        est = estimate_domains(df, schema, BudgetPlan(1.0, 1e-6, 0.5),
                               np.random.default_rng(seed))
        domain = next(d for d in est.domains if d.name == "when")
        years = [pd.Timestamp(lo, unit="s").year for lo, _ in domain.bins]
        assert 2012 <= min(years) and max(years) <= 2028, (seed, years)
        assert max(years) - min(years) >= 5, (seed, years)


def test_a_whole_day_date_decodes_inside_its_bin() -> None:
    """A whole-day date decodes like a whole number (half a day in, floored, clamped to its
    bin's last day): a generator at the top of the last year's bin writes that year's
    December 31, not the next January 1, which is outside the real range (dates300 put 35 %
    of its dates there)."""
    rng = np.random.default_rng(0)
    n = 2000
    when = pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 3 * 365, n), "D")
    df = pd.DataFrame({"when": when.strftime("%m/%d/%Y"), "seg": rng.choice(list("ab"), n)})
    encoder = _encoder(df)
    domain = encoder.learned[0]
    assert domain.kind is ColumnKind.DATETIME and domain.whole_days
    k = len(domain.bins)
    slots = np.zeros((2 * k, 2), dtype=np.int64)
    slots[:, 0] = np.tile(np.arange(k), 2)
    scalars = np.repeat(np.array([-1.0, 1.0], dtype=np.float32), k)[:, None]
    out = pd.to_datetime(encoder.decode(slots, scalars)["when"], format="%m/%d/%Y")
    seconds = (out - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy()
    lo = np.array([a for a, _ in domain.bins] * 2)
    hi = np.array([b for _, b in domain.bins] * 2)
    assert ((seconds >= lo) & (seconds < hi)).all()
    assert out.max() == pd.Timestamp(domain.bins[-1][1], unit="s") - pd.Timedelta(days=1)
    # a date encodes and decodes back to itself (the half day added, then floored)
    encoded = encoder.encode(df.iloc[:200])
    back = encoder.decode(encoded.slots, encoded.scalars)["when"]
    assert back.tolist() == df["when"].iloc[:200].tolist()


def test_a_value_between_released_bins_takes_the_nearer_one() -> None:
    """A number in a gap of the released bins (a money column's 0 and a window of octaves
    4,096-8,192 beside it) is encoded in the nearer bin, in the bins' own space (sign-log for
    octaves): a gain of 3,000 is a gain, not a 0 (Adult's capital-gain at 3,000 rows came out
    non-zero in 3 % of the rows for a real 8.3 %: the gains under 4,096 were learned as 0)."""
    from synthgen.privacy.domains import ColumnDomain

    for whole in (True, False):  # integer bins with whole edges; continuous ones (a point)
        kind = ColumnKind.INTEGER if whole else ColumnKind.CONTINUOUS
        bins = [(0.0, 0.0), (4096.0, 6144.0), (6144.0, 8192.0)]
        domain = ColumnDomain("gain", kind, "int64" if whole else "float64", "dp", bins=bins,
                              bin_groups=[0, 1, 1], log_scale=True,
                              frequencies=[0.9, 0.05, 0.05, 0.0])
        enc = TableEncoder([domain])
        x = np.array([0, 1, 3000, 5000, 9000, 100000], dtype=np.float64)
        slots = enc.encode(pd.DataFrame({"gain": x})).slots[:, 0]
        assert slots.tolist() == [0, 0, 1, 1, 2, 2]
        back = enc.inverse_transform(enc.transform(pd.DataFrame({"gain": x})))["gain"]
        assert (back.to_numpy()[2:] >= 4096).all() and back.iloc[0] == 0


def test_a_run_of_points_grows_over_a_plausible_pair_at_its_ends() -> None:
    """Two thin values beyond a run's end, neither plausible alone but plausible together
    (Adult's education-num 15 and 16 at 3,000 rows), join the run; a pair of noise under one
    sigma of the pair does not."""
    from synthgen.privacy.grids import INT_LO, OCTAVE_EDGES, NumberGrid, number_bins

    grid = NumberGrid(OCTAVE_EDGES, True, True)
    sigma = 10.0
    noisy = np.zeros(grid.size)
    for value, count in {9: 900.0, 10: 700.0, 11: 400.0, 12: 8.0, 13: 9.0, 14: 3.0}.items():
        noisy[value - INT_LO] = count
    for value, count in {8: 4.0, 7: 6.0}.items():  # 10 < sigma sqrt(2): noise
        noisy[value - INT_LO] = count
    bins, _, _ = number_bins(grid, noisy, ColumnKind.INTEGER, sigma, public=False)
    assert (12.0, 12.0) in bins and (13.0, 13.0) in bins
    assert (14.0, 14.0) in bins  # offered beyond the grown run
    assert (8.0, 8.0) in bins and (7.0, 7.0) not in bins  # 8 offered, the noise pair not grown


def test_a_continuous_tail_past_the_kept_octaves_is_offered_to_the_one_way_table() -> None:
    """The transactions' amounts: octaves 8-256 kept, the 72 rows of 256-511 (p99 460) under
    the domain histogram's noise. The octave above the kept ones, and the one below, are
    offered as single bins with no mass (the one-way table alone keeps them, as cells of
    their own); the top kept octave is then not cut as a falling tail (the amounts stopped at
    about 200). An integer column is offered nothing (its tails are grids._grow_pairs' and
    the falling tail's)."""
    from synthgen.privacy.domains import ColumnDomain
    from synthgen.privacy.grids import OCTAVE_EDGES, NumberGrid, number_bins

    grid = NumberGrid(OCTAVE_EDGES, True, True)
    noisy = np.zeros(grid.size)
    for value, count in ((10.0, 230.0), (20.0, 860.0), (40.0, 900.0), (80.0, 600.0),
                         (160.0, 150.0), (300.0, 20.0)):
        octave = int(np.searchsorted(OCTAVE_EDGES, value, side="right") - 1)
        noisy[grid.point_keys + grid.bins + octave] = count  # fractions: two decimals
    bins, weights, groups = number_bins(grid, noisy, ColumnKind.CONTINUOUS, 28.6, public=False)
    offered = [b for b, w in zip(bins, weights, strict=True) if w == 0]
    assert offered == [(4.0, 8.0), (256.0, 512.0)]
    top = [w for b, w in zip(bins, weights, strict=True) if 128 <= b[0] < 256]
    assert len(top) == 8 and min(top) > 0  # not a falling tail cut at ~200
    domain = ColumnDomain("amount", ColumnKind.CONTINUOUS, "float64", "dp", bins=bins,
                          bin_groups=groups, log_scale=True,
                          frequencies=[*(np.array(weights) / sum(weights)), 0.0])
    lone = domain.lone_bins()
    assert [b for b, single in zip(bins, lone, strict=True) if single] == offered
    # the one-way table measures each offered bin as a cell of its own
    from synthgen.privacy.marginals import one_way_groups

    cells = one_way_groups(domain.frequencies, True, len(bins), 3000.0, 21.0, lone)
    for i in (0, len(bins) - 1):
        assert cells.count(cells[i]) == 1
    # an integer column: nothing offered
    bins, weights, _ = number_bins(grid, noisy, ColumnKind.INTEGER, 28.6, public=False)
    assert all(w > 0 for b, w in zip(bins, weights, strict=True) if b[0] >= 256)


def test_a_dp_date_range_ends_are_one_way_cells_of_their_own() -> None:
    """300 rows over 2015-2024: the window of years kept 2025 too (a year's domain deviation,
    34 rows, is above its 30 real rows), and grouped with 2022-2024 in the one-way table it
    got a share of their mass by its noisy domain count: 4-6 % of the dates outside the real
    range. The first and last years, and a year with no domain mass, are measured as cells of
    their own, kept only where the one-way test finds them; declared (public) bins are every
    one a cell anyway."""
    from synthgen.privacy.domains import ColumnDomain

    years = [pd.Timestamp(f"{y}-01-01").timestamp() for y in range(2015, 2027)]
    bins = list(zip(years[:-1], years[1:], strict=True))
    freqs = [0.12, 0.13, 0.0, 0.16, 0.17, 0.03, 0.1, 0.14, 0.01, 0.08, 0.06, 0.0]
    domain = ColumnDomain("when", ColumnKind.DATETIME, "object", "dp", bins=bins,
                          bin_groups=list(range(len(bins))), frequencies=freqs,
                          whole_days=True)
    assert domain.lone_bins() == [True, False, True, *[False] * 7, True]
    many = ColumnDomain("x", ColumnKind.CONTINUOUS, "float64", "dp",
                        bins=[(1.0, 1.5), (1.5, 2.0), (2.0, 4.0)], bin_groups=[0, 0, 1],
                        frequencies=[0.0, 0.5, 0.5, 0.0])
    assert many.lone_bins() == [False, False, False]  # a split key's empty piece is no cell


def test_sampled_dates_spread_inside_their_bins() -> None:
    """DP-SGD drives a date's tanh scalar to -1: every date of a year came out on its January
    1 (a 300-row table: 10 distinct dates in 300 rows). Sampling draws a date's position in
    its bin uniformly (from the sampling seed's generator): the dates spread over the year,
    and a seeded sample repeats. A continuous column's octave-wide bin is drawn too, its
    eight pieces of a kept octave are not."""
    import warnings

    from synthgen import Synthesizer
    from synthgen.models.trainer import TrainingConfig

    rng = np.random.default_rng(0)
    n = 300
    day = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3652, n), "D")
    df = pd.DataFrame({"when": day.strftime("%Y-%m-%d"), "seg": rng.choice(list("abc"), n)})
    config = TrainingConfig(epochs=2.0, d_hidden=(16,), g_hidden=(16,), noise_dim=8,
                            table_warmup_steps=20, table_rows=128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synth = Synthesizer(epsilon=1.0, seed=0, device="cpu", config=config).fit(df)
    assert synth.encoder is not None
    (scalar, span, which), = synth.encoder.drawn_positions
    assert (scalar, span) == (0, 0) and all(which[:len(synth.domains[0].bins)])
    out = synth.sample(400, seed=1)
    when = pd.to_datetime(out["when"].dropna().astype(str), format="%Y-%m-%d")
    assert when.nunique() > 200
    assert (when.dt.dayofyear == 1).mean() < 0.05
    assert out.equals(synth.sample(400, seed=1))


def test_only_wide_bins_draw_their_position() -> None:
    from synthgen.privacy.domains import ColumnDomain

    amount = ColumnDomain("amount", ColumnKind.CONTINUOUS, "float64", "dp",
                          bins=[(4.0, 8.0), (8.0, 8.7), (8.7, 9.5), (0.0, 0.0), (256.0, 512.0)],
                          bin_groups=[0, 1, 1, 2, 3], log_scale=True,
                          frequencies=[0.1, 0.3, 0.3, 0.2, 0.1, 0.0])
    count = ColumnDomain("n", ColumnKind.INTEGER, "int64", "dp", bins=[(0.0, 64.0)],
                         bin_groups=[0], log_scale=True, frequencies=[1.0, 0.0])
    seg = ColumnDomain("seg", ColumnKind.CATEGORICAL, "object", "dp", categories=["a"],
                       frequencies=[1.0, 0.0])
    encoder = TableEncoder([seg, count, amount])
    assert encoder.drawn_positions == [(1, 2, [True, False, False, False, True, False])]
