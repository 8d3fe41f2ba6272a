"""DP-measured marginals: the generator's second teacher.

After the domain histograms (:mod:`synthgen.privacy.domains`) every learned column is a one-hot
span of "slots" (released categories, Other, null; numeric bins, null). Three Gaussian releases
read the encoded table here, each one entry of the ledger:

1. **One-way tables** of every learned column at slot resolution (numeric columns: the encoder's
   bins, finer than the domain histogram's grid; bins too thin for this table's noise are
   measured together, :func:`one_way_groups`). Each row adds 1 to one cell of each table: L2
   sensitivity sqrt(columns).
2. **Pair selection** (as MST and AIM select, with Gaussian noise so that the accountant
   composes it): for every candidate pair of columns, the L1 distance between its two-way counts
   and what the released one-way tables and the DP row count give under independence
   (:func:`released_distance`: the expected table is public, so each score moves by at most 1
   when a row is added or removed, the vector of P scores by sqrt(P) in L2). A column's
   one-way noise makes all its pairs look a little related: what an independent pair would
   score under that noise (:func:`null_scores`, simulated from public figures) is subtracted.
   Which pairs to measure is post-processing of the noisy scores: a spanning tree and then the
   largest expected gains over the measurement's own error, as MST and AIM weigh candidates.
   (Scored against each pair's own margins instead, a score moved by up to 4: at 1,000 rows
   and epsilon 1 its noise, 850 rows, drowned every pair but the strongest, and the selection
   measured 40 pairs at random.)
3. **Two-way tables** of the selected pairs: L2 sensitivity sqrt(pairs).

Each noisy table is projected onto the probability simplex (Euclidean projection: the
least-squares fit under Gaussian noise, which also soft-thresholds the noise in empty cells):
post-processing. The trainer fits the generator's marginals to these targets.

Numeric columns enter pairs through at most ``PAIR_GROUPS`` groups of neighbouring bins of about
equal released mass (a public function of DP outputs), so a pair's table stays small.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from synthgen.privacy.grids import adjacent
from synthgen.privacy.ledger import LedgerEntry
from synthgen.privacy.release import Releaser
from synthgen.schema import ColumnKind

PAIR_GROUPS = 12
# L2 sensitivity of one pair's selection score (see released_distance)
SCORE_SENSITIVITY = 1.0
# The L1 error of a measured two-way table after projection, in noise deviations times the
# square root of its cells (:func:`_choose_pairs`): simulated on the 1,000-row coded table, a
# sparse 136-cell table (education by education-num) erred by 1.5-1.9 sigma sqrt(cells), dense
# ones by 1.8-2.4; a cost linear in the cells (0.4 sigma a cell) never let such a table in.
PAIR_ERROR_PER_ROOT_CELL = 2.0
# A pair's gain must clear this many of the selection noise's deviations as well (a pair that
# only noise lifts costs every measured table precision).
SELECTION_MARGIN = 0.5
# Draws of the one-way noise behind an independent pair's expected score (null_scores).
NULL_DRAWS = 4
# Pairs measured at most: a few per column is where the measured gain stops paying for the noise
# every extra table adds to all the others.
MAX_PAIRS_PER_COLUMN = 2.0
# The largest 2-way table measured (cells): bigger tables are mostly noise at these budgets.
MAX_PAIR_CELLS = 1024
# A one-way cell of a numeric column should expect this many noise deviations of rows (else
# neighbouring bins are measured together: one_way_groups).
ONE_WAY_CELL_SIGMAS = 4.0


@dataclass
class Marginal:
    """One measured table: the columns (indices into the encoder's learned columns), the slot ->
    cell map of each, and the projected DP answer (cells in C order, sums to 1)."""

    columns: list[int]
    groups: list[list[int]]
    target: list[float]


@dataclass
class MarginalRelease:
    marginals: list[Marginal] = field(default_factory=list)
    entries: list[LedgerEntry] = field(default_factory=list)
    # per learned column, the one-way table's mass per slot (a cell's mass spread over its
    # slots in proportion to the domain histograms' frequencies): post-processing
    frequencies: list[list[float]] = field(default_factory=list)


def project_to_simplex(y: np.ndarray) -> np.ndarray:
    """The Euclidean projection of ``y`` onto {p >= 0, sum p = 1} (Duchi et al. 2008), when
    that lowers every cell; when ``y``'s positive mass is short of 1 the projection would lift
    every cell, empty ones too, by the same amount, so the positive part is rescaled instead
    (a cell at or below zero stays empty: what makes a bin or category never generated)."""
    positive = np.clip(y, 0.0, None)
    if positive.sum() <= 1.0:
        total = positive.sum()
        return positive / total if total > 0 else np.full(len(y), 1.0 / len(y))
    u = np.sort(y)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.arange(1, len(u) + 1)
    rho = int(np.nonzero(u - css / k > 0)[0][-1])
    theta = css[rho] / (rho + 1)
    return np.clip(y - theta, 0.0, None)


def slot_groups(frequencies: list[float], numeric: bool, bins: int, limit: int) -> list[int]:
    """Slot -> cell of a column in a pair's table. Discrete columns keep every slot; numeric ones
    merge neighbouring bins into at most ``limit`` groups of about equal released mass (the slots
    after the bins, a number's codes and its null slot, stay groups of their own)."""
    width = len(frequencies)
    if not numeric or bins <= limit:
        return list(range(width))
    mass = np.asarray(frequencies[:bins], dtype=np.float64)
    cdf = np.cumsum(mass) / max(mass.sum(), 1e-12)
    # bin i joins group floor(limit * mass before its middle): contiguous, monotone
    middle = cdf - mass / max(mass.sum(), 1e-12) / 2
    group = np.minimum((middle * limit).astype(int), limit - 1)
    _, group = np.unique(group, return_inverse=True)
    return [*group.tolist(), *range(int(group.max()) + 1, int(group.max()) + 1 + width - bins)]


def one_way_groups(frequencies: list[float], numeric: bool, bins: int, rows: float,
                   sigma: float, points: Sequence[bool] | None = None) -> list[int]:
    """Slot -> cell of a column's one-way table: every slot, except where a numeric column's
    bins would expect less than ``ONE_WAY_CELL_SIGMAS`` noise deviations of rows each; then
    neighbouring bins are measured together in groups of about equal released mass (a public
    function of the domain histograms' frequencies and the DP row count). At 3,000 rows and
    epsilon 1 a unit bin of age held ~70 rows under noise of deviation ~65: the tail rule
    (significant_cells) read every bin past 45 as noise and cut the column there. A bin that is
    a single value (``points``: a code, an integer released as itself) stays a cell of its own,
    so the one-way test alone decides it: grouped with its neighbour, a code offered beyond a
    run of codes got a share of the group's mass from its noisy domain count (6 runs in 40 of
    the 1,000-row coded table generated such a code). The synthesizer passes as ``points``
    every bin meant to be a cell of its own (``ColumnDomain.lone_bins``: single values, bins
    offered with no domain mass, a DP date range's first and last years)."""
    width = len(frequencies)
    if not numeric or bins <= 1:
        return list(range(width))
    mass = rows * float(np.sum(np.asarray(frequencies[:bins], dtype=np.float64)))
    limit = int(mass // (ONE_WAY_CELL_SIGMAS * max(sigma, 1e-12)))
    grouped = slot_groups(frequencies, True, bins, max(limit, 1))
    if points is None or not any(points):
        return grouped
    # Neighbouring single values with domain mass, each too thin for a cell of its own, are
    # measured together (as thin bins are): at 3,000 rows Adult's education-num 1..5 (146
    # rows, 29-55 a value) were each under noise of deviation 44 and trimmed, the column
    # starting at 8 or 9; together they are three deviations. A value offered with no domain
    # mass (beyond a run) stays a cell of its own: the one-way test alone decides it.
    need = ONE_WAY_CELL_SIGMAS * max(sigma, 1e-12)
    per_bin = rows * np.asarray(frequencies[:bins], dtype=np.float64)
    thin = [bool(points[i]) and 0 < per_bin[i] < need for i in range(bins)]
    out, cell, held = [], 0, 0.0
    for i in range(bins):
        joins = i > 0 and thin[i] and thin[i - 1] and held < need
        if i > 0 and not joins and (grouped[i] != grouped[i - 1] or points[i] or points[i - 1]):
            cell, held = cell + 1, 0.0
        held += float(per_bin[i])
        out.append(cell)
    return [*out, *range(cell + 1, cell + 1 + width - bins)]


def spread(target: list[float], groups: list[int], frequencies: list[float]) -> list[float]:
    """Per slot, its cell's mass in proportion to the slot's domain frequency within the cell
    (evenly where the cell's slots have none)."""
    g = np.asarray(groups, dtype=np.int64)
    w = np.clip(np.asarray(frequencies, dtype=np.float64), 0.0, None)
    total = np.bincount(g, weights=w, minlength=len(target))
    count = np.bincount(g, minlength=len(target)).astype(np.float64)
    share = np.where(total[g] > 0, w / np.where(total[g] > 0, total[g], 1.0), 1.0 / count[g])
    return (np.asarray(target, dtype=np.float64)[g] * share).tolist()


def _cells(slots: np.ndarray, groups: list[list[int]], columns: tuple[int, ...]) -> np.ndarray:
    """Each row's cell in the (columns) table, as a flat C-order index."""
    index = np.zeros(slots.shape[0], dtype=np.int64)
    for c in columns:
        g = np.asarray(groups[c], dtype=np.int64)
        index = index * (int(g.max()) + 1) + g[slots[:, c]]
    return index


def measure_marginals(
    slots: np.ndarray,
    kinds: list[ColumnKind],
    frequencies: list[list[float]],
    bins: list[int],
    rows_estimate: float,
    multipliers: tuple[float, float, float],
    release: Releaser | np.random.Generator,
    points: Sequence[Sequence[bool] | None] | None = None,
    public: Sequence[bool] | None = None,
    rows_sd: float | None = None,
    single: Sequence[Sequence[int] | None] | None = None,
) -> MarginalRelease:
    """Measure the one-way tables, select pairs, measure their two-way tables (see the module
    docstring). ``points`` says, per numeric column, which of its bins are single values;
    ``public``, which numeric columns have declared bounds: each of their public bins is a cell
    of its own, not grouped by the domain histograms' mass (with nothing to discover the domain
    histograms get a tenth of the budget, and their counts are mostly noise), and their tails
    are not trimmed (the declared bounds are the range: the thin cells of Adult's age declared
    17-90 read as noise and the column stopped at 58, with a tenth of the real rows older).

    ``slots`` is the encoded table (rows x learned columns: the hot slot of each),
    ``frequencies`` the domain histograms' released frequencies over each column's slots (they
    size the numeric columns' groups), ``bins`` each numeric column's bin count (0 for discrete
    ones), ``rows_estimate`` a DP estimate of the row count. ``multipliers`` are the noise
    multipliers (per unit of L2 sensitivity) of the three releases: a release of T tables adds
    noise of standard deviation ``multiplier * sqrt(T)`` to each cell. ``release`` is the fit's
    releaser (a bare generator: one of its own, outside a fit); :attr:`MarginalRelease.entries`
    are the entries it recorded. ``rows_sd`` is the noise deviation of ``rows_estimate``:
    given, the row count the tables are projected with pools it with the one-way tables' own
    totals (:func:`pooled_rows`). ``single`` says, per numeric column, which of its bins hold a
    single value (2: a point, released as itself; 1: an integer column's unit piece; 0: else):
    where a one-way cell is such a word on values, a thin code at the end of a run is read with
    the domain histograms' word on it (:func:`tail_blocks`, :func:`_coded_cells`); not given,
    no cell is.
    """
    if not isinstance(release, Releaser):
        release = Releaser.scratch(release)
    recorded = len(release.ledger.entries)
    out = _measure_all(slots, kinds, frequencies, bins, rows_estimate, multipliers, release,
                       points, public, rows_sd, single)
    out.entries = release.ledger.entries[recorded:]
    return out


def _measure_all(
    slots: np.ndarray, kinds: list[ColumnKind], frequencies: list[list[float]], bins: list[int],
    rows_estimate: float, multipliers: tuple[float, float, float], release: Releaser,
    points: Sequence[Sequence[bool] | None] | None, public: Sequence[bool] | None = None,
    rows_sd: float | None = None, single: Sequence[Sequence[int] | None] | None = None,
) -> MarginalRelease:
    one_way_multiplier, select_multiplier, two_way_multiplier = multipliers
    columns = len(kinds)
    numeric = [k not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN) for k in kinds]
    out = MarginalRelease()
    n = max(rows_estimate, 1.0)

    # 1. every column's one-way table at slot resolution (numeric bins grouped where too thin)
    one_sigma = one_way_multiplier * math.sqrt(columns)
    fixed = [bool(p) and num for p, num in zip(public or [False] * columns, numeric,
                                                strict=True)]
    frequencies = [[*([1.0] * b), *f[b:]] if even else f
                   for f, b, even in zip(frequencies, bins, fixed, strict=True)]
    one_groups = [list(range(len(f))) if even else one_way_groups(f, num, b, n, one_sigma, p)
                  for f, num, b, p, even in zip(frequencies, numeric, bins,
                                                points or [None] * columns, fixed, strict=True)]
    # a numeric column's bin cells the domain histograms gave mass to (see significant_cells);
    # its codes' and null cells come after them, outside any range
    evidence = [np.bincount(g, weights=(np.asarray(f) > 0).astype(np.float64)) > 0
                if num and not even else None
                for f, g, num, even in zip(frequencies, one_groups, numeric, fixed, strict=True)]
    bin_cells = [max(g[:b], default=-1) + 1 for g, b in zip(one_groups, bins, strict=True)]
    # cells made only of single values (a run of integer codes, see tail_blocks)
    coded = [_coded_cells(g, b, u) if e is not None else None
             for g, b, u, e in zip(one_groups, bins, single or [None] * columns, evidence,
                                   strict=True)]
    tables = [(c,) for c in range(columns)]
    noisy_one = _release(
        release, "gaussian_one_way_marginals",
        f"the one-way table of each learned column ({columns}) at the encoder's resolution",
        slots, one_groups, tables, one_way_multiplier, {})
    if rows_sd is not None:
        n = pooled_rows(n, rows_sd, noisy_one, one_sigma)
    one_way = _project(noisy_one, one_groups, tables, n, one_sigma, evidence, bin_cells,
                       coded)
    out.marginals += one_way
    out.frequencies = [spread(m.target, g, f) for m, g, f
                       in zip(one_way, one_groups, frequencies, strict=True)]
    released = [np.asarray(f) for f in out.frequencies]

    # 2. which pairs: noisy L1 distance from independence under the released one-way tables
    pair_groups = [slot_groups(p.tolist(), num, b, PAIR_GROUPS)
                   for p, num, b in zip(released, numeric, bins, strict=True)]
    candidates = [
        (a, b) for a, b in itertools.combinations(range(columns), 2)
        if _size(pair_groups, (a, b)) <= MAX_PAIR_CELLS
    ]
    if not candidates:
        return out
    margins = [np.bincount(g, weights=p, minlength=max(g) + 1)
               for g, p in zip(pair_groups, released, strict=True)]
    scores = np.array([released_distance(slots, pair_groups, margins, n, pair)
                       for pair in candidates])
    select_sigma = select_multiplier * SCORE_SENSITIVITY * math.sqrt(len(candidates))
    (noisy,) = release.gaussian(
        "gaussian_pair_selection",
        f"for each of {len(candidates)} column pairs, the L1 distance of its two-way counts "
        "from the released one-way tables' product",
        [scores], noise_multiplier=select_multiplier,
        sensitivity=SCORE_SENSITIVITY * math.sqrt(len(candidates)),
        params={"tables": len(candidates), "candidates": len(candidates)})
    # post-processing: what an independent pair scores under the one-way noise, and a margin
    # for the selection's own noise, come off before the pairs are weighed
    null = null_scores(one_way, one_groups, frequencies, pair_groups, candidates, n,
                       one_sigma)
    excess = cast(np.ndarray, noisy) - null
    gains = excess - SELECTION_MARGIN * select_sigma
    selected = _choose_pairs(candidates, gains, pair_groups, columns, two_way_multiplier)

    # 3. the selected pairs' two-way tables
    if selected:
        out.marginals += _measure(
            release, "gaussian_two_way_marginals",
            f"the two-way tables of {len(selected)} column pairs", slots, pair_groups,
            selected, n, two_way_multiplier, {"pairs": [list(p) for p in selected]})
    return out


def _measure(
    release: Releaser, mechanism: str, reads: str, slots: np.ndarray, groups: list[list[int]],
    tables: Sequence[tuple[int, ...]], n: float, multiplier: float, params: dict[str, Any],
    sparse: Sequence[np.ndarray | None] | None = None,
) -> list[Marginal]:
    """One Gaussian release of several tables (each row adds 1 to one cell of each: L2
    sensitivity sqrt(tables)), each projected onto the simplex. In a ``sparse`` table (a
    numeric column's bins; the entry is which cells the domain histograms gave mass) the cells
    beyond the outermost significant ones (see :func:`significant_cells`) count as empty: a
    generated value in a noise-only bin at the end of the range is an outlier the real table
    never had."""
    noisy = _release(release, mechanism, reads, slots, groups, tables, multiplier, params)
    return _project(noisy, groups, tables, n, multiplier * math.sqrt(len(tables)), sparse)


def _release(
    release: Releaser, mechanism: str, reads: str, slots: np.ndarray, groups: list[list[int]],
    tables: Sequence[tuple[int, ...]], multiplier: float, params: dict[str, Any],
) -> list[np.ndarray]:
    """The noisy counts of several tables, one Gaussian release (L2 sensitivity
    sqrt(tables))."""
    counts = [np.bincount(_cells(slots, groups, cols), minlength=_size(groups, cols))
              for cols in tables]
    released = release.gaussian(mechanism, reads, counts, noise_multiplier=multiplier,
                                sensitivity=math.sqrt(len(tables)),
                                params={"tables": len(tables), **params})
    return [cast(np.ndarray, r) for r in released]


def _project(
    released: list[np.ndarray], groups: list[list[int]], tables: Sequence[tuple[int, ...]],
    n: float, sigma: float, sparse: Sequence[np.ndarray | None] | None = None,
    bin_cells: Sequence[int] | None = None, coded: Sequence[np.ndarray | None] | None = None,
) -> list[Marginal]:
    """Each noisy table trimmed to its range (``sparse``, see :func:`_measure`; the range of
    its first ``bin_cells`` cells, default all; ``coded``, its cells of single values, see
    :func:`tail_blocks`) and projected onto the simplex at ``n`` rows: post-processing."""
    out = []
    for i, cols in enumerate(tables):
        size = _size(groups, cols)
        noisy = released[i]
        evidence = sparse[i] if sparse is not None else None
        if evidence is not None:
            # zero the tails beyond the range (the outermost significant cells, extended over
            # a significant block of thin cells beside them); inside it a cell keeps its noisy
            # count, clipped at 0 by the projection. The range is the bins' cells': a
            # number's code and null cells, after them, never stretch it, and keep their
            # count where the domain histograms gave them mass (a column's significant null
            # cell, the last, made every bin cell inside: the CRM's score, 15 % empty, kept
            # noise in its octave 16-32 offered beyond the real maximum 10, and 6 % of its
            # values over it)
            bins = bin_cells[i] if bin_cells is not None else size
            kept = np.flatnonzero(significant_cells(noisy[:bins], sigma, evidence[:bins]))
            if kept.size >= 2:  # else too little signal to tell a range: the domain's bins
                codes = coded[i] if coded is not None else None
                first, last = tail_blocks(noisy[:bins], sigma, evidence[:bins],
                                          int(kept[0]), int(kept[-1]),
                                          codes[:bins] if codes is not None else None)
                inside = evidence.copy()
                inside[:bins] = False
                inside[first : last + 1] = True
                noisy = np.where(inside, noisy, 0.0)
        out.append(Marginal(columns=list(cols), groups=[groups[c] for c in cols],
                            target=project_to_simplex(noisy / n).tolist()))
    return out


# A block of cells beside the range extends it when its noisy sum is this many of its sigmas.
TAIL_BLOCK_SIGMAS = 2.0
# ... or this many, when the block ends on a cell of single values the domain histograms gave
# mass (a run of integer codes: the domain vouched for the value, see tail_blocks).
TAIL_CODED_SIGMAS = 1.0
# ... and this many when it ends on a code the domain gave no mass, past a tapering run (a
# noise-only value passes 1.2 % of the time; significant_cells asks 2.5 beside any range, 0.6 %:
# Adult's education-num 4, 55 rows offered beyond a run at 3,000 rows, stood 2.39 sigma in one
# seed and was cut, the 1st percentile 6; at 2, a noise-only FAMSIZE -3 of 2.12 sigma came in).
TAIL_UNVOUCHED_SIGMAS = 2.25


def _coded_cells(groups: list[int], bins: int, single: Sequence[int] | None) -> np.ndarray:
    """Per one-way cell, the number of values in it when the domain histograms' mass in it is a
    word on single values (else 0). ``single`` says per bin: 2, a value released as itself (a
    point); 1, an integer's unit piece; 0, a wider bin. A cell is such a word when it holds only
    points, or when it is one unit piece alone (its domain mass is that value's count: Adult's
    education-num 4 beside the points 6 and 7 of its octave). A cell of several unit pieces
    shares an octave's count among them (education-num 18-23) and is not one. Public (the
    domain's bins), post-processing."""
    g = np.asarray(groups[:bins], dtype=np.int64)
    size = max(groups) + 1
    if single is None or not bins:
        return np.zeros(size, dtype=np.int64)
    kind = np.asarray(single[:bins], dtype=np.int64)
    count = np.bincount(g, minlength=size)
    points = np.bincount(g, weights=(kind == 2).astype(np.float64), minlength=size)
    units = np.bincount(g, weights=(kind >= 1).astype(np.float64), minlength=size)
    coded = ((count > 0) & (points == count)) | ((count == 1) & (units == 1))
    return np.where(coded, count, 0)


def tail_blocks(noisy: np.ndarray, sigma: float, evidence: np.ndarray, first: int,
                last: int, coded: np.ndarray | None = None) -> tuple[int, int]:
    """The range [first, last] of significant cells, extended at each end over the block of
    cells beyond it (cells the domain histograms gave mass, ``evidence``) whose noisy sum
    stands highest above its noise, when that is over ``TAIL_BLOCK_SIGMAS``: a tail spread
    thinly over several cells, none significant alone, is kept where it is significant
    together. At 3,000 rows and epsilon 1 (one-way deviation ~44 rows) Adult's hours-per-week
    over 51 (300 rows in six cells of 5-126) and education-num under 9 (349 rows in three
    cells) were cut, the 99th percentile of hours at 50 (real 80), education-num's 1st at 9
    (real 3). The block maximising sum / sqrt(cells) stops where the real mass ends: a
    noise-only cell beyond it lowers the score on average. The block is contiguous: a cell
    without domain mass (a value offered beyond a run) ends it, so two noise-only cells past
    such a gap never extend the range (education-num 18-31 came out in 3 % of the rows in one
    run when they did).

    Cells of single values (``coded``: per cell the number of values it holds, 0 where it is
    not such a cell; a run of integer codes such as education-num 1-16) are
    read with what the domain histograms said of each value: a block that ends on a code
    the domain gave mass needs ``TAIL_CODED_SIGMAS`` only, and a code without domain mass
    (the value offered beyond the run, or one filled inside it) joins the block, needing
    ``TAIL_UNVOUCHED_SIGMAS`` when the block ends on it (at two, a noise-only FAMSIZE -3 came
    out in 9 % of one run's rows), and the block goes on past it only to a
    code with domain mass. At 3,000 rows a thin code at a run's end is about one one-way
    deviation (Adult's education-num 15 and 16: 47 and 52 rows under noise of deviation 41),
    and the run was cut at 14 or began at 6 or 7 in 3 of 8 seeds (1st/99th percentiles 6 and
    14 for a real 3 and 16). A noise-only code past the run needs the domain's plausibility
    test (one of its sigmas) and then this one; two codes without domain mass in a row end
    the block, so the noise-only cells past the value offered beyond a run (education-num
    18-31, above) stay out. The rule holds beyond a thin edge only (a tapering run: the edge
    code holds under ``ONE_WAY_CELL_SIGMAS`` deviations a value); beyond a thick one (a code
    column's 1 and 2 of 300-700 rows each) the domain's word is a plausible neighbour at best,
    and the 1,000-row coded table without a schema generated sex 3, Y 3 or REGION 5-7 in 2-8 %
    of the rows when it held there too. It holds only where the plain rule found no block.
    Post-processing of the noisy counts."""
    def extend(cells: np.ndarray, codes: np.ndarray | None) -> int:
        if not cells.size:
            return -1
        sums = np.cumsum(noisy[cells])
        score = sums / (sigma * np.sqrt(np.arange(1, cells.size + 1)))
        need = np.full(cells.size, TAIL_BLOCK_SIGMAS)
        if codes is not None:
            need[codes[cells] & evidence[cells]] = TAIL_CODED_SIGMAS
            need[codes[cells] & ~evidence[cells]] = TAIL_UNVOUCHED_SIGMAS
        best = int(np.argmax(score - need))
        return int(cells[best]) if score[best] > need[best] else -1

    def run(cells: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
        # up to the first cell without domain mass (codes: see above)
        for k, c in enumerate(cells):
            if evidence[c]:
                continue
            if codes is None or not codes[c]:
                return cells[:k]
            follows = k + 1 < cells.size and evidence[cells[k + 1]] and codes[cells[k + 1]]
            if not follows:
                return cells[:k + 1]
        return cells

    def tapering(edge: int) -> np.ndarray | None:
        # the rule for codes holds past a thin edge code only (under ONE_WAY_CELL_SIGMAS a value)
        if coded is None or coded[edge] <= 0:
            return None
        if noisy[edge] / coded[edge] >= ONE_WAY_CELL_SIGMAS * sigma:
            return None
        return np.asarray(coded) > 0

    def block(cells: np.ndarray, codes: np.ndarray | None) -> int:
        # the plain rule first; the rule for codes only where it found no block
        plain = extend(run(cells, None), None)
        return plain if plain >= 0 or codes is None else extend(run(cells, codes), codes)

    index = np.arange(len(noisy))
    up = block(index[last + 1:], tapering(last))
    down = block(index[:first][::-1], tapering(first))
    return (down if down >= 0 else first), (up if up >= 0 else last)


def pooled_rows(rows: float, rows_sd: float, one_way: list[np.ndarray], sigma: float) -> float:
    """The row count the tables are projected with: the DP row count pooled, by inverse
    variance, with each one-way table's noisy total (every row adds 1 to one cell of each
    table, so a table of c cells is the row count plus noise of deviation sigma sqrt(c)).

    A column whose mass is mostly one cell (a money column's zero) gets the rest of its rows
    as the projection's total less that cell: with the DP row count alone (deviation 146 rows
    at 3,000 rows when the domain histograms take a tenth of epsilon) Adult's capital-loss
    declared 0-4,356 came out non-zero in 5.8-9.6 % of rows for a real 5.1 %; pooled with 15
    tables' totals the deviation is about 30 rows. Post-processing of DP outputs."""
    weights = [1.0 / rows_sd**2] + [1.0 / (sigma**2 * len(t)) for t in one_way]
    totals = [rows] + [float(np.sum(t)) for t in one_way]
    return max(float(np.dot(weights, totals) / np.sum(weights)), 1.0)


def significant_cells(noisy: np.ndarray, sigma: float,
                      evidence: np.ndarray | None = None) -> np.ndarray:
    """Cells over two sigma that have a neighbour over two sigma, or are over three sigma
    themselves (post-processing; the same neighbour rule as the domain's grid bins). A cell
    the domain histograms gave no mass (``evidence`` False: a value offered only because it
    lies beyond a run of released ones, see grids.number_bins) needs two and a half sigma
    beside such a neighbour: a noise-only value then passes 0.6 % of the time (2.3 % at two
    sigma: on the 1,000-row coded table 4 runs in 40 generated a code the table lacks), and
    Adult's education-num 1 (51 rows, three sigma at epsilon 3) is found about two runs in
    three."""
    over = noisy > 2 * sigma
    supported = over if evidence is None else np.where(evidence, over, noisy > 2.5 * sigma)
    return (supported & adjacent(over)) | (noisy > 3 * sigma)


def released_distance(slots: np.ndarray, groups: list[list[int]], margins: list[np.ndarray],
                      rows: float, pair: tuple[int, int]) -> float:
    """sum |N_ab - n p_a p_b| over the pair's cells, where p_a and p_b are the released
    one-way tables (grouped as the pair's table is) and n the DP row count: how far its two-way
    counts are from what the releases so far give under independence. The expected table is
    public, so adding or removing a row moves one count by 1 and the score by at most 1
    (``SCORE_SENSITIVITY``)."""
    a, b = pair
    shape = (max(groups[a]) + 1, max(groups[b]) + 1)
    counts = np.bincount(_cells(slots, groups, pair), minlength=shape[0] * shape[1])
    expected = rows * np.outer(margins[a], margins[b])
    return float(np.abs(counts.reshape(shape) - expected).sum())


def null_scores(one_way: list[Marginal], one_groups: list[list[int]],
                frequencies: list[list[float]], pair_groups: list[list[int]],
                candidates: list[tuple[int, int]], rows: float, sigma: float) -> np.ndarray:
    """Per candidate pair, about what :func:`released_distance` gives for an independent pair:
    the released one-way tables taken as the truth, the expected score of a table of ``rows``
    rows drawn under independence against one-way tables released again with the one-way
    noise (``sigma``), over ``NULL_DRAWS`` draws. Post-processing of public figures, from a
    generator of its own (no secret seed, no row): a column whose one-way table is noisy (many
    cells) otherwise makes all its pairs look related."""
    rng = np.random.default_rng(0)
    truth = [np.bincount(g, weights=np.asarray(spread(m.target, o, f)), minlength=max(g) + 1)
             for m, o, f, g in zip(one_way, one_groups, frequencies, pair_groups, strict=True)]
    draws = [[np.bincount(g, weights=np.asarray(spread(project_to_simplex(
        np.asarray(m.target) + rng.normal(0.0, sigma / rows, len(m.target))).tolist(), o, f)),
        minlength=max(g) + 1) for _ in range(NULL_DRAWS)]
        for m, o, f, g in zip(one_way, one_groups, frequencies, pair_groups, strict=True)]
    out = np.zeros(len(candidates))
    for i, (a, b) in enumerate(candidates):
        expected = rows * np.outer(truth[a], truth[b])
        out[i] = np.mean([np.abs(rng.poisson(expected) - rows * np.outer(draws[a][d],
                                                                          draws[b][d])).sum()
                          for d in range(NULL_DRAWS)])
    return out


def _size(groups: list[list[int]], cols: tuple[int, ...]) -> int:
    return int(np.prod([max(groups[c]) + 1 for c in cols]))


def _choose_pairs(
    candidates: list[tuple[int, int]],
    noisy_scores: np.ndarray,
    groups: list[list[int]],
    columns: int,
    measure_multiplier: float,
) -> list[tuple[int, int]]:
    """The pairs to measure (post-processing of the noisy scores).

    A pair's expected gain is its noisy (and debiased: see _measure_all) L1 distance from
    independence minus the L1 error its measurement would carry after projection (about
    ``PAIR_ERROR_PER_ROOT_CELL`` sigma sqrt(cells): the projection zeroes most noise-only
    cells, so a sparse table errs far less than sigma a cell). First a maximum spanning tree
    over the gains (as MST does: every column tied to its most telling partner), then further
    pairs by gain, while the gain stays positive; sigma grows with the number of tables, so
    each count is checked with its own sigma.
    """
    limit = max(1, int(MAX_PAIRS_PER_COLUMN * columns))
    sizes = np.array([_size(groups, c) for c in candidates], dtype=np.float64)
    best: list[tuple[int, int]] = []
    for k in range(1, min(limit, len(candidates)) + 1):
        sigma = measure_multiplier * math.sqrt(k)
        gains = noisy_scores - PAIR_ERROR_PER_ROOT_CELL * sigma * np.sqrt(sizes)
        chosen = _tree_then_best(candidates, gains, columns, k)
        if len(chosen) < k or min(gains[candidates.index(p)] for p in chosen) <= 0:
            break
        best = chosen
    return best


def _tree_then_best(candidates: list[tuple[int, int]], gains: np.ndarray, columns: int,
                    k: int) -> list[tuple[int, int]]:
    """k pairs: the edges of a maximum spanning forest by gain (Kruskal), then the other
    candidates by gain."""
    parent = list(range(columns))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = [int(i) for i in np.argsort(-gains) if gains[i] > 0]
    tree, rest = [], []
    for i in order:
        a, b = candidates[i]
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[ra] = rb
            tree.append(candidates[i])
        else:
            rest.append(candidates[i])
    return (tree + rest)[:k]
