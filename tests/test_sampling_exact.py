"""The arithmetic conditioned sampling rests on: the folded generator computes what the
generator does, a row's chance of honouring a requirement is exact, and the envelope's
proposal keeps the inputs (vectors and noise) in the filtered model's proportions."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest
import torch

from synthgen import Synthesizer
from synthgen.models.conditional_sampling import SLACK, SamplingPlan, _Draw, _Envelope
from synthgen.models.conditions import ConditionsSpec, facts_of
from synthgen.models.conditions import check as check_conditions
from synthgen.models.networks import FoldedGenerator, Generator
from synthgen.transform import Span


@pytest.fixture
def model(adult_model: Synthesizer) -> Synthesizer:
    return adult_model


def _draw(model: Synthesizer, conditions: ConditionsSpec) -> _Draw:
    encoder, generator, cond = model._require_fitted()
    spec = check_conditions(conditions, None, *facts_of(encoder.domains))
    plan = SamplingPlan(encoder, cond, spec, 1000)
    generator.eval()
    return _Draw(generator, encoder, np.stack([s.allowed for s in plan.strata]), cond)


def test_the_folded_generator_computes_what_the_generator_does() -> None:
    torch.manual_seed(0)
    spans = [Span("a", 0, 4, "softmax"), Span("x", 4, 1, "tanh"), Span("b", 5, 3, "softmax")]
    generator = Generator(8, 6, spans, (16, 12), forbidden=[2])
    for module in generator.modules():  # BatchNorm statistics unlike their defaults
        if isinstance(module, torch.nn.BatchNorm1d):
            cast(torch.Tensor, module.running_mean).uniform_(-1, 1)
            cast(torch.Tensor, module.running_var).uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    generator.eval()
    rows = FoldedGenerator.BLOCK + 123  # across a block boundary
    z = torch.randn(rows, 8)
    position = torch.randint(6, (rows,))
    cond = torch.nn.functional.one_hot(position, 6).float()
    folded = FoldedGenerator(generator)
    with torch.no_grad():
        expected = generator(z, cond)
        assert torch.allclose(folded.logits(z, position), expected, atol=1e-5)
        columns = torch.tensor([5, 0, 2])
        assert torch.allclose(folded.logits(z, position, folded.head(columns)),
                              expected[:, columns], atol=1e-5)


@pytest.mark.parametrize("conditions", [{"sex": "Female", "Y": ">50K"}, ["age>=60"]])
def test_a_rows_chance_is_how_often_its_draws_honour_the_requirement(
        model: Synthesizer, conditions: ConditionsSpec) -> None:
    draw = _draw(model, conditions)
    gen = torch.Generator().manual_seed(3)
    _, _, cond = model._require_fitted()
    rows = draw.first(400, cond.positions(400, gen), gen)
    chance = draw.chance(rows.logits)
    repeats = 500
    logits = rows.logits.repeat(repeats, 1)
    slots = draw.slots(logits, gen)
    honoured = draw.allowed_for(slots, torch.zeros(len(slots), dtype=torch.long))
    rate = honoured.view(repeats, -1).double().mean(0)
    # 500 draws a row: a binomial rate's standard deviation is at most 0.022
    assert (rate - chance).abs().max() < 0.11, (rate - chance).abs().max()
    assert abs(float(rate.mean() - chance.mean())) < 0.01
    # and the slots drawn for a kept row are the honouring draws' slots, in their proportions
    kept = draw.slots(logits, gen, restricted=True)
    assert bool(draw.allowed_for(kept, torch.zeros(len(kept), dtype=torch.long)).all())
    for k in range(slots.shape[1]):
        plain = torch.bincount(slots[honoured, k].long(), minlength=64).double()
        restricted = torch.bincount(kept[:, k].long(), weights=chance.repeat(repeats).double(),
                                    minlength=64)
        gap = 0.5 * (plain / plain.sum() - restricted / restricted.sum()).abs().sum()
        assert gap < 0.02, (k, gap)


def _quarters(envelope: _Envelope, position: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Each row's conditional vector and quarter of the normal law along its direction."""
    t = (z * envelope.direction.index_select(0, position)).sum(1).double()
    return position * 4 + torch.clamp((torch.special.ndtr(t) * 4).long(), max=3)


