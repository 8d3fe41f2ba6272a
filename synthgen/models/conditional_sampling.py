"""Conditioned sampling: rows that honour fixed values, ranges, shares or seed rows.

Every kind of condition is met the same way, by rejection from the model's own output: rows are
generated exactly as for unconditioned sampling (conditional vectors drawn from the DP
frequencies, a Gumbel-max slot per one-hot span), a row is kept only if each span's slot is one
its *stratum* (output rows with one requirement) allows, and, after decoding, every numeric
range holds on the decoded value itself. Kept rows therefore follow the model's distribution
given the condition exactly, which is what a large unconditioned sample filtered to the
condition shows.

Why not the conditional vector alone: asked for ``sex=Female``, the generator honours it, but its
other columns follow only the rows it learned to make for that one request, and a DP-trained
generator's per-request rows differ from its own joint distribution (Adult at epsilon 1: 0.8 %
of the women it made when asked for women earned >50K, 9.5 % of the women in its unconditioned
output, 10.9 % in the real table; at the current code, total variation 0.78 on education
between the two). Training the vectors' rows to match the generator's own mixture (a
consistency loss, tried: bench/README.md) brought that to 0.09 but cost 0.012 of quality.

Rejection costs draws (one per row at share 1, 1 / share in general); a rejected draw runs only
the generator's body and the checked spans' logits (folded: :class:`FoldedGenerator`), and the
output layer and the decoding run on kept rows only. With one requirement (fixed values,
ranges), a row is kept with its exact chance of honouring it rather than by its drawn slots,
and the generator's inputs (a conditional vector, and a slab of noise along the direction
that matters to it) that can hardly make such rows are drawn less often, with the rows they
make kept more often in proportion (:class:`_Envelope`): the same law in fewer draws. A
stratum whose measured share is under :data:`MIN_SHARE` stops with an error that states the
share.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from synthgen.errors import ConditionError
from synthgen.models.conditions import (
    DISCRETE,
    SEED_NOTE,
    ColumnFacts,
    Range,
    Spec,
    check_seed_rows,
    facts_of,
    match_label,
)
from synthgen.models.networks import FoldedGenerator, Generator
from synthgen.models.sampling import draw_positions, gumbel_slots
from synthgen.models.trainer import ConditionSampler
from synthgen.privacy.domains import ColumnDomain, numeric_values
from synthgen.schema import ColumnKind
from synthgen.transform import Span, TableEncoder

# Below this share of generated rows, a condition is too rare to reach by rejection in bounded
# time: 1,000 draws per row kept. It is measured on at least MIN_DRAWS draws.
MIN_SHARE = 1e-3
MIN_DRAWS = 1 << 16


@dataclass
class Stratum:
    """Output rows with one requirement: the slots they may take, as a mask over the encoded
    row's columns."""

    allowed: np.ndarray
    label: str


