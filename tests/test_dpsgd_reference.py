"""The fused DP step (synthgen.models.dpsgd) against the reference Opacus 1.6 path.

The reference is the "real-only DP + public fake gradient" D step (research notes, opacus.md §2
pattern (b)): an identical copy of the discriminator wrapped in ``GradSampleModule`` (hooks,
summed loss) and stepped by a ``DPOptimizer``. The optimizer clips and noises the per-sample
gradients of the real rows; the fake rows' gradient, computed with the hooks off, is added after
``pre_step()`` (which overwrites ``p.grad`` with ``summed_grad + noise``), divided by the
expected batch size like our step does. If both agree, our clipping, noise and scaling are
Opacus's, and our privacy accounting (which assumes Opacus's mechanism) holds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _generate_noise
from torch.nn import functional as F

from synthgen.models.dpsgd import (
    clipped_gradients,
    noised_update,
    private_discriminator_step,
)
from synthgen.models.networks import Discriminator

D_IN = 12
HIDDEN = (16, 16)
MAX_GRAD_NORM = 0.5
EXPECTED_BATCH = 6.0
SEED = 1234

# Opacus's full backward hooks warn when the input does not require grad (our rows never do);
# expected and harmless here.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


def make_disc(dtype: torch.dtype = torch.float32) -> Discriminator:
    torch.manual_seed(0)
    # Dropout 0: a dropout mask is drawn from the global RNG, so the two paths would differ.
    return Discriminator(D_IN, HIDDEN, dropout=0.0).to(dtype)


def make_rows(n_real: int, n_fake: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.randn(n_real + n_fake, D_IN, generator=g, dtype=dtype)


@dataclass
class Reference:
    clipped_sum: list[torch.Tensor]  # clipped real sum + unclipped fake sum (no noise, no scale)
    update: list[torch.Tensor]  # what the optimizer would apply: (clipped + noise + fake) / B
    norms: torch.Tensor  # per-real-row gradient norms from Opacus's grad_sample


def opacus_reference(
    disc: Discriminator, rows: torch.Tensor, n_real: int, noise_multiplier: float, seed: int
) -> Reference:
    gsm = GradSampleModule(copy.deepcopy(disc), batch_first=True, loss_reduction="sum")
    params = [p for p in gsm.parameters() if p.requires_grad]
    # loss_reduction="mean" on the optimizer only makes scale_grad() divide by
    # expected_batch_size; the per-sample gradients are of the per-row (summed) loss.
    opt = DPOptimizer(
        torch.optim.SGD(params, lr=0.0),
        noise_multiplier=noise_multiplier,
        max_grad_norm=MAX_GRAD_NORM,
        expected_batch_size=int(EXPECTED_BATCH),
        loss_reduction="mean",
        generator=torch.Generator().manual_seed(seed),
    )
    real, fake = rows[:n_real], rows[n_real:]

    gsm.disable_hooks()
    fake_logits = gsm(fake)
    fake_loss = F.binary_cross_entropy_with_logits(
        fake_logits, torch.zeros_like(fake_logits), reduction="sum"
    )
    fake_grads = torch.autograd.grad(fake_loss, params)
    gsm.enable_hooks()

    opt.zero_grad(set_to_none=True)
    real_logits = gsm(real)
    F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits), reduction="sum"
    ).backward()
    per_param = [p.grad_sample.flatten(start_dim=1).norm(dim=1) for p in params]
    norms = torch.stack(per_param, dim=1).norm(dim=1)
    assert opt.pre_step()
    clipped = [p.summed_grad + g for p, g in zip(params, fake_grads, strict=True)]
    update = [p.grad + g / EXPECTED_BATCH for p, g in zip(params, fake_grads, strict=True)]
    return Reference([c.detach() for c in clipped], [u.detach() for u in update], norms.detach())


def ours(
    disc: Discriminator, rows: torch.Tensor, n_real: int, noise_multiplier: float, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    grads, norms, _ = clipped_gradients(disc, rows, n_real, MAX_GRAD_NORM)
    update = noised_update(
        grads, noise_multiplier, MAX_GRAD_NORM, EXPECTED_BATCH,
        generator=torch.Generator().manual_seed(seed),
    )
    return grads, update, norms


def assert_all_close(a: list[torch.Tensor], b: list[torch.Tensor], atol: float) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.shape == y.shape, f"parameter {i}: shape {x.shape} != {y.shape}"
        torch.testing.assert_close(x, y, atol=atol, rtol=1e-5, msg=f"parameter {i}")


@pytest.mark.parametrize("n_real", [5, 1])
def test_clipped_sum_equals_opacus_without_noise(n_real: int) -> None:
    disc = make_disc()
    rows = make_rows(n_real, 7)
    ref = opacus_reference(disc, rows, n_real, noise_multiplier=0.0, seed=SEED)
    grads, update, norms = ours(disc, rows, n_real, noise_multiplier=0.0, seed=SEED)
    assert_all_close(grads, ref.clipped_sum, atol=1e-5)
    assert_all_close(update, ref.update, atol=1e-6)
    # Plain tensors, like Opacus's p.grad: no autograd graph over the forward kept alive.
    assert not any(g.requires_grad for g in grads)
    # Some real rows must actually be clipped, or this test would not test clipping.
    assert (norms > MAX_GRAD_NORM).any()


def test_per_sample_norms_equal_opacus_grad_sample_norms() -> None:
    disc = make_disc()
    rows = make_rows(5, 7)
    ref = opacus_reference(disc, rows, 5, noise_multiplier=0.0, seed=SEED)
    _, _, norms = ours(disc, rows, 5, noise_multiplier=0.0, seed=SEED)
    torch.testing.assert_close(norms, ref.norms, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noised_update_equals_opacus_with_same_generator_seed(dtype: torch.dtype) -> None:
    disc = make_disc(dtype)
    rows = make_rows(5, 7, dtype)
    ref = opacus_reference(disc, rows, 5, noise_multiplier=1.3, seed=SEED)
    grads, update, _ = ours(disc, rows, 5, noise_multiplier=1.3, seed=SEED)
    assert_all_close(grads, ref.clipped_sum, atol=1e-5)
    # Same generator, same draw order (disc.parameters() order, one torch.normal each, in the
    # parameter's dtype): the noised updates agree to rounding.
    assert_all_close(update, ref.update, atol=1e-6)
    # And the noise is really there (std sigma*C/B = 0.108 per coordinate).
    no_noise = noised_update(grads, 0.0, MAX_GRAD_NORM, EXPECTED_BATCH)
    diff = torch.cat([(u - n).flatten() for u, n in zip(update, no_noise, strict=True)])
    assert 0.07 < float(diff.std()) < 0.15


def test_noise_tensors_equal_opacus_generate_noise() -> None:
    """Per parameter, the same generator state gives the same noise as Opacus's _generate_noise."""
    disc = make_disc()
    zeros = [torch.zeros_like(p) for p in disc.parameters()]
    std = 1.3 * MAX_GRAD_NORM
    ours_noise = noised_update(zeros, 1.3, MAX_GRAD_NORM, 1.0, torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)
    theirs = [_generate_noise(std=std, reference=z, generator=gen) for z in zeros]
    assert_all_close(ours_noise, theirs, atol=0.0)