def _free(envelope: _Envelope, position: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The part of each row's noise orthogonal to its vector's direction."""
    along = envelope.direction.index_select(0, position)
    return z - (z * along).sum(1, keepdim=True) * along


@pytest.mark.parametrize("rows", [None, 1000])  # the largest first round, and the smallest
def test_the_envelope_keeps_the_inputs_in_the_filtered_models_proportions(
        model: Synthesizer, rows: int | None) -> None:
    """Rows kept through the envelope come from each conditional vector, and from each part of
    the noise along its direction, in proportion to pi(c) x N(z) x (the row's chance): what
    plain draws filtered by their chance give."""
    draw = _draw(model, {"sex": "Female", "Y": ">50K"})
    _, generator, cond = model._require_fitted()
    gen = torch.Generator().manual_seed(7)
    envelope = _Envelope(cond, generator.noise_dim, rows)
    assert envelope.pilot == (_Envelope.PILOT if rows is None else _Envelope.SMALLEST_PILOT)
    first = envelope.pilot
    _, position, z = envelope.propose(first, gen)  # the first round: the model itself
    chance = draw.chance(draw.first(first, position, gen, z).logits)
    envelope.learn(position, z, chance)
    assert envelope.mass < 0.3  # it does skip inputs that can hardly make such rows
    assert bool((envelope.bound >= SLACK).all())
    assert len(envelope.bound) > cond.width  # noise cut into cells along directions
    m = 1 << 17
    # the reference: fresh plain draws weighted by their chance (two of them differ by 0.03)
    _, position, z = _Envelope(cond, generator.noise_dim).propose(2 * m, gen)
    chance = draw.chance(draw.first(2 * m, position, gen, z).logits)
    plain = torch.bincount(_quarters(envelope, position, z), weights=chance,
                           minlength=4 * cond.width)
    low = envelope.bound < 0.5  # the cells the envelope draws less often
    plain_low = float(chance[low[envelope.cell_of(position, z)]].sum() / chance.sum())
    weight = (chance / chance.sum()).float().unsqueeze(1)
    free = _free(envelope, position, z)
    plain_free_mean, plain_free_square = (weight * free).sum(0), (weight * free ** 2).sum()

    proposed, position, z = envelope.propose(m, gen)
    # the noise lies in the cell proposed: a normal law truncated to it (but for a row within
    # float32 rounding of a cell's edge, a few in a million)
    assert float((envelope.cell_of(position, z) == proposed).double().mean()) > 0.9999
    # ... uniformly in its quantiles along the direction
    t = (z * envelope.direction.index_select(0, position)).sum(1).double()
    within = (torch.special.ndtr(t) - envelope.low[proposed]) / envelope.width[proposed]
    tenths = torch.bincount((within * 10).long().clamp(0, 9), minlength=10) / m
    assert float((tenths - 0.1).abs().max()) < 0.01, tenths
    chance = draw.chance(draw.first(m, position, gen, z).logits)
    keep = envelope.keep(proposed, chance, gen)
    kept = torch.bincount(_quarters(envelope, position[keep], z[keep]),
                          minlength=4 * cond.width).double()
    # kept without the bound: 0.12; with untruncated noise: 0.07
    gap = 0.5 * (plain / plain.sum() - kept / kept.sum()).abs().sum()
    assert gap < 0.05, gap
    # the cells drawn less often still give their share of the rows
    kept_low = float(low[proposed[keep]].double().mean())
    assert abs(kept_low / plain_low - 1) < 0.2, (kept_low, plain_low)
    # within its cell, the noise is the filtered model's: its free part too
    free = _free(envelope, position[keep], z[keep])
    assert float((free.mean(0) - plain_free_mean).abs().max()) < 0.05
    assert abs(float((free ** 2).sum(1).mean() / plain_free_square) - 1) < 0.03
    # a proposal is kept with probability share x mass: it stands for 1 / mass plain draws
    share = float(plain.sum()) / (2 * m)
    assert abs(float(keep.double().mean()) * envelope.mass - share) < 0.1 * share