class SamplingPlan:
    """A checked :class:`Spec` (and seed rows) in the encoder's terms, for ``n`` rows."""

    def __init__(self, encoder: TableEncoder, cond: ConditionSampler, spec: Spec, n: int,
                 seed_rows: pd.DataFrame | None = None) -> None:
        self.encoder, self.cond, self.spec, self.n = encoder, cond, spec, n
        self.ranges = spec.ranges
        # learned on the first chunk of a one-requirement request, kept for the others
        self.envelope: _Envelope | None = None
        self._learned = {d.name: k for k, d in enumerate(encoder.learned)}
        base = np.ones(encoder.width, dtype=bool)
        for column, label in spec.fixed.items():
            self._restrict(base, column, [self._slot(column, label)])
        for column, r in spec.ranges.items():
            self._restrict(base, column, _bins_in(self._domain(column), r))
        self.seed: pd.DataFrame | None = None
        # Disjoint strata (rebalancing) share the generated rows: each goes to the one it
        # matches. Seed rows' strata may overlap, so each generated row is drawn for one.
        self.disjoint = seed_rows is None
        if seed_rows is not None:
            self.strata, self._row_stratum = self._seed_strata(base, seed_rows)
        elif spec.rebalance_column is not None:
            self.strata, self._remaining = self._rebalance_strata(base)
        else:
            self.strata = [Stratum(base, ", ".join(spec.text))]

    # -- compiling

    def _domain(self, column: str) -> ColumnDomain:
        return self.encoder.learned[self._learned[column]]

    def _span(self, column: str) -> tuple[int, int]:
        span = self.encoder.discrete_spans[self._learned[column]]
        return span.start, span.width

    def _slot(self, column: str, label: object) -> int:
        d = self._domain(column)
        if d.kind is ColumnKind.BOOLEAN:
            return int(bool(label))
        # a label matched by match_label: a released category, or the fold-in bucket's
        return d.categories.index(label) if label in d.categories else len(d.categories)

    def _label(self, column: str, slot: int) -> str:
        d = self._domain(column)
        if d.kind is ColumnKind.BOOLEAN:
            return str(bool(slot))
        if d.kind in DISCRETE:
            return str(d.categories[slot]) if slot < len(d.categories) else "(other)"
        lo, hi = d.bins[slot]
        return f"[{_show(d, lo)}, {_show(d, hi)}]"

    def _restrict(self, mask: np.ndarray, column: str, slots: list[int]) -> None:
        start, width = self._span(column)
        keep = np.zeros(width, dtype=bool)
        keep[slots] = True
        mask[start:start + width] &= keep
        d = self._domain(column)
        if not mask[start:start + width].any() and d.bins:
            lo, hi = d.bins[0][0], d.bins[-1][1]
            said = [t for t in self.spec.text if t.startswith(column)]
            raise ConditionError(
                f"no value the model can generate satisfies {' and '.join(said)} (the "
                f"model's values of {column} lie between {_show(d, lo)} and {_show(d, hi)})",
                code="contradictory-conditions")

    def _rebalance_strata(self, base: np.ndarray) -> tuple[list[Stratum], np.ndarray]:
        column = self.spec.rebalance_column
        assert column is not None
        start, width = self._span(column)
        nullable = self.encoder.nullable[self._learned[column]]
        strata, counts = [], []
        named = []
        for label, share in self.spec.shares.items():
            slot = self._slot(column, label)
            named.append(slot)
            mask = base.copy()
            self._restrict(mask, column, [slot])
            strata.append(Stratum(mask, ", ".join([*self.spec.text, f"{column}={label}"])))
            counts.append(int(round(self.n * share)))
        rest = [s for s in range(width if nullable else width - 1) if s not in named]
        left = self.n - sum(counts)
        if left > 0:
            if not rest:
                raise ConditionError(f"rebalance {column}: the shares add up to less than 1 but "
                                     "name every value the column can take",
                                     code="contradictory-conditions")
            mask = base.copy()
            self._restrict(mask, column, rest)
            strata.append(Stratum(mask, ", ".join([*self.spec.text,
                                                   f"{column} another value"])))
            counts.append(left)
        elif left < 0:  # rounding: take the excess from the largest share
            counts[int(np.argmax(counts))] += left
        return strata, np.array(counts, dtype=np.int64)

    def _seed_strata(self, base: np.ndarray, seed: pd.DataFrame
                     ) -> tuple[list[Stratum], np.ndarray]:
        """One stratum per distinct combination of fixed slots; each seed row's own values are
        written into its output row after decoding (:meth:`finish`)."""
        facts, other = facts_of(self.encoder.domains)
        columns = check_seed_rows(seed, facts, self.spec, other)
        if len(seed) != self.n:
            raise ConditionError(f"{len(seed):,} seed rows but {self.n:,} rows asked for; "
                                 "leave the row count out to get one row per seed row",
                                 code="contradictory-conditions")
        learned = [c for c in columns if facts[c].kind is not ColumnKind.DROP]
        slots = np.full((len(seed), len(learned)), -1, dtype=np.int64)
        for i, c in enumerate(learned):
            slots[:, i] = self._seed_slots(c, seed[c], facts[c], other.get(c, False))
        groups, row_stratum = np.unique(slots, axis=0, return_inverse=True)
        strata = []
        for g in groups:
            mask = base.copy()
            mine = {c: int(s) for c, s in zip(learned, g, strict=True) if s >= 0}
            for c, s in mine.items():
                self._restrict(mask, c, [s])
            strata.append(Stratum(mask, "seed rows with " + ", ".join(
                f"{c}={self._label(c, s)}" for c, s in mine.items())))
        self.seed = seed[columns].reset_index(drop=True)
        return strata, row_stratum.reshape(-1)

    def _seed_slots(self, column: str, values: pd.Series, facts: ColumnFacts,
                    has_other: bool) -> np.ndarray:
        """Each seed row's slot of ``column`` (-1 where empty); the values were checked by
        :func:`check_seed_rows`."""
        d = self._domain(column)
        if facts.kind in DISCRETE:
            codes, uniques = pd.factorize(values)
            slot_of = [self._slot(column, match_label(column, u, facts, has_other))
                       for u in uniques]
            return np.append(np.array(slot_of, dtype=np.int64), -1)[codes]
        slot, _ = TableEncoder._numeric_slots(d, values)  # the bin encoding gives the value
        return np.where(slot == len(d.bins), -1, slot)

    # -- per chunk

    def rows(self, start: int, size: int, rng: np.random.Generator) -> np.ndarray:
        """The stratum of each of the output rows ``start`` to ``start + size``."""
        if self.seed is not None:
            return np.asarray(self._row_stratum[start:start + size])
        if len(self.strata) == 1:
            return np.zeros(size, dtype=np.int64)
        # exact totals over the whole output, spread at random over the chunks
        take = rng.multivariate_hypergeometric(self._remaining, size)
        self._remaining = self._remaining - take
        return rng.permutation(np.repeat(np.arange(len(take)), take))

    def finish(self, df: pd.DataFrame, start: int) -> pd.DataFrame:
        """Write the seed rows' own values (numeric ones are conditioned through their bin;
        unlearned columns are copied) into their output rows."""
        if self.seed is None:
            return df
        seed = self.seed.iloc[start:start + len(df)].reset_index(drop=True)
        for c in seed.columns:
            d = next(d for d in self.encoder.domains if d.name == c)
            if d.kind in DISCRETE:
                continue
            given = seed[c].notna().to_numpy()
            if d.kind is ColumnKind.DROP:
                values = df[c].astype(object).to_numpy()
                values[given] = seed[c].astype(object).to_numpy()[given]
            else:
                fmt = d.cell_format
                x = np.where(given, numeric_values(seed[c], d.kind, fmt),
                             numeric_values(df[c], d.kind, fmt))
                if fmt is not None and not fmt.is_plain:  # written back in its format
                    values = pd.Series(fmt.write(x, np.isnan(x)), dtype=object)
                elif d.kind is ColumnKind.DATETIME:
                    values = pd.Series(pd.to_datetime(x, unit="s")).astype(df[c].dtype)
                else:
                    values = pd.Series(x).round() if d.kind is ColumnKind.INTEGER else pd.Series(x)
                    values = values.astype(df[c].dtype)
            df[c] = values
        return df

    def describe(self) -> dict[str, object]:
        out = self.spec.describe()
        if self.seed is not None:
            out["seed_rows"] = {"rows": len(self.seed), "columns": list(self.seed.columns),
                                "note": SEED_NOTE}
        return out


