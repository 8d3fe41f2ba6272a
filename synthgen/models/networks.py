"""The conditional GAN's networks (CTGAN family, written here; no CTGAN code).

The discriminator is a plain MLP of Linear layers (LeakyReLU, dropout, no normalisation), which is
what the fused DP step in :mod:`synthgen.models.dpsgd` clips exactly. The generator is never
private (its updates are post-processing), so it may use BatchNorm and residual blocks.
"""

from __future__ import annotations

from typing import cast

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


class SpanSegments(nn.Module):
    """The one-hot spans of an encoded row as segments of one flat tensor.

    A softmax or a log-sum-exp over every span is then a handful of kernels (dense gathers
    by segment) instead of a few per span: with 50 columns a per-span loop launched ~800
    small kernels per training iteration, which, not arithmetic, bounded the GPU's speed.
    """

    def __init__(self, spans: list[Span]) -> None:
        super().__init__()
        soft = [s for s in spans if s.activation == "softmax"]
        self.count = len(soft)
        self.register_buffer("columns", torch.tensor(
            [c for s in soft for c in range(s.start, s.stop)], dtype=torch.long),
            persistent=False)
        self.register_buffer("segment", torch.tensor(
            [k for k, s in enumerate(soft) for _ in range(s.width)], dtype=torch.long),
            persistent=False)
        self.register_buffer("tanh_columns", torch.tensor(
            [s.start for s in spans if s.activation == "tanh"], dtype=torch.long),
            persistent=False)
        # (segments x widest span) positions in x, padded with len(x's columns): a column of
        # -inf appended to x, so the per-segment maximum is one dense gather and reduction
        # (a scatter_reduce by segment contended on atomics: 0.1 ms at 16k rows on an H100).
        width = max((s.width for s in soft), default=1)
        padded = torch.full((len(soft), width), sum(s.width for s in soft), dtype=torch.long)
        offset = 0
        for k, s in enumerate(soft):
            padded[k, : s.width] = torch.arange(offset, offset + s.width)
            offset += s.width
        self.register_buffer("padded", padded.flatten(), persistent=False)
        self.starts = [s.start for s in soft]
        # the softmax segments' widths (in order), and the raw row's spans as split widths
        # with which of them are segments (spans are contiguous and in order there)
        self.widths = [s.width for s in soft]
        self.raw_widths = [s.width for s in spans]
        self.raw_softmax = [i for i, s in enumerate(spans) if s.activation == "softmax"]

    columns: torch.Tensor
    segment: torch.Tensor
    tanh_columns: torch.Tensor
    padded: torch.Tensor

    def _index(self, x: torch.Tensor) -> torch.Tensor:
        return self.segment.expand(x.shape[0], -1)

    def _max(self, x: torch.Tensor) -> torch.Tensor:
        """Per-row, per-segment maximum, detached: softmax(x - c) = softmax(x) for any c, so
        the shift is for range only and needs no gradient."""
        x = torch.cat([x.detach(), x.new_full((x.shape[0], 1), -torch.inf)], dim=1)
        return x.index_select(1, self.padded).view(x.shape[0], self.count, -1).amax(2)

    def _sum(self, e: torch.Tensor) -> torch.Tensor:
        """Per-row, per-segment sum (dense, like _max: no atomics)."""
        e = torch.cat([e, e.new_zeros(e.shape[0], 1)], dim=1)
        return e.index_select(1, self.padded).view(e.shape[0], self.count, -1).sum(2)

    def softmax(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax within each segment of x (rows x segment columns)."""
        index = self._index(x)
        e = (x - self._max(x).gather(1, index)).exp()
        return e / self._sum(e).gather(1, index)

    def logsumexp(self, x: torch.Tensor) -> torch.Tensor:
        """Log-sum-exp of each segment: rows x segments."""
        m = self._max(x)
        e = (x - m.gather(1, self._index(x))).exp()
        return m + self._sum(e).log()

    # On a CPU a loop over the segments' slices of the raw row is the faster form: kernel
    # launches cost microseconds there, while the dense gathers above read a segments x
    # widest-span block per row (3.8 times the softmax columns on Adult, whose widest span
    # has 65 slots of 272) and were most of the generator's non-matmul time.

    def softmax_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """:meth:`softmax` of ``raw.index_select(1, columns)``: the segments' softmax, read
        from the raw outputs (rows x every column)."""
        if raw.device.type != "cpu" or not self.count:
            return self.softmax(raw.index_select(1, self.columns))
        return torch.cat([F.softmax(x, 1) for x in self._pieces(raw)], 1)

    def logsumexp_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """:meth:`logsumexp` of ``raw.index_select(1, columns)``."""
        if raw.device.type != "cpu" or not self.count:
            return self.logsumexp(raw.index_select(1, self.columns))
        return torch.stack([torch.logsumexp(x, 1) for x in self._pieces(raw)], 1)

    def _pieces(self, raw: torch.Tensor) -> list[torch.Tensor]:
        """The segments' column blocks of ``raw``, by one split (whose backward is one
        concatenation: slicing each block apart would fill a zero gradient of the whole row
        per block)."""
        pieces = raw.split(self.raw_widths, 1)
        return [pieces[i] for i in self.raw_softmax]


class Generator(nn.Module):
    def __init__(
        self, noise_dim: int, cond_dim: int, spans: list[Span],
        hidden: tuple[int, ...] = (256, 256), forbidden: list[int] | None = None,
    ) -> None:
        """``forbidden``: one-hot columns whose released frequency is 0 (a bin or category the
        DP measurements found empty): their logits are pinned very low, so no generated row
        ever holds them (a value beyond the real range, a null that never occurs)."""
        super().__init__()
        self.noise_dim = noise_dim
        self.spans = spans
        self.segments = SpanSegments(spans)
        width = spans[-1].stop if spans else 0
        mask = torch.zeros(width, dtype=torch.bool)
        mask[list(forbidden or [])] = True
        self.register_buffer("forbidden", mask, persistent=False)
        self.masked = bool(mask.any())
        self.widths = [s.width for s in spans]
        blocks: list[nn.Module] = []
        dim = noise_dim + cond_dim
        for h in hidden:
            blocks.append(_Residual(dim, h))
            dim += h
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(dim, spans[-1].stop if spans else 0)

    forbidden: torch.Tensor

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Raw outputs (logits for one-hot spans, pre-tanh for scalars)."""
        x = torch.cat([z, cond], dim=1)
        if x.device.type == "cpu":
            raw = self._split_forward(x)
        else:
            raw = self.head(self.body(x))
        return raw.masked_fill(self.forbidden, -1e4) if self.masked else raw

    def _split_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same function as ``head(body(x))`` (the same parameters, summed in another
        order) without building the residual blocks' concatenations: a Linear over
        [a_k, ..., a_1, x] is the sum of one product per piece (its weight's column blocks),
        accumulated in place. On a CPU the generator's forward and backward at 2,036 rows
        took 10 % less so (Adult's widths); CUDA keeps the concatenations its graphs and
        GPU figures were measured with."""
        acts: list[torch.Tensor] = []  # latest first, as the concatenation lays them out

        def linear(layer: nn.Linear) -> torch.Tensor:
            w = layer.weight
            at = w.shape[1] - x.shape[1]
            y = torch.addmm(layer.bias, x, w[:, at:].t())
            at = 0
            for a in acts:
                y.addmm_(a, w[:, at:at + a.shape[1]].t())
                at += a.shape[1]
            return y

        for block in self.body:
            block = cast(_Residual, block)
            acts.insert(0, F.relu(block.bn(linear(block.fc))))
        return linear(self.head)

    def activate(
        self, raw: torch.Tensor, tau: float = 0.2, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Apply each span's activation: Gumbel-softmax (as ``F.gumbel_softmax``) for one-hot
        spans, tanh for scalars; all spans at once."""
        seg = self.segments
        # Gumbel noise as -log(-log U): the same law as F.gumbel_softmax's exponential_ draw,
        # at a fifth of its cost on a CPU (U = 0 gives -inf, a slot never drawn in that row)
        uniform = torch.rand((raw.shape[0], len(seg.columns)), generator=generator,
                             device=raw.device)
        gumbels = -(-uniform.log()).log()
        if raw.device.type == "cpu" and seg.count:  # span by span (see SpanSegments)
            noise = iter(gumbels.split(seg.widths, 1))
            return torch.cat([
                F.softmax((x + next(noise)) / tau, 1) if span.activation == "softmax"
                else torch.tanh(x)
                for span, x in zip(self.spans, raw.split(self.widths, 1), strict=True)], 1)
        logits = raw.index_select(1, seg.columns)
        soft = seg.softmax((logits + gumbels) / tau)
        out = raw.new_zeros(raw.shape).index_copy(1, seg.columns, soft)
        scalars = torch.tanh(raw.index_select(1, seg.tanh_columns))
        return out.index_copy(1, seg.tanh_columns, scalars)


class FoldedGenerator:
    """A trained generator's eval-mode arithmetic, rearranged for sampling (same function).

    Each BatchNorm is folded into the Linear before it; a residual block's concatenation
    ``[its output, its input]`` is never built: a Linear over a concatenation is the sum of
    one product per piece; and the conditional vector, one-hot, multiplies as a gather of one
    weight column. On a CPU the concatenations and the BatchNorm pass took as long as the
    matrix products, and a rejected draw in conditioned sampling costs the body alone.
    """

    BLOCK = 4096  # rows per block on a CPU (see logits)

    def __init__(self, generator: Generator) -> None:
        self.noise_dim = generator.noise_dim
        self.tanh_columns = generator.segments.tanh_columns
        self.softmax_spans = [s for s in generator.spans if s.activation == "softmax"]
        self.forbidden = cast(torch.Tensor, generator.forbidden)
        self.masked = generator.masked
        cond_dim = generator.head.in_features - generator.noise_dim - sum(
            cast(_Residual, b).fc.out_features for b in generator.body)
        self.layers: list[tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]]
        self.layers = []
        for block in generator.body:
            fc, bn = cast(_Residual, block).fc, cast(_Residual, block).bn
            scale = bn.weight / torch.sqrt(cast(torch.Tensor, bn.running_var) + bn.eps)
            weight = fc.weight * scale.unsqueeze(1)
            bias = (fc.bias - cast(torch.Tensor, bn.running_mean)) * scale + bn.bias
            pieces, wz, wc = self._split(weight, cond_dim)
            self.layers.append((pieces, wz, wc + bias.detach(), bias.detach()))
        self.head_pieces = self._split(generator.head.weight, cond_dim)
        self.head_bias = generator.head.bias.detach()
        self._whole = self.head()  # built once: logits uses it for every chunk of plain sampling

    def _split(self, weight: torch.Tensor, cond_dim: int
               ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """A Linear's weight over [a_k, ..., a_1, z, c] as transposed pieces: one per
        activation (in that order), z's, and c's rows (cond_dim x out, for gathering)."""
        w = weight.detach().t()
        hidden = w.shape[0] - self.noise_dim - cond_dim
        pieces, at = [], 0
        for layer in reversed(self.layers):  # the latest activation comes first
            width = layer[3].shape[0]
            pieces.append(w[at:at + width].contiguous())
            at += width
        assert at == hidden, "generator layout"
        return (pieces, w[at:at + self.noise_dim].contiguous(),
                w[at + self.noise_dim:].contiguous())

    def head(self, columns: torch.Tensor | None = None) -> _Head:
        """The output layer, whole or for some of its columns only: (weight pieces, z's
        weight, the one-hot's rows plus the bias, the bias, the forbidden columns)."""
        pieces, wz, wc = self.head_pieces
        bias, forbidden = self.head_bias, self.forbidden
        if columns is not None:
            pieces = [_narrow(w.index_select(1, columns)) for w in pieces]
            wz = _narrow(wz.index_select(1, columns))
            wc = wc.index_select(1, columns)
            bias, forbidden = bias.index_select(0, columns), forbidden.index_select(0, columns)
        return pieces, wz, wc + bias, bias, forbidden

    def logits(self, z: torch.Tensor, position: torch.Tensor | None,
               head: _Head | None = None) -> torch.Tensor:
        """Raw outputs (of ``head``'s columns; default all) for noise ``z`` and conditional
        vectors one-hot at ``position`` (None: the generator has no conditional columns), the
        forbidden slots pinned low. On a CPU in blocks of :attr:`BLOCK` rows: the activations
        of a block stay in the cache (65,536 rows at once ran 2.2 times slower)."""
        pieces, wz, wc_bias, bias, forbidden = head or self._whole
        block = max(z.shape[0], 1) if z.device.type == "cuda" else self.BLOCK
        out = z.new_empty(z.shape[0], bias.shape[0])
        for at in range(0, z.shape[0], block):
            zb = z[at:at + block]
            pb = None if position is None else position[at:at + block]
            acts = self._body(zb, pb)
            _affine(out[at:at + block], zb, pb, acts, pieces, wz, wc_bias, bias)
        return out.masked_fill_(forbidden, -1e4) if self.masked else out

    def _body(self, z: torch.Tensor, position: torch.Tensor | None) -> list[torch.Tensor]:
        """The activations [a_k, ..., a_1]."""
        acts: list[torch.Tensor] = []
        for pieces, wz, wc_bias, bias in self.layers:
            y = z.new_empty(z.shape[0], bias.shape[0])
            acts.insert(0, _affine(y, z, position, acts, pieces, wz, wc_bias, bias).relu_())
        return acts


def _narrow(weight: torch.Tensor) -> torch.Tensor:
    """A weight of few output columns stored column by column (the same matrix, transposed
    strides): a CPU product into under 16 columns ran 2.5-4 times faster so (the few
    columns a rejected draw in conditioned sampling needs)."""
    return weight.t().contiguous().t() if weight.shape[1] < 16 else weight


_Head = tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _affine(out: torch.Tensor, z: torch.Tensor, position: torch.Tensor | None,
            acts: list[torch.Tensor], pieces: list[torch.Tensor], wz: torch.Tensor,
            wc_bias: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A Linear over the concatenation [acts..., z, one-hot(position)], into ``out``;
    ``wc_bias`` is the one-hot's rows with the bias added (one gather writes both)."""
    if position is None:
        torch.addmm(bias, z, wz, out=out)
    else:
        torch.index_select(wc_bias, 0, position, out=out)
        out.addmm_(z, wz)
    for a, w in zip(acts, pieces, strict=True):
        out.addmm_(a, w)
    return out
