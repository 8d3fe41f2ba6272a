"""Generating synthetic rows from a trained generator, in chunks (reads no real row)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from synthgen.models.networks import FoldedGenerator, Generator
from synthgen.models.trainer import ConditionSampler
from synthgen.schema import ColumnKind
from synthgen.transform import BinGrid, Span, TableEncoder


class DeviceDecoder:
    """The arithmetic of ``TableEncoder.decode`` on the generator's device.

    Per discrete column the code (the slot, -1 for null); per numeric column the float64 value
    from its bin and the position inside it (NaN for null), exactly as the host's decode
    computes it. On a GPU node the host then only wraps arrays into columns: decoding on the
    host was what bounded the sampling rate.
    """

    def __init__(self, encoder: TableEncoder, device: torch.device) -> None:
        learned = encoder.learned
        numeric = [k for k, d in enumerate(learned)
                   if d.kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)]
        null_slot = [len(d.categories) + int(d.has_other) if k not in numeric
                     else len(d.bins) + len(d.codes) for k, d in enumerate(learned)]
        self.null_slot = torch.tensor(null_slot, dtype=torch.int32, device=device)
        self.numeric = torch.tensor(numeric, dtype=torch.long, device=device)
        # per numeric column, its bins' (start, width) in the interpolation space, flattened
        grids = [BinGrid.of(learned[k]) for k in numeric]
        offsets = np.cumsum([0, *[len(g.tlo) for g in grids]])[:-1]
        f64 = torch.float64
        self.offset = torch.tensor(offsets, dtype=torch.long, device=device)
        self.bins = torch.tensor([len(g.tlo) for g in grids], dtype=torch.long, device=device)
        self.tlo = torch.tensor(np.concatenate([g.tlo for g in grids]) if grids else [],
                                dtype=f64, device=device)
        self.width = torch.tensor(np.concatenate([g.width for g in grids]) if grids else [],
                                  dtype=f64, device=device)
        self.log_scale = torch.tensor([learned[k].log_scale for k in numeric], dtype=torch.bool,
                                      device=device)
        self.integer = torch.tensor([learned[k].kind is ColumnKind.INTEGER for k in numeric],
                                    dtype=torch.bool, device=device)
        # whole-number bins floor into their own values (see BinGrid.whole); others round
        self.whole = torch.tensor([g.whole for g in grids], dtype=torch.bool, device=device)
        self.unit = torch.tensor([g.unit for g in grids], dtype=f64, device=device)
        first = [g.first if g.first is not None else np.full(len(g.tlo), -np.inf) for g in grids]
        last = [g.last if g.last is not None else np.full(len(g.tlo), np.inf) for g in grids]
        self.first = torch.tensor(np.concatenate(first) if grids else [], dtype=f64,
                                  device=device)
        self.last = torch.tensor(np.concatenate(last) if grids else [], dtype=f64, device=device)

    def __call__(
        self, slots: torch.Tensor, scalars: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes: rows x columns, int32; values: rows x numeric columns, float64)."""
        null = slots == self.null_slot
        codes = torch.where(null, -1, slots)
        slot = slots.index_select(1, self.numeric).long()
        index = torch.minimum(slot, self.bins - 1) + self.offset
        u = (scalars.double().clamp(-1, 1) + 1) * 0.5
        t = self.tlo[index] + self.width[index] * u
        # clamped: expm1 runs on every column, and an overflow on a linear one (a timestamp)
        # would leave the CPU's sticky overflow flag set for numpy to trip over later
        log = torch.copysign(torch.expm1(t.abs().clamp(max=700.0)), t)
        x = torch.where(self.log_scale, log, t)
        whole = torch.minimum(torch.maximum(torch.floor(x / self.unit) * self.unit,
                                            self.first[index]), self.last[index])
        x = torch.where(self.whole, whole, torch.where(self.integer, torch.round(x), x))
        x = torch.where(null.index_select(1, self.numeric), torch.nan, x)
        return codes, x


