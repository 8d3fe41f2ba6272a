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
output, 10.9 % in the real table). Rejection costs draws (one per row at share 1, 1 / share in
general); a rejected draw runs only the generator's body and the checked spans' outputs, and
the decoding runs on kept rows only. A stratum whose measured share is under
:data:`MIN_SHARE` stops with an error that states the share.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

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
from synthgen.models.networks import Generator
from synthgen.models.sampling import gumbel_slots
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
                x = np.where(given, numeric_values(seed[c], d.kind),
                             numeric_values(df[c], d.kind))
                if d.kind is ColumnKind.DATETIME:
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
    drawn = np.zeros(len(ids), dtype=np.int64)
    draw = _Draw(generator, encoder, np.stack([s.allowed for s in strata]), device)
    pieces: list[pd.DataFrame] = []
    owners: list[np.ndarray] = []
    while (short := np.maximum(need - have, 0)).any():
        rate = np.maximum((have + 1) / (drawn + 2), MIN_SHARE)
        want = np.where(short > 0, np.ceil(short / rate * 1.1) + 8, 0)
        if plan.disjoint:  # one pool of rows, each to the stratum it matches
            m = int(min(want.max(), batch))
            h, first = draw.first(cond, m, gen)
            owner = draw.match(first)
            drawn += m
        else:  # rows drawn for one stratum each
            if want.sum() > batch:
                want = np.where(short > 0, np.maximum(1, np.floor(want * batch / want.sum())), 0)
            counts = want.astype(np.int64)
            owner = torch.from_numpy(np.repeat(np.arange(len(ids)), counts)).to(device)
            h, first = draw.first(cond, len(owner), gen)
            owner = torch.where(draw.allowed_for(first, owner), owner, -1)
            drawn += counts
        keep = _wanted(owner, short, exact=not plan.ranges)
        if len(keep):
            slots, scalars = draw.rest(h.index_select(0, keep), first.index_select(0, keep),
                                       encoder.nullable, gen)
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


class _Draw:
    """Generated rows in two steps: first the generator's body and the slots of the spans some
    stratum restricts (all a rejected row costs), then, for the rows kept, the rest of the row.
    The spans are independent given the body's output, so the second step's slots of the other
    spans are drawn exactly as a whole-row draw would."""

    def __init__(self, generator: Generator, encoder: TableEncoder, allowed: np.ndarray,
                 device: torch.device) -> None:
        self.generator = generator
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
        cols = torch.tensor(columns, dtype=torch.long, device=device)
        self.weight = generator.head.weight.index_select(0, cols)
        self.bias = generator.head.bias.index_select(0, cols)
        # the slots the generator never emits (Generator.forward pins their logits low)
        self.all_forbidden = cast(torch.Tensor, generator.forbidden)
        self.forbidden = self.all_forbidden.index_select(0, cols)
        self.starts = torch.tensor([spans[k].start for k in self.checked], device=device)
        self.allowed = torch.from_numpy(allowed).to(device)
        self.checked_t = torch.tensor(self.checked, dtype=torch.long, device=device)

    def first(self, cond: ConditionSampler, m: int, gen: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
        c, _ = cond.draw(m, gen)
        z = torch.randn(m, self.generator.noise_dim, generator=gen, device=c.device)
        h = self.generator.body(torch.cat([z, c], dim=1))
        logits = torch.nn.functional.linear(h, self.weight, self.bias)
        logits = logits.masked_fill(self.forbidden, -1e4)
        return h, gumbel_slots(logits, self.sub, self.nullable, gen)

    def match(self, first: torch.Tensor) -> torch.Tensor:
        """Per row, the (disjoint) stratum whose slots it took, or -1."""
        hits = self.allowed[:, self.starts + first].all(2)  # strata x rows
        return torch.where(hits.any(0), hits.int().argmax(0), -1)

    def allowed_for(self, first: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        return self.allowed[owner.unsqueeze(1), self.starts + first].all(1)

    def rest(self, h: torch.Tensor, first: torch.Tensor, nullable: list[bool],
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.generator.head(h).masked_fill(self.all_forbidden, -1e4)
        scalars = torch.tanh(raw.index_select(1, self.generator.segments.tanh_columns))
        softmax = [s for s in self.generator.spans if s.activation == "softmax"]
        slots = gumbel_slots(raw, softmax, nullable, gen)
        slots[:, self.checked_t] = first
        return slots, scalars


def _ranges_hold(df: pd.DataFrame, ranges: dict[str, Range], encoder: TableEncoder
                 ) -> np.ndarray:
    """The exact filter: each range holds on the decoded value the output will hold."""
    hold = np.ones(len(df), dtype=bool)
    for column, r in ranges.items():
        kind = next(d.kind for d in encoder.learned if d.name == column)
        hold &= r.holds(numeric_values(df[column], kind))
    return hold


def _check_share(strata: list[Stratum], need: np.ndarray, have: np.ndarray,
                 drawn: np.ndarray) -> None:
    for s in np.flatnonzero((have < need) & (drawn >= MIN_DRAWS)):
        share = have[s] / drawn[s]
        if share < MIN_SHARE or drawn[s] > need[s] / MIN_SHARE + MIN_DRAWS:
            raise ConditionError(
                f"the model gives rows with {strata[s].label} a share of {share:.4%} "
                f"({have[s]:,} of {drawn[s]:,} generated rows); reaching {need[s]:,} would take "
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
