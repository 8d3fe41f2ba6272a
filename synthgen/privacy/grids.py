"""Public key spaces for numbers and dates, and reading bins off their noisy counts.

Every edge here is fixed before any data is seen: octaves of |x|, calendar years, one key per
integer in [INT_LO, INT_HI), or 32 equal bins between declared bounds. What the noisy counts of
these keys say (which are significant, how they become encoding bins, how much mass a class of
values has) is post-processing.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from synthgen.schema import ColumnKind, ColumnSpec

# Post-processing: a numeric grid key is kept when its noisy count clears a threshold set so that
# a column gets a spurious (noise-only) key with probability FALSE_BIN_RATE; a kept octave with
# no kept neighbour must clear twice that (noise rarely lands next to real mass). The same rate
# decides whether a column's null count, or a class of values (booleans, dates), is real.
FALSE_BIN_RATE = 0.01
MAX_NUMERIC_BINS = 64
# Encoding bins per measured octave (the DP 1-way marginal at this resolution is measured with
# the other marginals, see privacy/marginals.py): the generator learns shapes inside an octave
# from DP counts, not only from the discriminator.
SUB_BINS = 8
INTEGER_PIECES = 16
# Octaves up to this edge are cut into unit pieces when the table is large enough (each would
# expect two sigma of mass): the round values people report (40 hours, 50 hours, age 30) are
# then slots measured by the one-way marginal, not a position inside a wider piece that DP-SGD
# alone must learn (40 came out as 41 a third of the time).
UNIT_PIECES_BELOW = 64.0
# Integers with a key of their own: codes and counts come out exactly, at no discovery cost.
INT_LO, INT_HI = -16, 32

_OCTAVES = 2.0 ** np.arange(-10, 64)
OCTAVE_EDGES = np.concatenate([-_OCTAVES[::-1], _OCTAVES])  # public, data-independent
_YEARS = np.arange(1678, 2263)
YEAR_EDGES = (
    pd.to_datetime([f"{y}-01-01" for y in _YEARS])
    .to_numpy("datetime64[s]")
    .astype(np.float64)
)


@dataclass(frozen=True)
class NumberGrid:
    """A public key space for numbers (or dates as seconds): bins ``[edges[i], edges[i+1])``;
    with ``points``, integers in [INT_LO, INT_HI) have keys of their own and the bins come twice,
    for whole numbers and for fractions (so an integer column's kind is a count, too)."""

    edges: np.ndarray
    points: bool
    log_scale: bool
    timed: bool = False  # dates: the bins come twice, whole days and times of day

    def untimed(self) -> NumberGrid:
        return NumberGrid(self.edges, self.points, self.log_scale)

    @property
    def bins(self) -> int:
        return len(self.edges) - 1

    @property
    def point_keys(self) -> int:
        return INT_HI - INT_LO if self.points else 0

    @property
    def size(self) -> int:
        return self.point_keys + self.bins * (2 if self.points or self.timed else 1)

    def keys(self, x: np.ndarray) -> np.ndarray:
        """Key per (non-null) value."""
        if not len(x):  # most columns have no value of one class or the other: skip the passes
            return np.zeros(0, dtype=np.int64)
        inner = np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, self.bins - 1)
        if self.timed:
            return inner + np.where(np.mod(x, 86400.0) != 0, self.bins, 0)
        if not self.points:
            return inner
        with np.errstate(invalid="ignore"):
            whole = x == np.floor(x)
        point = whole & (x >= INT_LO) & (x < INT_HI)
        point_key = (np.where(point, x, INT_LO) - INT_LO).astype(np.int64)
        return np.where(point, point_key,
                        self.point_keys + inner + np.where(whole, 0, self.bins))