def _bins_in(d: ColumnDomain, r: Range) -> list[int]:
    """Bins of ``d`` that may decode to a value in ``r`` (a superset: the decoded value is
    checked exactly later). Never the null slot."""
    lo = np.array([b[0] for b in d.bins], dtype=np.float64)
    hi = np.array([b[1] for b in d.bins], dtype=np.float64)
    if d.kind is ColumnKind.INTEGER:  # decoded integers are rounded
        lo, hi = np.floor(lo), np.ceil(hi)
    slack = 1e-9 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
    return list(np.flatnonzero((hi + slack >= r.lower) & (lo - slack <= r.upper)))


def _show(d: ColumnDomain, x: float) -> str:
    if d.kind is ColumnKind.DATETIME:
        return str(pd.Timestamp(x, unit="s"))
    return f"{x:g}"


# ----------------------------------------------------------------------------- generating


@torch.no_grad()
def generate_rows(
    generator: Generator,
    cond: ConditionSampler,
    encoder: TableEncoder,
    plan: SamplingPlan,
    row_strata: np.ndarray,
    decode: Callable[[torch.Tensor, torch.Tensor], pd.DataFrame],
    gen: torch.Generator,
    batch: int,
) -> pd.DataFrame:
    """One output chunk: row i honours stratum ``row_strata[i]``'s requirement.

    ``decode`` turns device slots and scalars into a DataFrame; ``batch`` bounds the rows
    generated per round.
    """
    generator.eval()
    device = cond.device
    ids, local = np.unique(row_strata, return_inverse=True)
    strata = [plan.strata[i] for i in ids]
    need = np.bincount(local, minlength=len(ids))
    have = np.zeros(len(ids), dtype=np.int64)
    # draws of the unconditioned model the rounds so far stand for (a round drawn from the
    # envelope's proposal stands for more: see _Envelope)
    drawn = np.zeros(len(ids), dtype=np.float64)
    draw = _Draw(generator, encoder, np.stack([s.allowed for s in strata]), cond)
    one = plan.disjoint and len(ids) == 1 and bool(cond.spans)
    if one and plan.envelope is None:
        plan.envelope = _Envelope(cond, generator.noise_dim, plan.n)
    envelope = plan.envelope if one else None
    pieces: list[pd.DataFrame] = []
    owners: list[np.ndarray] = []
    while (short := np.maximum(need - have, 0)).any():
        rate = np.maximum((have + 1) / (drawn + 2), MIN_SHARE)
        want = np.where(short > 0, np.ceil(short / rate * 1.03) + 8, 0)
        if envelope is not None:  # one requirement: rejection by its exact probability
            # the first round learns the bounds: its size, not the request's, matters
            m = int(min(envelope.pilot_rows() or envelope.proposals_for(int(short[0])), batch))
            drawn += m / envelope.mass
            cell, position, z = envelope.propose(m, gen)
            rows = draw.first(m, position, gen, z)
            chance = draw.chance(rows.logits)
            # kept by the bounds they were drawn under (the first round's: 1), then learned from
            owner = torch.where(envelope.keep(cell, chance, gen), 0, -1)
            envelope.learn(position, z, chance)
            first = None  # drawn for the kept rows only, below
        elif plan.disjoint:  # one pool of rows, each to the stratum it matches
            m = int(min(want.max(), batch))
            rows = draw.first(m, cond.positions(m, gen), gen)
            first = draw.slots(rows.logits, gen)
            owner = draw.match(first)
            drawn += m
        else:  # rows drawn for one stratum each
            if want.sum() > batch:
                want = np.where(short > 0, np.maximum(1, np.floor(want * batch / want.sum())), 0)
            counts = want.astype(np.int64)
            owner = torch.from_numpy(np.repeat(np.arange(len(ids)), counts)).to(device)
            rows = draw.first(len(owner), cond.positions(len(owner), gen), gen)
            first = draw.slots(rows.logits, gen)
            owner = torch.where(draw.allowed_for(first, owner), owner, -1)
            drawn += counts
        keep = _wanted(owner, short, exact=not plan.ranges)
        if len(keep):
            kept_rows = rows.take(keep)
            chosen = (draw.slots(kept_rows.logits, gen, restricted=True) if first is None
                      else first.index_select(0, keep))
            slots, scalars = draw.rest(kept_rows, chosen, encoder.nullable, gen)
            df = decode(slots, scalars)
            kept = owner.index_select(0, keep).cpu().numpy()
            hold = _ranges_hold(df, plan.ranges, encoder)
            if not hold.all():
                df, kept = df[hold].reset_index(drop=True), kept[hold]
            pieces.append(df)
            owners.append(kept)
            have += np.bincount(kept, minlength=len(ids))
        _check_share(strata, need, have, drawn)
    return _assemble(pieces, owners, local, need)


