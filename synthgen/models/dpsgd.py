"""A fused DP-SGD step for the discriminator: exact per-sample clipping without per-sample
gradients.

For a Linear layer z = a W^T + b applied to 2-D inputs, the per-sample gradient of W is the
outer product b_i a_i^T, so its squared norm is ||a_i||^2 ||b_i||^2 and the bias's is ||b_i||^2
(Opacus's "ghost clipping" identity). One forward over [real; fake] rows, one
``autograd.grad`` of the summed loss with respect to every layer output gives every b_i; the
clipped sum is then one matmul per layer: (c * B)^T A.

Privacy is the same as Opacus's DPOptimizer on the real rows: each real row's whole gradient is
clipped to ``max_grad_norm``; Gaussian noise of std ``noise_multiplier * max_grad_norm`` (drawn with
``torch.normal`` like Opacus's ``_generate_noise``) is added to the sum; the result is divided by
the expected batch size. Fake rows are a function of the (already private) generator, so their
gradient is added unclipped, in the same backward pass (the real-only-DP pattern; one charge per
step, never two).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from synthgen.models.networks import Discriminator
from synthgen.privacy.release import GradientRelease


def discriminator_loss_terms(logits: torch.Tensor, n_real: int) -> torch.Tensor:
    """Per-row logistic loss: real rows labelled 1, the rest 0."""
    labels = torch.zeros_like(logits)
    labels[:n_real] = 1.0
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none")


def clipped_gradients(
    disc: Discriminator,
    rows: torch.Tensor,
    n_real: int,
    max_grad_norm: float,
    real_weight: torch.Tensor | None = None,
    fake_weight: float = 1.0,
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """The summed gradient with the first ``n_real`` rows clipped; per-row norms; the loss.

    ``real_weight`` (0 or 1 per real row) marks padding in a fixed-size batch: a padded row's
    loss is multiplied by 0, so its backprop, norm and gradient are exactly zero and the sum is
    that of the unpadded batch. Fixed shapes are what lets a CUDA graph replay the step.
    ``fake_weight`` multiplies the generated rows' (unclipped) loss: fewer generated rows than
    real ones can weigh as many. It never reaches the real rows, whose clipping bounds each
    one's contribution by ``max_grad_norm`` whatever the generated rows are.

    Returns one tensor per parameter, in ``disc.parameters()`` order (weight, bias per layer).
    """
    logits, inputs, outputs = disc.forward_with_taps(rows)
    loss = discriminator_loss_terms(logits, n_real)
    if real_weight is not None or fake_weight != 1.0:
        ones = rows.new_ones(n_real) if real_weight is None else real_weight
        weight = torch.cat([ones, rows.new_full((rows.shape[0] - n_real,), fake_weight)])
        loss = loss * weight
        shown = loss.sum() / weight.sum().clamp_min(1.0)
    else:
        shown = loss.mean()
    backprops = torch.autograd.grad(loss.sum(), outputs)
    inputs = [a.detach() for a in inputs]  # the clipping arithmetic below must build no graph
    sq_norms = torch.zeros(rows.shape[0], dtype=rows.dtype, device=rows.device)
    for a, b in zip(inputs, backprops, strict=True):
        # squared row norms (one fused reduction each; a.pow(2).sum(1) wrote a squared copy)
        b_sq = torch.linalg.vector_norm(b, dim=1).square()
        sq_norms = sq_norms + (torch.linalg.vector_norm(a, dim=1).square() + 1.0) * b_sq
    norms = sq_norms.sqrt()
    coef = torch.ones_like(norms)
    coef[:n_real] = (max_grad_norm / (norms[:n_real] + 1e-6)).clamp(max=1.0)
    grads: list[torch.Tensor] = []
    for a, b in zip(inputs, backprops, strict=True):
        scaled = b * coef.unsqueeze(1)
        grads.append(scaled.t() @ a.detach())
        grads.append(scaled.sum(0))
    return grads, norms[:n_real].detach(), shown.detach()


def noised_update(
    grads: list[torch.Tensor],
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch_size: float,
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """Add Gaussian noise to each summed gradient and divide by the expected batch size."""
    std = noise_multiplier * max_grad_norm
    out = []
    for g in grads:
        noise = torch.normal(
            mean=0.0, std=std, size=g.shape, device=g.device, dtype=g.dtype, generator=generator
        )
        out.append((g + noise) / expected_batch_size)
    return out


def private_discriminator_step(
    disc: Discriminator,
    optimizer: torch.optim.Optimizer,
    rows: torch.Tensor,
    n_real: int,
    *,
    release: GradientRelease | None = None,
    noise_multiplier: float | None = None,
    max_grad_norm: float | None = None,
    expected_batch_size: float,
    generator: torch.Generator | None = None,
    real_weight: torch.Tensor | None = None,
    fake_weight: float = 1.0,
) -> torch.Tensor:
    """One private step of the discriminator; returns the mean loss (for display only).

    ``release`` (a fit's DP-SGD release) holds the clipping norm and noise multiplier, adds
    the noise and records what it released; on its own (a test, a benchmark) the step takes
    ``noise_multiplier`` and ``max_grad_norm`` instead. The loss stays a device tensor: reading
    it would wait for the GPU, and a CUDA graph cannot wait.
    """
    if release is not None and (noise_multiplier is not None or max_grad_norm is not None):
        raise ValueError("a private step takes its noise and norm from its release")
    if release is None:
        if noise_multiplier is None or max_grad_norm is None:
            raise ValueError("a private step needs a release, or a noise multiplier and norm")
        release = GradientRelease(noise_multiplier, max_grad_norm, 1.0, rows.device, seed=0)
    grads, _, loss = clipped_gradients(disc, rows, n_real, release.max_grad_norm, real_weight,
                                        fake_weight)
    update = [g / expected_batch_size for g in release.noisy_sum(grads, generator)]
    for p, g in zip(disc.parameters(), update, strict=True):
        p.grad = g
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss
