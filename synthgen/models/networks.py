"""The conditional GAN's networks (CTGAN family, written here; no CTGAN code).

The discriminator is a plain MLP of Linear layers (LeakyReLU, dropout, no normalisation), which is
what the fused DP step in :mod:`synthgen.models.dpsgd` clips exactly. The generator is never
private (its updates are post-processing), so it may use BatchNorm and residual blocks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from synthgen.transform import Span


class Discriminator(nn.Module):
    def __init__(
        self, input_dim: int, hidden: tuple[int, ...] = (256, 256), dropout: float = 0.25
    ) -> None:
        super().__init__()
        dims = [input_dim, *hidden, 1]
        pairs = zip(dims[:-1], dims[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.dropout = dropout
        self.negative_slope = 0.2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_taps(x)[0]

    def forward_with_taps(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Logits, and each Linear layer's input and output (for per-sample gradient norms)."""
        inputs: list[torch.Tensor] = []
        outputs: list[torch.Tensor] = []
        h = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            inputs.append(h)
            z = layer(h)
            outputs.append(z)
            if i < last:
                h = F.leaky_relu(z, self.negative_slope)
                if self.dropout and self.training:
                    h = F.dropout(h, self.dropout, training=True)
            else:
                h = z
        return h.squeeze(-1), inputs, outputs


class _Residual(nn.Module):
    def __init__(self, i: int, o: int) -> None:
        super().__init__()
        self.fc = nn.Linear(i, o)
        self.bn = nn.BatchNorm1d(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class Generator(nn.Module):
    def __init__(
        self, noise_dim: int, cond_dim: int, spans: list[Span], hidden: tuple[int, ...] = (256, 256)
    ) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        self.spans = spans
        blocks: list[nn.Module] = []
        dim = noise_dim + cond_dim
        for h in hidden:
            blocks.append(_Residual(dim, h))
            dim += h
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(dim, spans[-1].stop if spans else 0)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Raw outputs (logits for one-hot spans, pre-tanh for scalars)."""
        return self.head(self.body(torch.cat([z, cond], dim=1)))

    def activate(self, raw: torch.Tensor, tau: float = 0.2, hard: bool = False) -> torch.Tensor:
        """Apply each span's activation: Gumbel-softmax for one-hot spans, tanh for scalars."""
        parts = []
        for span in self.spans:
            block = raw[:, span.start : span.stop]
            if span.activation == "tanh":
                parts.append(torch.tanh(block))
            else:
                parts.append(F.gumbel_softmax(block, tau=tau, hard=hard))
        return torch.cat(parts, dim=1)