class _Envelope:
    """Where to look for rows with one requirement, and how hard: rejection over the
    generator's inputs, exact by construction up to bounds learned once.

    Given its body's output h, a row's slots are independent draws from their softmaxes, so
    the chance ``a(c, z)`` that the row made from conditional vector c and noise z honours the
    requirement is exact arithmetic (``_Draw.chance``), and rows kept with probability a are
    rows drawn whole and filtered. The unconditioned model draws c with probability pi(c) and
    z from N(0, I); most inputs can hardly make the requested rows (asked for women, the
    vector relationship=Husband; asked for high earners, the noise with which the generator
    writes low incomes). The envelope cuts each vector's noise into S(c) *cells* of equal
    probability along one direction w(c) (``z . w(c)`` between two quantiles of the normal
    law), the direction along which a(c, z) changes most. With a bound M >= a on each cell,
    drawing a cell with probability proportional to pi(c) M / S(c), z from the normal law
    within it (a truncated normal along w(c), the rest of z free), and keeping the row with
    probability a / M keeps each (c, z) with probability proportional to pi(c) N(z) a(c, z):
    exactly the filtered model, in sum pi(c) M / S(c) / share draws per row instead of
    1 / share (Adult at epsilon 1, sex=Female and Y=>50K: about 3.3 instead of 29, and 10
    with one bound per vector; bench/README.md).

    Everything comes from a first round drawn from the model itself (one cell per vector,
    every bound 1: plain sampling, kept by a, exact on its own; as many draws as rows asked
    for, between 4,096 and 16,384). Each direction is a ridge
    least-squares fit of log(a + 0.001) on z over the vector's first-round rows, shrunk
    towards the fit over all vectors (each vector's own mean removed); a vector gets one cell
    per :data:`PILOT_PER_CELL` + 10 of its rows (up to :data:`MAX_CELLS`); each bound is twice
    the largest a the cell's first-round rows took, plus :data:`SLACK`, or the vector's bound
    (likewise) for a cell seen fewer than :data:`PILOT_PER_CELL` times, or 1 for a vector seen
    fewer times. A row whose a exceeds its cell's bound is kept with probability 1 instead of
    a / M: the only departure from exactness; on Adult the rows above their bounds carried
    1.6e-3 of the requested rows' probability, 2e-4 for one value, and 5.8e-3 for the pair
    after the smallest first round (bench/envelope.py).
    """

    # First-round draws: at most 16,384 (enough for the cells of Adult's 60 vectors), and no
    # more than the rows asked for: it is a fixed cost, and for a small request a coarser
    # envelope is cheaper than a finer one learned at length (2,000 rows of sex=Female and
    # Y=>50K on Adult: 2.5x the unconditioned time with 4,096, 4.8x with 16,384)
    PILOT = 1 << 14
    SMALLEST_PILOT = 1 << 12
    RIDGE = 100.0  # the shrinkage, in units of a vector's rows (a vector seen 100 times is
    # half its own fit, half the pooled one)

    def __init__(self, cond: ConditionSampler, noise_dim: int, rows: int | None = None
                 ) -> None:
        """``rows``: how many rows the request asks for (sizes the first round)."""
        self.pilot = self.PILOT if rows is None else int(
            min(max(rows, self.SMALLEST_PILOT), self.PILOT))
        self.share = cond.position_share
        vectors, device = len(self.share), self.share.device
        # any direction will do for the first round: with one cell per vector it is unused
        self.direction = torch.zeros(vectors, noise_dim, device=device)
        self.direction[:, 0] = 1.0
        # per cell: its vector's position, its lowest quantile along the direction, its
        # width in quantiles, and its bound
        self.position = torch.arange(vectors, device=device)
        self.low = torch.zeros(vectors, dtype=torch.float64, device=device)
        self.width = torch.ones(vectors, dtype=torch.float64, device=device)
        self.bound = torch.ones(vectors, dtype=torch.float64, device=device)
        self._cells = torch.ones(vectors, dtype=torch.long, device=device)  # per vector
        self._first = torch.arange(vectors, device=device)  # its first cell
        self.mass = 1.0  # sum pi(c) M / S(c): a proposal stands for 1 / mass plain draws
        self._expected = 0.0  # rows the proposals since the first round were expected to keep
        self._proposed = 0
        self._first_rate = 1.0
        self._cdf = torch.cumsum(self.share, 0)
        self.learned = False

    def pilot_rows(self) -> int:
        return 0 if self.learned else self.pilot

    def propose(self, m: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor,
                                                              torch.Tensor]:
        """m proposals: each one's cell, drawn with probability pi(c) M / S(c) / mass, its
        vector's position, and its noise, normal within the cell."""
        device = self._cdf.device
        u = torch.rand(m, generator=gen, device=device, dtype=torch.float64)
        cell = torch.searchsorted(self._cdf, u * self._cdf[-1], right=True)
        cell = torch.clamp(cell, max=len(self._cdf) - 1)
        position = self.position.index_select(0, cell)
        z = torch.randn(m, self.direction.shape[1], generator=gen, device=device)
        if not self.learned:
            return cell, position, z
        w = self.direction.index_select(0, position)
        # along w: the normal law's quantile of a uniform point of the cell's quantiles
        v = torch.rand(m, generator=gen, device=device, dtype=torch.float64)
        q = self.low.index_select(0, cell) + v * self.width.index_select(0, cell)
        tiny = torch.finfo(torch.float64).tiny
        t = torch.special.ndtri(q.clamp(tiny, 1 - 1e-16)).float()
        z.add_((t - (z * w).sum(1)).unsqueeze(1) * w)
        return cell, position, z

    def keep(self, cell: torch.Tensor, chance: torch.Tensor, gen: torch.Generator
             ) -> torch.Tensor:
        """Which proposals to keep: each with probability a / M."""
        u = torch.rand(len(chance), generator=gen, device=chance.device, dtype=torch.float64)
        bound = self.bound.index_select(0, cell)
        if self.learned:  # the rows to expect, for sizing the next rounds
            self._expected += float(torch.clamp(chance / bound, max=1.0).sum())
            self._proposed += len(chance)
        return u * bound < chance

    def proposals_for(self, rows: int) -> int:
        """Proposals that keep about ``rows`` rows (a little more: a short round costs
        another round, a long one only its extra draws). The rate is each proposal's
        probability of being kept, summed: steadier than counting kept rows."""
        rate = (self._expected / self._proposed if self._proposed >= 4096
                else self._first_rate)
        return math.ceil(rows / max(rate, MIN_SHARE) * 1.02) + 8

    def learn(self, position: torch.Tensor, z: torch.Tensor, chance: torch.Tensor) -> None:
        """Set the directions, cells and bounds from the first round (plain draws)."""
        if self.learned:
            return
        self.learned = True
        device, vectors = z.device, len(self.share)
        seen = torch.bincount(position, minlength=vectors)
        self.direction = self._directions(position, z, chance, seen).float()
        cells = torch.clamp(seen // (PILOT_PER_CELL + 10), 1, MAX_CELLS)
        first = torch.cumsum(cells, 0) - cells  # each vector's first cell
        self.position = torch.repeat_interleave(torch.arange(vectors, device=device), cells)
        count = cells.index_select(0, self.position).double()
        slab = torch.arange(len(self.position), device=device) - first.index_select(
            0, self.position)
        self.low, self.width = slab / count, 1.0 / count
        self._cells, self._first = cells, first
        cell = self.cell_of(position, z)  # the first round's rows in their cells
        in_cell = torch.bincount(cell, minlength=len(self.position))
        largest = torch.zeros(len(self.position), dtype=torch.float64, device=device)
        largest = largest.scatter_reduce_(0, cell, chance, "amax")
        vector_largest = torch.zeros(vectors, dtype=torch.float64, device=device)
        vector_largest = vector_largest.scatter_reduce_(0, position, chance, "amax")
        per_vector = torch.where(seen >= PILOT_PER_CELL,
                                 torch.clamp(2 * vector_largest + SLACK, max=1.0), 1.0)
        self.bound = torch.where(in_cell >= PILOT_PER_CELL,
                                 torch.clamp(2 * largest + SLACK, max=1.0),
                                 per_vector.index_select(0, self.position))
        weight = self.share.index_select(0, self.position) * self.bound * self.width
        self._cdf = torch.cumsum(weight, 0)
        self.mass = float(weight.sum() / self.share.sum())
        # plain draws keep a row with probability share, so a proposal share / mass
        self._first_rate = float(chance.mean()) / self.mass

    def cell_of(self, position: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The cell of each row made from the vector at ``position`` and noise ``z``."""
        t = (z * self.direction.index_select(0, position)).sum(1).double()
        cells = self._cells.index_select(0, position)
        slab = torch.minimum((torch.special.ndtr(t) * cells).long(), cells - 1)
        return self._first.index_select(0, position) + slab

    def _directions(self, position: torch.Tensor, z: torch.Tensor, chance: torch.Tensor,
                    seen: torch.Tensor) -> torch.Tensor:
        """Per vector, the unit direction of the ridge fit of log(a + 0.001) on z (see the
        class): the rows a vector can hardly make differ in how unlikely they are too."""
        vectors, dim = len(seen), z.shape[1]
        order = torch.argsort(position, stable=True)  # each vector's rows together
        rows = torch.cat([z.index_select(0, order),
                          torch.log(chance.index_select(0, order) + 1e-3).unsqueeze(1).to(
                              z.dtype)], 1)
        # each vector's sums as differences of one running sum: deterministic on a GPU, where
        # index_add_ adds in whatever order its atomics land
        running = torch.cat([rows.new_zeros(1, dim + 1), torch.cumsum(rows, 0)])
        end = torch.cumsum(seen, 0)
        means = (running.index_select(0, end) - running.index_select(0, end - seen)) / (
            seen.clamp(min=1).unsqueeze(1))
        centred = rows - means.index_select(0, position.index_select(0, order))
        x, y = centred[:, :dim], centred[:, dim]
        eye = torch.eye(dim, dtype=z.dtype, device=z.device)
        pooled = torch.linalg.solve(x.T @ x + 1e-3 * eye, x.T @ y)
        fit = pooled.expand(vectors, dim).clone()
        stops, counts = end.tolist(), seen.tolist()
        # vectors seen fewer times than this would be mostly the pooled fit anyway
        for c in torch.nonzero(seen >= self.RIDGE / 2).flatten().tolist():
            xc, yc = x[stops[c] - counts[c]:stops[c]], y[stops[c] - counts[c]:stops[c]]
            fit[c] = torch.linalg.solve(xc.T @ xc + self.RIDGE * eye,
                                        xc.T @ yc + self.RIDGE * pooled)
        norm = fit.norm(dim=1, keepdim=True)
        axis = torch.zeros_like(fit)
        axis[:, 0] = 1.0
        return torch.where(norm > 0, fit / norm.clamp(min=1e-30), axis)


# a cell (or vector) seen fewer times in the first round takes a looser bound (see _Envelope);
# vectors get a cell per PILOT_PER_CELL + 10 first-round rows, so that few cells fall short
PILOT_PER_CELL = 20
MAX_CELLS = 32
# added to every bound: a cell whose first-round rows all had a near 0 may hold rare larger ones
SLACK = 0.003


def _wanted(owner: torch.Tensor, short: np.ndarray, exact: bool) -> torch.Tensor:
    """Rows worth finishing: those of a stratum still short of rows, and, when nothing is
    checked after decoding (``exact``), no more per stratum than it lacks (a surplus would
    be computed and decoded for nothing)."""
    keep = (owner >= 0).nonzero().squeeze(1)
    own = owner.index_select(0, keep).cpu().numpy()
    room = short[own] if exact else np.where(short[own] > 0, len(own), 0)
    chosen = np.flatnonzero(_rank_within(own) < room)
    return keep.index_select(0, torch.from_numpy(chosen).to(keep.device))


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """Each element's position among the elements of its group, in order."""
    order = np.argsort(groups, kind="stable")
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups)) - np.searchsorted(groups[order], groups[order])
    return rank