def test_huge_real_row_is_clipped_to_max_grad_norm() -> None:
    disc = make_disc()
    row = make_rows(1, 0) * 1e3
    grads, norms, _ = clipped_gradients(disc, row, 1, MAX_GRAD_NORM)
    assert float(norms[0]) > 100 * MAX_GRAD_NORM
    total = torch.cat([g.flatten() for g in grads]).norm()
    assert float(total) == pytest.approx(MAX_GRAD_NORM, rel=1e-4)


def test_fake_rows_are_not_clipped() -> None:
    disc = make_disc()
    rows = make_rows(0, 4) * 1e3  # huge gradients, all fake
    grads, norms, _ = clipped_gradients(disc, rows, 0, MAX_GRAD_NORM)
    assert norms.shape == (0,)
    logits = disc(rows)
    plain = torch.autograd.grad(
        F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="sum"),
        list(disc.parameters()),
    )
    assert_all_close(grads, list(plain), atol=1e-3)
    assert float(torch.cat([g.flatten() for g in grads]).norm()) > 100 * MAX_GRAD_NORM


def test_empty_real_batch_equals_opacus() -> None:
    """A Poisson sample can be empty: the update is then the fake gradient plus pure noise."""
    disc = make_disc()
    rows = make_rows(0, 7)
    for sigma in (0.0, 1.3):
        ref = opacus_reference(disc, rows, 0, noise_multiplier=sigma, seed=SEED)
        grads, update, norms = ours(disc, rows, 0, noise_multiplier=sigma, seed=SEED)
        assert norms.shape == (0,)
        assert_all_close(grads, ref.clipped_sum, atol=1e-5)
        assert_all_close(update, ref.update, atol=1e-6)


