"""The trainer's samplers and its fixed-size (padded) batches, on the CPU."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from synthgen.models.sampling import DeviceDecoder, generate_slots
from synthgen.models.trainer import (
    ConditionSampler,
    GANTrainer,
    TrainingConfig,
    padded_batch_size,
)
from synthgen.privacy.domains import ColumnDomain
from synthgen.schema import ColumnKind
from synthgen.transform import TableEncoder

CPU = torch.device("cpu")


def encoder_with(frequencies: list[list[float]]) -> TableEncoder:
    domains = []
    for i, freq in enumerate(frequencies):
        cats = [f"v{j}" for j in range(len(freq) - 1)]  # last slot: null
        domains.append(ColumnDomain(f"c{i}", ColumnKind.CATEGORICAL, "object", "public",
                                    categories=cats, frequencies=freq))
    domains.append(ColumnDomain("x", ColumnKind.CONTINUOUS, "float64", "public",
                                bins=[(0.0, 1.0), (1.0, 2.0)], frequencies=[0.5, 0.5, 0.0]))
    return TableEncoder(domains)


def test_condition_draws_follow_the_dp_frequencies() -> None:
    freqs = [[0.7, 0.2, 0.1, 0.0], [0.05, 0.95, 0.0], [0.25, 0.25, 0.25, 0.25, 0.0]]
    sampler = ConditionSampler.for_encoder(encoder_with(freqs), CPU)
    n = 300_000
    cond, chosen = sampler.draw(n, torch.Generator().manual_seed(0))
    assert torch.all(cond.sum(1) == 1)  # exactly one hot slot per row
    offset = 0
    for k, freq in enumerate(freqs):
        block = cond[:, offset : offset + len(freq)][chosen == k]
        offset += len(freq)
        assert (chosen == k).float().mean().item() == pytest.approx(1 / 3, abs=0.01)
        observed = block.mean(0).numpy()
        np.testing.assert_allclose(observed, freq, atol=0.006)


def test_padded_capacity_is_six_sigma_above_the_expected_batch() -> None:
    assert padded_batch_size(10_000, 10**6) == 10_000 + 600 + 16
    assert padded_batch_size(100, 110) == 110  # never more than the table
    # P(Poisson batch > capacity) is negligible, and the overflow path is exact anyway
    b = 16_384
    cap = padded_batch_size(b, 10**6)
    z = (cap - b) / math.sqrt(b)
    assert z >= 6


def test_generated_slots_respect_non_nullable_columns() -> None:
    enc = encoder_with([[0.5, 0.5, 0.0]])
    trainer = GANTrainer(enc, TrainingConfig(), CPU, seed=0)
    blocks = list(generate_slots(trainer.generator, trainer.cond, 5000, [False, False],
                                 chunk=1024, gen=torch.Generator().manual_seed(1)))
    slots = np.concatenate([b[0] for b in blocks])
    scalars = np.concatenate([b[1] for b in blocks])
    assert slots.shape == (5000, 2) and scalars.shape == (5000, 1)
    assert slots[:, 0].max() < 2 and slots[:, 1].max() < 2  # the null slot never drawn
    assert np.all(np.abs(scalars) <= 1)


def test_training_reads_the_compact_table(people: pd.DataFrame) -> None:
    """The trainer builds one-hot rows from (slots, scalars) exactly as the dense encoding."""
    from synthgen.privacy import BudgetPlan
    from synthgen.privacy.domains import estimate_domains
    from synthgen.schema import infer_schema

    est = estimate_domains(people, infer_schema(people), BudgetPlan(1.0, 1e-6),
                           np.random.default_rng(0))
    enc = TableEncoder(est.domains)
    table = enc.encode(people)
    trainer = GANTrainer(enc, TrainingConfig(), CPU, seed=0)
    trainer._hot = torch.from_numpy(table.slots).long() + torch.from_numpy(enc.slot_starts)
    trainer._scalars = torch.from_numpy(table.scalars)
    index = torch.tensor([0, 5, 7, 5])
    dense = torch.from_numpy(enc.transform(people))[index]
    torch.testing.assert_close(trainer._real_rows(index), dense)


def test_segment_softmax_and_logsumexp_equal_per_span_ones() -> None:
    from synthgen.models.networks import SpanSegments
    from synthgen.transform import Span

    spans = [Span("a", 0, 3, "softmax"), Span("x", 3, 1, "tanh"), Span("b", 4, 1, "softmax"),
             Span("c", 5, 6, "softmax")]
    seg = SpanSegments(spans)
    raw = torch.randn(40, 11, generator=torch.Generator().manual_seed(0)) * 30  # wide range
    x = raw.index_select(1, seg.columns).requires_grad_(True)
    soft, lse = seg.softmax(x), seg.logsumexp(x)
    offset = 0
    for k, span in enumerate(s for s in spans if s.activation == "softmax"):
        block = x[:, offset : offset + span.width]
        torch.testing.assert_close(soft[:, offset : offset + span.width], block.softmax(1))
        torch.testing.assert_close(lse[:, k], block.logsumexp(1))
        offset += span.width
    # gradients too (the shift by the detached maximum must not change them)
    w = torch.randn_like(soft)
    (g,) = torch.autograd.grad((soft * w).sum() + lse.sum(), x)
    ref = torch.cat([
        torch.autograd.grad((x[:, o : o + n].softmax(1) * w[:, o : o + n]).sum()
                            + x[:, o : o + n].logsumexp(1).sum(), x)[0][:, o : o + n]
        for o, n in ((0, 3), (3, 1), (4, 6))], dim=1)
    torch.testing.assert_close(g, ref)


def test_vectorised_losses_equal_per_span_loops(people: pd.DataFrame) -> None:
    """The generator's condition and marginal losses, all spans at once, equal the per-span
    definitions (CTGAN's cross-entropy on the conditioned span; KL per span, averaged)."""
    from torch.nn import functional as F

    from synthgen.privacy import BudgetPlan
    from synthgen.privacy.domains import estimate_domains
    from synthgen.schema import infer_schema

    est = estimate_domains(people, infer_schema(people), BudgetPlan(1.0, 1e-6),
                           np.random.default_rng(0))
    enc = TableEncoder(est.domains)
    trainer = GANTrainer(enc, TrainingConfig(), CPU, seed=0)
    fake, raw, cond, chosen = trainer._fake(300)
    expected_ce = raw.new_zeros(300)
    offset = 0
    for k, span in enumerate(trainer.cond.spans):
        target = cond[:, offset : offset + span.width].argmax(1)
        ce = F.cross_entropy(raw[:, span.start : span.stop], target, reduction="none")
        expected_ce = expected_ce + ce * (chosen == k)
        offset += span.width
    torch.testing.assert_close(trainer._condition_loss(raw, cond, chosen), expected_ce.mean())

    total = fake.new_zeros(())
    for span, domain in zip(enc.discrete_spans, enc.learned, strict=True):
        groups = [*domain.bin_groups, -1] if domain.bin_groups else list(range(span.width))
        _, group_of = np.unique(groups, return_inverse=True)
        onehot = torch.zeros(span.width, int(group_of.max()) + 1)
        onehot[torch.arange(span.width), torch.from_numpy(group_of)] = 1.0
        target = torch.tensor(domain.frequencies, dtype=torch.float32) @ onehot
        q = (fake[:, span.start : span.stop].mean(0) @ onehot).clamp_min(1e-6)
        total = total + (target * (target.clamp_min(1e-6).log() - q.log())).sum()
    torch.testing.assert_close(trainer._marginal_loss(fake), total / len(enc.discrete_spans))
    # the activation is a Gumbel-softmax per span: each span of a fake row sums to 1
    for span in enc.spans:
        block = fake[:, span.start : span.stop]
        if span.activation == "softmax":
            torch.testing.assert_close(block.sum(1), torch.ones(300))
        else:
            assert block.abs().max() <= 1


def test_device_decoder_equals_the_host_decode(people: pd.DataFrame) -> None:
    """GPU nodes decode on the device: the same columns as the host's numpy decode (here on
    the CPU, the same torch code)."""
    from synthgen.privacy import BudgetPlan
    from synthgen.privacy.domains import estimate_domains
    from synthgen.schema import infer_schema

    est = estimate_domains(people, infer_schema(people), BudgetPlan(1.0, 1e-6),
                           np.random.default_rng(0))
    enc = TableEncoder(est.domains)
    trainer = GANTrainer(enc, TrainingConfig(), CPU, seed=0)
    gen = torch.Generator().manual_seed(3)
    (slots, scalars), = generate_slots(trainer.generator, trainer.cond, 4000, enc.nullable,
                                       gen=gen)
    gen.manual_seed(3)
    (codes, values), = generate_slots(trainer.generator, trainer.cond, 4000, enc.nullable,
                                      gen=gen, decoder=DeviceDecoder(enc, CPU))
    host = enc.decode(slots, scalars)
    device = enc.decode(codes, values, predecoded=True, threads=4)
    pd.testing.assert_frame_equal(device, host, check_exact=False, rtol=1e-12)
    assert host.isna().any().any()  # nulls are exercised


def test_default_epochs_grow_with_epsilon_above_three() -> None:
    from synthgen import Synthesizer
    from synthgen.models.trainer import default_epochs

    assert default_epochs(1.0) == default_epochs(3.0) == 30.0
    assert 30.0 < default_epochs(5.0) < 60.0 == default_epochs(10.0) == default_epochs(50.0)
    assert Synthesizer(epsilon=10.0).config.epochs == 60.0
    assert Synthesizer(epsilon=10.0, epochs=5).config.epochs == 5.0