def default_chunk(device: torch.device, width: int = 256) -> int:
    """Rows per generated chunk: large on a GPU (launches amortised over up to 1 M rows), small
    on a CPU (memory, streaming latency). A chunk's raw outputs and their Gumbel noise take
    three (rows x encoded width) float tensors, so wide encodings get fewer rows: at most
    2**28 floats (1 GiB) each."""
    if device.type != "cuda":
        return 65536
    rows = min(1 << 20, (1 << 28) // max(width, 1))
    return 1 << max(rows.bit_length() - 1, 12)  # a power of two, at least 4,096


def draw_positions(scalars: torch.Tensor, slots: torch.Tensor,
                   drawn: Sequence[tuple[int, int, Sequence[bool]]],
                   gen: torch.Generator | None) -> torch.Tensor:
    """``scalars`` with a uniform draw in [-1, 1) in place of the generator's scalar wherever
    ``drawn`` says (``TableEncoder.drawn_positions``: per scalar, its span in ``slots`` and
    which of that span's slots): a position inside the bin that the generator's collapsed
    scalar no longer decides. In place; every drawn column takes a draw for every row, so a
    seeded sample repeats."""
    for j, k, which in drawn:
        mask = torch.tensor(list(which), dtype=torch.bool, device=scalars.device)
        hit = mask[slots[:, k].long()]
        uniform = torch.rand(scalars.shape[0], generator=gen, device=scalars.device,
                             dtype=scalars.dtype)
        scalars[:, j] = torch.where(hit, uniform * 2 - 1, scalars[:, j])
    return scalars


@torch.no_grad()
def draw_slots(
    folded: FoldedGenerator, cond: ConditionSampler, m: int, nullable: list[bool],
    gen: torch.Generator | None, drawn: Sequence[tuple[int, int, Sequence[bool]]] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """``m`` rows, their conditional vectors drawn from the DP frequencies, on the model's
    device: (slot per one-hot span, int32; tanh scalars). A span whose column cannot hold
    nulls never draws its null slot; the positions ``drawn`` are uniform draws
    (:func:`draw_positions`)."""
    position = cond.positions(m, gen)
    z = torch.randn(m, folded.noise_dim, generator=gen, device=cond.device)
    raw = folded.logits(z, position)
    scalars = torch.tanh(raw.index_select(1, folded.tanh_columns))
    slots = gumbel_slots(raw, folded.softmax_spans, nullable, gen)
    return slots, draw_positions(scalars, slots, drawn, gen)


def gumbel_slots(
    raw: torch.Tensor, spans: list[Span], nullable: list[bool], gen: torch.Generator | None
) -> torch.Tensor:
    """A slot per one-hot span of ``raw`` (logits), drawn from its softmax: Gumbel noise over
    the whole row in one kernel, then an argmax per span (never the null slot where the column
    cannot hold nulls)."""
    noisy = raw - torch.empty_like(raw).exponential_(generator=gen).log_()
    slots = torch.empty(raw.shape[0], len(spans), dtype=torch.int32, device=raw.device)
    for k, (span, can_be_null) in enumerate(zip(spans, nullable, strict=True)):
        stop = span.stop if can_be_null else span.stop - 1
        slots[:, k] = noisy[:, span.start : stop].argmax(1)
    return slots


@torch.no_grad()
def generate_slots(
    generator: Generator,
    cond: ConditionSampler,
    n: int,
    nullable: list[bool],
    *,
    chunk: int | None = None,
    gen: torch.Generator | None = None,
    decoder: DeviceDecoder | None = None,
    drawn: Sequence[tuple[int, int, Sequence[bool]]] = (),
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Synthetic rows in chunks, as (slot per one-hot span, tanh scalars); no real row is read.

    A slot is drawn from the span's softmax with the Gumbel-max trick (what CTGAN's hard
    Gumbel-softmax does), on the model's device, so only small integer arrays cross to the CPU.
    A span whose column cannot hold nulls never draws its null slot; the positions ``drawn``
    (``TableEncoder.drawn_positions``) are uniform draws.

    On CUDA the next chunk is generated and copied (to pinned memory, asynchronously) while the
    caller decodes the current one, so the GPU and the CPU work at the same time. With a
    ``decoder`` the chunks are its output instead (codes and numeric values: pass them to
    ``TableEncoder.decode(..., predecoded=True)``).
    """
    generator.eval()
    device = cond.device
    chunk = chunk or default_chunk(device, generator.head.out_features)
    pinned = device.type == "cuda"
    folded = FoldedGenerator(generator)

    def produce(m: int) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None]:
        slots, scalars = draw_slots(folded, cond, m, nullable, gen, drawn)
        if decoder is not None:
            slots, scalars = decoder(slots, scalars)
        # Column-major on the host: decoding reads one column at a time, and a column of a
        # row-major (rows x columns) array touches every cache line of the whole array.
        slots, scalars = slots.t().contiguous(), scalars.t().contiguous()
        if not pinned:
            return slots, scalars, None
        host_slots = torch.empty(slots.shape, dtype=slots.dtype, pin_memory=True)
        host_scalars = torch.empty(scalars.shape, dtype=scalars.dtype, pin_memory=True)
        host_slots.copy_(slots, non_blocking=True)
        host_scalars.copy_(scalars, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return host_slots, host_scalars, done

    sizes = [min(chunk, n - start) for start in range(0, n, chunk)]
    pending = produce(sizes[0]) if sizes else None
    for i in range(len(sizes)):
        assert pending is not None
        slots, scalars, done = pending
        pending = produce(sizes[i + 1]) if i + 1 < len(sizes) else None
        if done is not None:
            done.synchronize()
        yield slots.numpy().T, scalars.numpy().T  # (rows x columns) views