def test_private_step_applies_the_noised_update() -> None:
    """private_discriminator_step with SGD(lr=1) moves the weights by exactly -update."""
    disc = make_disc()
    rows = make_rows(5, 7)
    _, update, _ = ours(disc, rows, 5, noise_multiplier=1.3, seed=SEED)
    before = [p.detach().clone() for p in disc.parameters()]
    opt = torch.optim.SGD(disc.parameters(), lr=1.0)
    private_discriminator_step(
        disc, opt, rows, 5, noise_multiplier=1.3, max_grad_norm=MAX_GRAD_NORM,
        expected_batch_size=EXPECTED_BATCH, generator=torch.Generator().manual_seed(SEED),
    )
    moved = [b - p.detach() for b, p in zip(before, disc.parameters(), strict=True)]
    assert_all_close(moved, update, atol=1e-6)
    assert all(p.grad is None for p in disc.parameters())


def test_padded_rows_with_zero_weight_change_nothing() -> None:
    """A fixed-size batch (for CUDA graphs) pads the real rows; padding must add exactly 0."""
    disc = make_disc()
    rows = make_rows(5, 7)
    grads, norms, _ = clipped_gradients(disc, rows, 5, MAX_GRAD_NORM)
    padding = rows[:3] * 10  # any values: duplicates of real rows, huge ones
    padded = torch.cat([rows[:5], padding, rows[5:]])
    weight = torch.tensor([1.0] * 5 + [0.0] * 3)
    p_grads, p_norms, _ = clipped_gradients(disc, padded, 8, MAX_GRAD_NORM, weight)
    assert_all_close(p_grads, grads, atol=1e-6)
    torch.testing.assert_close(p_norms[:5], norms)
    assert torch.all(p_norms[5:] == 0)


def test_weighted_fake_rows_add_their_weighted_gradient_only() -> None:
    """fake_weight (the trainer's B / generated rows) scales the generated rows' unclipped
    gradient and nothing else: the real rows' clipped sum and norms are those of weight 1."""
    disc = make_disc()
    rows = make_rows(5, 3)
    grads, norms, _ = clipped_gradients(disc, rows, 5, MAX_GRAD_NORM)
    real_only, real_norms, _ = clipped_gradients(disc, rows[:5], 5, MAX_GRAD_NORM)
    w_grads, w_norms, _ = clipped_gradients(disc, rows, 5, MAX_GRAD_NORM, fake_weight=2.5)
    fake = [g - r for g, r in zip(grads, real_only, strict=True)]
    assert_all_close(w_grads, [r + 2.5 * f for r, f in zip(real_only, fake, strict=True)],
                     atol=1e-5)
    torch.testing.assert_close(w_norms, norms)
    torch.testing.assert_close(w_norms, real_norms)


def test_weighted_fake_rows_leave_a_huge_real_row_clipped() -> None:
    """With generated rows weighted, a real row's contribution is still at most max_grad_norm
    (the weight must never reach the real rows after their clipping)."""
    disc = make_disc()
    rows = torch.cat([make_rows(1, 0) * 1e3, make_rows(0, 4)])
    fake_only, _, _ = clipped_gradients(disc, rows[1:], 0, MAX_GRAD_NORM)
    for weight in (1.0, 3.0):
        grads, norms, _ = clipped_gradients(disc, rows, 1, MAX_GRAD_NORM, fake_weight=weight)
        assert float(norms[0]) > 100 * MAX_GRAD_NORM
        real = torch.cat([(g - weight * f).flatten()
                          for g, f in zip(grads, fake_only, strict=True)])
        assert float(real.norm()) == pytest.approx(MAX_GRAD_NORM, rel=1e-4)