def number_grid(spec: ColumnSpec) -> NumberGrid:
    """Octaves (and points), or 32 equal bins between declared bounds. Between bounds the
    whole numbers in [INT_LO, INT_HI) have keys of their own too, so a value that holds many
    rows (a money column's zero) is an atom rather than the bottom of a bin it shares with
    values that never occur (Adult's capital-loss declared 0-4,356 came out with 1-27 dollar
    losses in 27 % of the rows); an integer column's bins have whole-number edges (the last
    one holds the upper bound), so decoding never lands between two whole numbers."""
    if spec.lower is not None and spec.upper is not None:
        lo, hi = float(spec.lower), float(spec.upper)
        if spec.kind is ColumnKind.INTEGER and math.ceil(lo) < math.floor(hi):
            edges = np.unique(np.round(np.linspace(math.ceil(lo), math.floor(hi) + 1, 33)))
            return NumberGrid(edges, True, False)
        return NumberGrid(np.linspace(lo, hi, 33), True, False)
    return NumberGrid(OCTAVE_EDGES, True, True)


def date_grid(spec: ColumnSpec) -> NumberGrid:
    if spec.kind is ColumnKind.DATETIME and spec.lower is not None and spec.upper is not None:
        return NumberGrid(np.linspace(float(spec.lower), float(spec.upper), 33), False, False,
                          timed=True)
    return NumberGrid(YEAR_EDGES, False, False, timed=True)


def significance_threshold(sigma: float, keys: int) -> float:
    return sigma * _false_bin_quantile(max(keys, 1))


@functools.lru_cache(maxsize=256)
def _false_bin_quantile(keys: int) -> float:
    # a handful of key counts recur in every column; scipy's isf costs ~0.1 ms a call
    return float(norm.isf(FALSE_BIN_RATE / keys))