@dataclass
class _Rows:
    """Drawn rows before their output layer: noise, conditional vectors' positions, and the
    logits of the spans some stratum restricts."""

    z: torch.Tensor
    position: torch.Tensor | None
    logits: torch.Tensor

    def take(self, keep: torch.Tensor) -> _Rows:
        return _Rows(self.z.index_select(0, keep),
                     None if self.position is None else self.position.index_select(0, keep),
                     self.logits.index_select(0, keep))


class _Draw:
    """Generated rows in two steps: first the generator's body and the logits of the spans some
    stratum restricts (all a rejected row costs), then, for the rows kept, the whole output
    layer (their bodies computed again: cheaper than keeping every rejected row's).
    The spans are independent given the body's output, so the second step's slots of the other
    spans are drawn exactly as a whole-row draw would."""

    def __init__(self, generator: Generator, encoder: TableEncoder, allowed: np.ndarray,
                 cond: ConditionSampler) -> None:
        device = cond.device
        self.folded = FoldedGenerator(generator)
        spans = encoder.discrete_spans
        self.checked = [k for k, s in enumerate(spans)
                        if not allowed[:, s.start:s.stop].all()]
        columns: list[int] = []
        sub: list[Span] = []
        at = 0
        for k in self.checked:
            s = spans[k]
            columns.extend(range(s.start, s.stop))
            sub.append(Span(s.column, at, s.width, "softmax"))
            at += s.width
        self.sub = sub
        self.nullable = [encoder.nullable[k] for k in self.checked]
        self.drawn = encoder.drawn_positions  # positions drawn uniformly (sampling.py)
        self.columns = torch.tensor(columns, dtype=torch.long, device=device)
        self._head = self.folded.head(self.columns)
        self.starts = torch.tensor([spans[k].start for k in self.checked], device=device)
        self.allowed = torch.from_numpy(allowed).to(device)
        self.checked_t = torch.tensor(self.checked, dtype=torch.long, device=device)
        # the slots a row may take (a non-nullable column's null slot never), and, for the
        # first stratum, those that honour it: -inf elsewhere, added to the logits
        drawable = torch.ones(len(columns), dtype=torch.bool, device=device)
        for span, can_be_null in zip(sub, self.nullable, strict=True):
            if not can_be_null:
                drawable[span.stop - 1] = False
        ok = drawable & self.allowed[0].index_select(0, self.columns)
        self._drawable = torch.where(drawable, 0.0, -torch.inf)
        self._honours = torch.where(ok, 0.0, -torch.inf)

    def first(self, m: int, position: torch.Tensor | None, gen: torch.Generator,
              z: torch.Tensor | None = None) -> _Rows:
        """m rows' checked logits, from noise ``z`` (default: drawn here)."""
        if z is None:
            z = torch.randn(m, self.folded.noise_dim, generator=gen,
                            device=self.columns.device)
        return _Rows(z, position, self.folded.logits(z, position, self._head))

    def slots(self, logits: torch.Tensor, gen: torch.Generator, restricted: bool = False
              ) -> torch.Tensor:
        """A slot per checked span (``restricted``: among the first stratum's slots only, the
        law of the slots given that the row honours it)."""
        if restricted:
            logits = logits + self._honours
        return gumbel_slots(logits, self.sub, self.nullable, gen)

    def chance(self, logits: torch.Tensor) -> torch.Tensor:
        """Per row, the exact probability that its checked slots honour the first stratum."""
        log = torch.zeros(logits.shape[0], dtype=torch.float64, device=logits.device)
        every = (logits + self._drawable).double()
        good = (logits + self._honours).double()
        for span in self.sub:
            part = slice(span.start, span.stop)
            log += torch.logsumexp(good[:, part], 1) - torch.logsumexp(every[:, part], 1)
        return log.exp()

    def match(self, first: torch.Tensor) -> torch.Tensor:
        """Per row, the (disjoint) stratum whose slots it took, or -1."""
        hits = self.allowed[:, self.starts + first].all(2)  # strata x rows
        return torch.where(hits.any(0), hits.int().argmax(0), -1)

    def allowed_for(self, first: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        return self.allowed[owner.unsqueeze(1), self.starts + first].all(1)

    def rest(self, rows: _Rows, first: torch.Tensor, nullable: list[bool],
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.folded.logits(rows.z, rows.position)  # the kept rows' bodies again
        scalars = torch.tanh(raw.index_select(1, self.folded.tanh_columns))
        slots = gumbel_slots(raw, self.folded.softmax_spans, nullable, gen)
        slots[:, self.checked_t] = first
        return slots, draw_positions(scalars, slots, self.drawn, gen)


def _ranges_hold(df: pd.DataFrame, ranges: dict[str, Range], encoder: TableEncoder
                 ) -> np.ndarray:
    """The exact filter: each range holds on the decoded value the output will hold."""
    hold = np.ones(len(df), dtype=bool)
    for column, r in ranges.items():
        d = next(d for d in encoder.learned if d.name == column)
        hold &= r.holds(numeric_values(df[column], d.kind, d.cell_format))
    return hold


def _check_share(strata: list[Stratum], need: np.ndarray, have: np.ndarray,
                 drawn: np.ndarray) -> None:
    for s in np.flatnonzero((have < need) & (drawn >= MIN_DRAWS)):
        share = have[s] / drawn[s]
        if share < MIN_SHARE or drawn[s] > need[s] / MIN_SHARE + MIN_DRAWS:
            raise ConditionError(
                f"the model gives rows with {strata[s].label} a share of {share:.4%} "
                f"({have[s]:,} of {round(drawn[s]):,} generated rows); reaching {need[s]:,} "
                f"would take "
                f"about {_draws(need[s], share)} draws, more than the limit of one in "
                f"{1 / MIN_SHARE:,.0f}. Ask for fewer rows or a wider condition.",
                code="condition-too-rare")


def _draws(need: int, share: float) -> str:
    return "infinitely many" if share == 0 else f"{math.ceil(need / share):,}"


def _assemble(pieces: list[pd.DataFrame], owners: list[np.ndarray], local: np.ndarray,
              need: np.ndarray) -> pd.DataFrame:
    """Row i of the chunk gets the next kept row of its stratum (extras are dropped)."""
    df = pd.concat(pieces, ignore_index=True)
    owner = np.concatenate(owners)
    order = np.argsort(owner, kind="stable")
    taken = order[(_rank_within(owner) < need[owner])[order]]
    positions = np.argsort(local, kind="stable")
    out = df.iloc[taken].reset_index(drop=True)
    out.index = positions
    return out.sort_index().reset_index(drop=True)