def number_bins(
    grid: NumberGrid, noisy: np.ndarray, kind: ColumnKind, sigma: float, public: bool,
    fallback: bool = True, total: tuple[float, float] | None = None,
) -> tuple[list[tuple[float, float]], list[float], list[int]]:
    """Encoding bins from a number grid's noisy counts: (bins, weights, measured group). With
    ``fallback``, a column with nothing significant keeps its largest key (a declared column
    is never dropped). ``total`` is a DP estimate of the column's numbers and its standard
    deviation (the row count less the null and code counts): where it exceeds what the kept
    keys hold by a significant margin, the rest lies in keys each too thin to clear the
    threshold, and the window of octaves that holds most of it is kept too (see
    :func:`_rest_window`)."""
    nb = grid.bins
    edges = grid.edges
    if public:  # public bounds: every bin is kept; a whole number holding a significant
        # share of the rows is an atom of its own (capital-loss's zero), the rest of its bin
        # stays a bin
        keep = np.ones(nb, bool)
        p = grid.point_keys
        agg = noisy[p:p + nb].astype(np.float64)
        if grid.points and kind is not ColumnKind.INTEGER:
            agg += noisy[p + nb:]
        points = np.zeros(p, bool)
        offered = np.zeros(p, bool)
        if p:
            values = np.arange(INT_LO, INT_HI)
            within = (values >= edges[0]) & (values <= edges[-1])
            points = within & (noisy[:p] > significance_threshold(sigma, grid.size))
            owner = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, nb - 1)
            folded = within & ~points
            np.add.at(agg, owner[folded], noisy[:p][folded])
    else:
        t = significance_threshold(sigma, grid.size)
        p = grid.point_keys
        pts = noisy[:p]
        agg = noisy[p:p + nb].astype(np.float64)  # whole numbers outside the point range
        nkeys = np.ones(nb)
        if grid.points:
            inside = (edges[:-1] >= INT_LO) & (edges[1:] <= INT_HI)  # ints there are points
            agg[inside], nkeys[inside] = 0.0, 0.0
            if kind is not ColumnKind.INTEGER:
                agg += noisy[p + nb:]
                nkeys += 1
        # A run of released points extends over neighbours that are plausible (over one
        # sigma), and then by one more value at each end, offered with no mass of its own: the
        # one-way marginal measures it again with about three times less noise and keeps it
        # only if significant there (privacy/marginals.significant_cells: two and a half of its
        # sigmas beside the run), so the domain offers the range's edges and the one-way table
        # decides them. The extremes matter: a code column's 1..16 read as 2..16 shifts every
        # comparison made in bins of the column's range (Adult's education-num at epsilon 3:
        # SDMetrics quality 0.937 -> 0.968 when its 51 rows at 1 are found). Without the extra
        # value they were found in about half the runs; with it, about two in three, and a
        # noise-only value beyond a run passes the one-way test 0.6 % of the time.
        # Only a run of released points is a range to extend: a single one (a money column's
        # zero, a constant) may be the one-way table's only significant cell, and then nothing
        # trims its noise-only neighbours (capital-gain came out as -2 at 10,000 rows).
        points = pts > t
        offered = np.zeros_like(points)
        if points.sum() >= 2:
            points = _grow_pairs(_grow(points, pts > sigma), pts, sigma)
            offered = _beyond(points)
            points |= offered
        # an octave's points that are not significant alone are measured together
        owner = np.searchsorted(edges, np.arange(INT_LO, INT_HI), side="right") - 1
        np.add.at(agg, owner[~points], pts[~points])
        np.add.at(nkeys, owner[~points], 1.0)
        scaled = t * np.sqrt(np.maximum(nkeys, 1.0))
        keep = (nkeys > 0) & (agg > scaled)
        occupied = keep.copy()
        occupied[owner[points]] = True
        keep &= adjacent(occupied) | (agg > 2 * scaled) | np.isin(np.arange(nb), owner[points])
        # Octaves of whole numbers in the point range that hold a run of released points, or
        # neighbour such octaves, hold that run's neighbours: plausible is enough there, as for
        # a grown point (the one-way marginal measures each of their values as a unit piece and
        # zeroes a noise-only tail). Adult's hours-per-week at epsilon 3 had 1..11 (747 rows,
        # 10 alone 278) folded into 12: 8..11 and 13 together fell short of four sigma of
        # their sum. Elsewhere a neighbour needs two sigma.
        spread = sigma * np.sqrt(np.maximum(nkeys, 1.0))
        plausible = (nkeys > 0) & (agg > 2 * spread)
        if points.sum() >= 2:
            point_range = (nkeys > 0) & (edges[:-1] >= INT_LO) & (edges[1:] <= INT_HI)
            plausible |= point_range & (agg > spread)
            keep |= plausible & np.isin(np.arange(nb), owner[points])
        if keep.any():
            keep = _grow(keep, plausible)
        if total is not None:
            keep, agg = _rest_window(grid, keep, points, agg, nkeys, noisy, kind, sigma, total)
        if fallback and not keep.any() and not points.any():
            keep = _best_window(agg, nkeys)
    ends = (_offered_octaves(grid, keep, nkeys, points) if grid.log_scale and not public
            and kind is ColumnKind.CONTINUOUS else np.zeros(nb, bool))
    pieces: list[tuple[float, float, float, int]] = []
    point_values = {float(INT_LO + key) for key in np.flatnonzero(points)}
    tail, edge_density = _top_edge(grid, keep, agg) if grid.log_scale else (-1, 0.0)
    if tail >= 0 and tail + 1 < nb and ends[tail + 1]:
        tail = -1  # the octave above is offered: the one-way table says whether the tail goes on
    for i in np.flatnonzero(ends):
        # one bin, no mass of its own: a cell of its own in the one-way table, which alone
        # keeps it (privacy/marginals.significant_cells) or leaves it empty
        pieces.append((float(edges[i]), float(edges[i + 1]), 0.0, grid.point_keys + int(i)))
    for i in np.flatnonzero(keep):
        lo, hi = float(edges[i]), float(edges[i + 1])
        if public and kind is ColumnKind.INTEGER and point_values:
            # a declared bin around an atom: the whole numbers on either side of it
            split = _cut_points(lo, hi, point_values)
        elif kind is ColumnKind.INTEGER and grid.log_scale:
            # whole-number pieces (unit bins up to 64 where each would expect two sigma of
            # the octave's noisy mass, else 16 equal pieces an octave), so a piece holds whole
            # values and decoding never lands between two of them; a value released as a point
            # of its own is not a piece again
            unit = hi <= UNIT_PIECES_BELOW and agg[i] >= 2 * sigma * (hi - lo)
            parts = int(hi - lo) if unit else INTEGER_PIECES
            split = [(a, b) for a, b in _split_integer_bin(lo, hi, parts)
                     if not (b - a == 1 and a in point_values)]
        else:
            split = split_bin(lo, hi, SUB_BINS if grid.log_scale else 1, grid.log_scale)
        if not split:  # an octave below 1 holds no whole number
            continue
        if i == tail:
            shares = _falling(split, lo, hi, max(float(agg[i]), 0.0), edge_density)
        else:
            shares = np.full(len(split), 1.0 / len(split))
        pieces += [(a, b, max(float(agg[i]), 0.0) * float(w), grid.point_keys + int(i))
                   for (a, b), w in zip(split, shares, strict=True)]
    for key in np.flatnonzero(points):
        v = float(INT_LO + key)
        # a value offered beyond a run has no mass of its own here (its count is under one
        # sigma): the one-way table alone must find it (privacy/marginals.significant_cells)
        weight = 0.0 if offered[key] else max(float(noisy[key]), 0.0)
        pieces.append((v, v, weight, int(key)))
    if fallback and not pieces:  # only octaves below 1 kept for a whole-number column: noise
        pieces = [(0.0, 0.0, 1.0, 0)]
    pieces.sort(key=lambda piece: (piece[0], piece[1]))
    return _merge_lightest([a for a, _, _, _ in pieces], [b for _, b, _, _ in pieces],
                           [w for _, _, w, _ in pieces], [g for _, _, _, g in pieces])


# A window of octaves holding the rest of a column's numbers is kept when the rest exceeds this
# many of its standard deviations (a one-sided false-positive rate of FALSE_BIN_RATE).
REST_SIGMAS = float(norm.isf(FALSE_BIN_RATE))
REST_WINDOW = 4  # octaves at most
REST_YEARS = 32  # calendar years at most (a date column's rest)


def _rest_window(
    grid: NumberGrid, keep: np.ndarray, points: np.ndarray, agg: np.ndarray, nkeys: np.ndarray,
    noisy: np.ndarray, kind: ColumnKind, sigma: float, total: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the window of octaves that holds the rest of a column's numbers.

    A value that holds most rows (a money column's zero) is released as a point of its own,
    while the few hundred rows beside it spread over several octaves, each under the
    threshold: Adult's capital-gain at 3,000 rows and epsilon 1 came out as 0 in every row
    (8.3 % of the real rows are 114-99,999). The DP numbers' total less what the kept keys
    hold is that rest, with the noise of every count it is made of; when it is significant,
    the window of up to REST_WINDOW adjacent octaves (not kept, holding whole numbers) with
    the most significant noisy sum is kept, and the rest is spread over it in proportion to
    its octaves' clipped counts. The one-way marginal then measures the window again
    (privacy/marginals.py) and trims it when it was noise. Post-processing of DP counts only.
    Dates the same, over up to REST_YEARS calendar years: 500 rows over ten years had no
    significant year, and the fallback's one largest key among 585 years was now and then a
    noise-only one (dates in 2062, 2210 or 1846).
    """
    estimate, sd = total
    p = grid.point_keys
    released = float(agg[keep].sum()) + float(noisy[:p][points].sum())
    keys = float(nkeys[keep].sum()) + float(points.sum())
    rest = estimate - released
    if rest <= REST_SIGMAS * math.sqrt(sd ** 2 + sigma ** 2 * keys):
        return keep, agg
    edges = grid.edges
    whole = edges[1:] > 1.0 if kind is ColumnKind.INTEGER else np.ones(grid.bins, bool)
    # an octave of the point range holds its points that were not released on their own
    free = ~keep & (nkeys > 0) & whole
    best, window = -math.inf, None
    for width in range(1, (REST_WINDOW if grid.log_scale else REST_YEARS) + 1):
        for start in range(grid.bins - width + 1):
            span = slice(start, start + width)
            if not free[span].all():
                continue
            score = float(agg[span].sum()) / math.sqrt(float(nkeys[span].sum()))
            if score > best:
                best, window = score, span
    if window is None or best <= 0:
        return keep, agg
    keep = keep.copy()
    keep[window] = True
    agg = agg.copy()
    mass = np.clip(agg[window], 0.0, None)
    agg[window] = rest * (mass / mass.sum() if mass.sum() > 0 else 1.0 / len(mass))
    return keep, agg


def _offered_octaves(grid: NumberGrid, keep: np.ndarray, nkeys: np.ndarray,
                     points: np.ndarray) -> np.ndarray:
    """The octave just above a continuous column's highest kept positive octave and the one
    just below its lowest, when not kept and holding no released point: offered with no mass,
    for the one-way marginal to measure.

    A thin tail is under the domain histograms' noise and over the one-way table's: the
    transactions table's amounts of 256-511 (72 of 3,000 rows, p99 460) stood 0.5 deviations
    in the domain histogram (two keys of deviation 29) and would stand 3.4 in a one-way cell
    (deviation 21), but no bin offered them, and the amounts stopped at about 200. The one-way
    test keeps an offered cell only at two and a half of its deviations beside a significant
    cell, or three alone (a noise-only octave: under 1 % of runs). Public edges, no count: the
    choice reads only which octaves were kept."""
    out = np.zeros(grid.bins, bool)
    edges = grid.edges
    positive = np.flatnonzero(keep & (edges[:-1] > 0))
    if not positive.size:
        return out
    released = INT_LO + np.flatnonzero(points)
    for i in (int(positive[-1]) + 1, int(positive[0]) - 1):
        if (0 <= i < grid.bins and not keep[i] and nkeys[i] > 0 and edges[i] > 0
                and not ((released >= edges[i]) & (released < edges[i + 1])).any()):
            out[i] = True
    return out


def _top_edge(grid: NumberGrid, keep: np.ndarray, agg: np.ndarray) -> tuple[int, float]:
    """The last kept octave, when it holds a thinning tail (its mass spread evenly would be
    under half its kept neighbour's average density), and that half density; else (-1, 0)."""
    kept = np.flatnonzero(keep)
    if kept.size < 2 or kept[-1] - 1 != kept[-2]:
        return -1, 0.0
    top = int(kept[-1])
    edges = grid.edges
    if edges[top] <= 0 or edges[top] < INT_HI:  # the positive side, past the point range
        return -1, 0.0
    inner = float(agg[top - 1]) / float(edges[top] - edges[top - 1])
    if inner <= 0 or float(agg[top]) / float(edges[top + 1] - edges[top]) >= inner / 2:
        return -1, 0.0
    return top, inner / 2


def _falling(split: list[tuple[float, float]], lo: float, hi: float, mass: float,
             density: float) -> np.ndarray:
    """Shares of a tail octave's pieces under a density falling linearly from ``density`` at
    its lower edge to zero where the octave's mass is used up (within the octave).

    The octave's count is all the DP histograms say about its tail, and spread evenly it put
    a tenth of Adult's rows over 64 at 119-127 in ``age`` (3,000 rows, epsilon 1; the real
    maximum is 90): a thin top octave holds a thinning tail, whose density at the octave's
    edge is taken as half its neighbour's average. Post-processing of DP counts: pieces past
    the tail's end get no mass, so the generator never emits them (the one-way marginal
    measures the kept ones again)."""
    width = min(2.0 * mass / density, hi - lo) if density > 0 else hi - lo
    end = lo + width

    def integral(x: float) -> float:  # of (1 - (t - lo) / width) from lo to x
        t = min(max(x, lo), end) - lo
        return t - t * t / (2.0 * width)

    share = np.array([integral(b) - integral(a) for a, b in split])
    total = share.sum()
    return share / total if total > 0 else np.full(len(split), 1.0 / len(split))


def _cut_points(lo: float, hi: float, points: set[float]) -> list[tuple[float, float]]:
    """[lo, hi) with whole edges, less the whole numbers in ``points`` (each an atom of its
    own): the runs of whole numbers between them, as [a, b) pieces."""
    out, start = [], lo
    for v in sorted(p for p in points if lo <= p < hi):
        if v > start:
            out.append((start, v))
        start = v + 1
    if start < hi:
        out.append((start, hi))
    return out


def _merge_lightest(
    lo: list[float], hi: list[float], weights: list[float], groups: list[int],
) -> tuple[list[tuple[float, float]], list[float], list[int]]:
    """Merge the lightest pair of neighbouring bins (the leftmost of equals) until at most
    MAX_NUMERIC_BINS are left; point masses are kept apart. Each pair's sum is kept and only
    the merged bin's two pairs are summed again (summing every pair on each merge cost Adult's
    DP histograms about a fifth of their time)."""

    def pair(k: int) -> float:
        if lo[k] == hi[k] or lo[k + 1] == hi[k + 1]:
            return math.inf  # never merged (a finite weight always sorts first)
        return weights[k] + weights[k + 1]

    pairs = [pair(k) for k in range(len(lo) - 1)]
    while len(lo) > MAX_NUMERIC_BINS:
        j = min(range(len(pairs)), key=pairs.__getitem__)
        if pairs[j] == math.inf:
            break
        hi[j] = hi[j + 1]
        weights[j] = weights[j] + weights[j + 1]
        absorbed = groups[j + 1]  # a bin straddling two groups joins them into one
        groups = [groups[j] if g == absorbed else g for g in groups]
        del lo[j + 1], hi[j + 1], weights[j + 1], groups[j + 1], pairs[j]
        for k in (j - 1, j):
            if 0 <= k < len(pairs):
                pairs[k] = pair(k)
    return list(zip(lo, hi, strict=True)), weights, groups


def _beyond(keep: np.ndarray) -> np.ndarray:
    """The key just below the first kept one and the key just above the last (where the key
    space has them)."""
    out = np.zeros_like(keep)
    kept = np.flatnonzero(keep)
    if kept.size and kept[0] > 0:
        out[kept[0] - 1] = True
    if kept.size and kept[-1] < len(keep) - 1:
        out[kept[-1] + 1] = True
    return out


def adjacent(mask: np.ndarray) -> np.ndarray:
    """The positions next to a True one (left or right)."""
    out = np.zeros_like(mask)
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    return out


def _beside(keep: np.ndarray) -> np.ndarray:
    """The neighbours of the kept keys that are not kept themselves."""
    return adjacent(keep) & ~keep


def _grow(keep: np.ndarray, plausible: np.ndarray) -> np.ndarray:
    """The kept bins, extended over neighbours whose noisy count is plausibly real (over two
    sigma), as far as such neighbours go. A tail below the significance threshold is the rule
    on small tables (an octave of a few hundred rows); its mass is measured again, with more
    budget, by the one-way marginal (privacy/marginals.py). Gaps are not filled: between a
    spurious far bin and the data they would span every octave in between."""
    keep = keep.copy()
    while True:
        add = _beside(keep) & plausible
        if not add.any():
            return keep
        keep |= add


def _grow_pairs(keep: np.ndarray, noisy: np.ndarray, sigma: float) -> np.ndarray:
    """A run of kept points, extended at each end over the next two values together while
    their noisy sum is plausible (over one sigma of the pair), then over single plausible
    values again. Thin values at a run's ends are each about one sigma on a small table
    (Adult's education-num 15 and 16: 47 and 52 of 3,000 rows under noise of deviation 32):
    one of them alone falls short a third of the time and the run stopped at 14; the pair is
    three sigma. The one-way table measures them again (a noise-only pair passes this test
    16 % of the time and is trimmed there). A value inside the run is offered too (it lies
    between released values; with its octave's other values grown into the run, it was no
    longer plausible alone and left a hole)."""
    keep = keep.copy()
    pair = sigma * math.sqrt(2.0)
    while True:
        kept = np.flatnonzero(keep)
        if not kept.size:
            return keep
        keep[kept[0]:kept[-1] + 1] = True
        grown = False
        for a, b in ((kept[-1] + 1, kept[-1] + 2), (kept[0] - 1, kept[0] - 2)):
            if 0 <= min(a, b) and max(a, b) < len(keep) and noisy[a] + noisy[b] > pair:
                keep[[a, b]] = True
                grown = True
        if not grown:
            return keep
        keep = _grow(keep, noisy > sigma)


def _split_integer_bin(lo: float, hi: float, parts: int) -> list[tuple[float, float]]:
    """[lo, hi) cut at whole numbers into at most ``parts`` pieces of about equal width."""
    a, b = math.ceil(lo), math.ceil(hi)
    if b - a <= 1:
        return [(lo, hi)] if b > a else []
    points = np.unique(np.round(np.linspace(a, b, min(parts, b - a) + 1)))
    return [(float(x), float(y)) for x, y in zip(points[:-1], points[1:], strict=True)]


def split_bin(lo: float, hi: float, parts: int, log_scale: bool) -> list[tuple[float, float]]:
    if parts <= 1 or lo == hi:
        return [(lo, hi)]
    if log_scale and lo * hi > 0:
        sign = 1.0 if lo > 0 else -1.0
        points = sign * np.geomspace(abs(lo), abs(hi), parts + 1)
        points.sort()
    else:
        points = np.linspace(lo, hi, parts + 1)
    return [(float(a), float(b)) for a, b in zip(points[:-1], points[1:], strict=True)]


# The widest run of adjacent keys the fallback considers: a decade of years, or a few octaves.
FALLBACK_WINDOW = 16


def _best_window(agg: np.ndarray, nkeys: np.ndarray) -> np.ndarray:
    """The run of up to FALLBACK_WINDOW adjacent keys whose noisy sum stands highest above its
    noise (sum / sqrt(keys)): a column spread thinly over several keys, none significant alone
    (a 500-row date column over nine years), keeps the run that holds it rather than its
    single largest key, which noise alone picks among hundreds (a year 2209)."""
    n = np.maximum(nkeys, 0.0)
    best, where = -np.inf, (0, 1)
    for width in range(1, min(FALLBACK_WINDOW, len(agg)) + 1):
        sums = np.convolve(agg, np.ones(width), mode="valid")
        counts = np.convolve(n, np.ones(width), mode="valid")
        score = np.where(counts > 0, sums / np.sqrt(np.maximum(counts, 1.0)), -np.inf)
        i = int(np.argmax(score))
        if score[i] > best:
            best, where = float(score[i]), (i, i + width)
    keep = np.zeros(len(agg), dtype=bool)
    keep[where[0]:where[1]] = True
    return keep & (nkeys > 0)


def window_mass(grid: NumberGrid, noisy: np.ndarray, sigma: float, widest: int = 4) -> float:
    """The largest significant sum over up to ``widest`` adjacent octaves (whole numbers,
    fractions and points together): numbers spread thinly over several octaves (incomes in a
    small table), each below the threshold alone, still show as mass."""
    p, nb = grid.point_keys, grid.bins
    owner = np.searchsorted(grid.edges, np.arange(INT_LO, INT_HI), side="right") - 1
    t = significance_threshold(sigma, grid.size * widest * 2)
    best = 0.0
    # whole numbers alone (an integer column's fraction keys hold only noise), then with them
    for with_fractions in (False, True):
        per_octave = noisy[p:p + nb] + (noisy[p + nb:] if with_fractions else 0.0)
        keys = np.full(nb, 2.0 if with_fractions else 1.0)
        np.add.at(per_octave, owner, noisy[:p])
        np.add.at(keys, owner, 1.0)
        for width in range(1, widest + 1):
            sums = np.convolve(per_octave, np.ones(width), mode="valid")
            n = np.convolve(keys, np.ones(width), mode="valid")
            significant = sums > t * np.sqrt(n)
            if significant.any():
                best = max(best, float(sums[significant].max()))
    return best
