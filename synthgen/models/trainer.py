"""The DP training loop of the conditional GAN.

Accounting holds because:
- real rows are drawn by Poisson sampling with a fixed rate q (each row independently), never by
  category; a real row's conditional vector is taken from the row itself;
- the generator's conditional vectors are drawn from DP frequencies (the domain histograms);
- only the discriminator step reads real rows, once per step, through the fused DP step;
- the generator step sees only the discriminator and the DP frequencies (post-processing);
- training runs exactly the calibrated number of steps: no early stopping or model selection on
  real data. A cancelled run stops early; its ledger records the steps it ran.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from synthgen.models.dpsgd import private_discriminator_step
from synthgen.models.networks import Discriminator, Generator
from synthgen.privacy.marginals import Marginal
from synthgen.privacy.release import GradientRelease
from synthgen.timing import StageClock
from synthgen.transform import EncodedTable, Span, TableEncoder


def fresh_seed() -> int:
    """A 63-bit seed from the OS's entropy, for runs without --seed. Not from numpy's global
    generator: any library calling ``np.random.seed`` would make the noise predictable."""
    return int.from_bytes(os.urandom(8), "little") >> 1


def noise_rng(seed: int | None, *stream: int) -> np.random.Generator:
    """NumPy's generator for privacy noise: seeded by ``seed`` (a secret: anyone who knows it
    regenerates the noise) for a reproducible run, else by 128 bits of OS entropy (``secrets``),
    never by numpy's global state or anything published. ``stream`` picks an independent
    stream of the same seed."""
    if seed is None:
        return np.random.default_rng(secrets.randbits(128))
    return np.random.default_rng([seed, *stream] if stream else seed)


TRAINING_ENV = "SYNTHGEN_TRAINING"


def env_overrides() -> dict[str, Any]:
    """``$SYNTHGEN_TRAINING``: a JSON object of :class:`TrainingConfig` fields that replace the
    defaults (not what a caller passes: ``epochs=`` / ``--epochs`` still win). For quick trial
    runs and tests, e.g. ``SYNTHGEN_TRAINING='{"epochs": 1, "table_warmup_steps": 20}'``; the
    report's ``training.config`` shows what ran. Public settings: no budget, no row read."""
    raw = os.environ.get(TRAINING_ENV, "").strip()
    if not raw:
        return {}
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{TRAINING_ENV} is not JSON: {exc}") from None
    known = {f.name for f in fields(TrainingConfig)}
    if not isinstance(values, dict) or set(values) - known:
        raise ValueError(f"{TRAINING_ENV} must be a JSON object of training settings ("
                         f"{', '.join(sorted(known))}); got {raw!r}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def default_epochs(epsilon: float) -> float:
    """30 epochs up to epsilon 3, then more as the budget affords them, 60 from epsilon 10: at
    large epsilons DP-SGD's noise per step is small and the number of steps, not the noise,
    bounds what the discriminator learns. Adult, 3 seeds, 2 cores (bench/README.md): at
    epsilon 10 TSTR AUC 0.878 at 30 epochs, 0.883 at 60; at epsilon 3 0.879 and 0.882, within
    the seeds' spread, for twice the time."""
    if epsilon <= 3.0:
        return 30.0
    return round(30.0 * min(2.0, 1.0 + math.log(epsilon / 3.0) / math.log(10.0 / 3.0)), 1)


@dataclass
class TrainingConfig:
    epochs: float = 30.0
    batch_size: int | None = None  # expected real rows per step; default from the table size
    max_grad_norm: float = 1.0
    lr_d: float = 1e-3
    lr_g: float = 1e-3
    generator_steps: int = 1
    # Rows a generator step generates, as a share of the expected batch B (at least one row;
    # the table loss reads the first table_rows of them). The next DP step's generated rows
    # are these, their loss weighted B / rows so that they weigh as B generated rows would
    # (post-processing: no real row is read, and each real row is still clipped to
    # max_grad_norm). Half of B: the generator's side was two thirds of a DP-SGD step on a CPU.
    generator_share: float = 0.5
    # Exponential moving average of the generator's weights, sampled from at the end
    # (post-processing: it reads no data). 0 turns it off.
    ema_decay: float = 0.95
    noise_dim: int = 64
    d_hidden: tuple[int, ...] = (128, 128)
    g_hidden: tuple[int, ...] = (256, 256)
    d_dropout: float = 0.0
    marginal_weight: float = 1.0
    # Weight of the fit to the DP-measured marginal tables (privacy/marginals.py) in the
    # generator's loss, and generator-only steps on that fit before DP-SGD starts (both
    # post-processing: they read no row).
    table_weight: float = 1.0
    table_warmup_steps: int = 300
    # Generated rows whose slot probabilities estimate the generator's marginals for that fit
    # (the first rows of each generator batch): the estimate averages probabilities, not
    # draws, so a thousand rows are precise enough and the fit costs a fraction of a step.
    table_rows: int = 1024
    # On CUDA, replay each iteration from CUDA graphs (same maths, no launch overhead).
    cuda_graphs: bool = True
    # On CUDA, TF32 matmuls for the generator's side (post-processing: it reads no real row).
    # The private discriminator step always multiplies in full float32, so each real row's
    # clipped contribution is bounded by max_grad_norm as computed.
    tf32_generator: bool = True

    def expected_batch_size(self, rows: int) -> int:
        if self.batch_size is not None:
            return max(1, min(self.batch_size, rows))
        return int(np.clip(rows // 8, min(64, rows), 16384))

    def steps(self, rows: int) -> int:
        q = self.expected_batch_size(rows) / rows
        return max(1, int(round(self.epochs / q)))


@dataclass
class TrainingProgress:
    step: int
    total_steps: int
    epoch: float
    epsilon: float
    d_loss: float
    g_loss: float
    elapsed_s: float


@dataclass
class TrainingState:
    """What a checkpoint holds (no training rows: weights, optimiser moments, counters)."""

    step: int
    generator: dict[str, Any]
    discriminator: dict[str, Any]
    opt_g: dict[str, Any]
    opt_d: dict[str, Any]
    torch_rng: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)
    ema: dict[str, Any] | None = None
    # The CUDA default generator's state once CUDA graphs replay (they draw from it, not from
    # torch_rng): without it a resumed run would draw other noise and batches than the run it
    # continues. None before the graphs start, and on a CPU.
    cuda_rng: torch.Tensor | None = None
    # DP-SGD's private generator (Poisson draws, real rows' condition columns, gradient noise);
    # None in checkpoints written before it had one of its own
    private_rng: torch.Tensor | None = None
    # the generated rows the next discriminator step reads (GANTrainer._discriminator_step);
    # None before the first generator step and in older checkpoints
    fakes: torch.Tensor | None = None


class ConditionSampler:
    """Conditional vectors over the categorical/boolean one-hot spans.

    For real rows the vector is read from the row; for generated rows it is drawn from the DP
    frequencies of one uniformly chosen column.
    """

    def __init__(self, spans: list[Span], frequencies: list[list[float]], device: torch.device):
        self.spans = spans
        self.width = sum(s.width for s in spans)
        self.device = device
        widths = [s.width for s in spans]
        self.offsets = torch.tensor(
            np.cumsum([0, *widths[:-1]]) if widths else [0], device=device
        )
        self.widths = torch.tensor(widths or [1], device=device)
        # One flat CDF over all spans, span k's shifted by k: a draw for span k is one
        # searchsorted of k + u (float64, so tiny frequencies keep their resolution). No
        # multinomial, no per-row gather: nothing that syncs with the host or breaks a CUDA graph.
        flat, shares = [], []
        for k, f in enumerate(frequencies):
            # a slot released as empty is never a condition (the generator cannot produce it)
            p = np.clip(np.asarray(f, dtype=np.float64), 0.0, None)
            if p.sum() <= 0:
                p = np.ones_like(p)
            p = p / p.sum()
            cdf = np.cumsum(p)
            cdf[-1] = 1.0
            flat.append(k + cdf)
            shares.append(p / len(frequencies))
        self.flat_cdf = torch.tensor(np.concatenate(flat) if flat else np.zeros(0),
                                     dtype=torch.float64, device=device)
        # each one-hot position's probability (its span's 1 / spans times its frequency)
        self.position_share = torch.tensor(np.concatenate(shares) if shares else np.zeros(0),
                                           dtype=torch.float64, device=device)
        self.source_cols = torch.tensor(
            [i for s in spans for i in range(s.start, s.stop)], dtype=torch.long, device=device
        )
        self.owner = torch.tensor(
            [k for k, s in enumerate(spans) for _ in range(s.width)], device=device
        )

    @classmethod
    def for_encoder(cls, encoder: TableEncoder, device: torch.device) -> ConditionSampler:
        """Conditions on the categorical and boolean columns (as CTGAN does), with their DP
        frequencies."""
        pairs = [(span, d) for span, d in zip(encoder.discrete_spans, encoder.learned, strict=True)
                 if d.kind.value in ("categorical", "boolean")]
        return cls([s for s, _ in pairs], [d.frequencies for _, d in pairs], device)

    def from_rows(self, rows: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        if not self.spans:
            return rows.new_zeros(rows.shape[0], 0)
        chosen = torch.randint(len(self.spans), (rows.shape[0],), generator=gen,
                               device=self.device)
        full = rows[:, self.source_cols]
        return full * (self.owner.unsqueeze(0) == chosen.unsqueeze(1))

    def draw(self, n: int, gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """n generated conditions, and which span each conditions on."""
        if not self.spans:
            return torch.zeros(n, 0, device=self.device), torch.zeros(n, dtype=torch.long)
        position, chosen = self._draw_positions(n, gen)
        cond = torch.zeros(n, self.width, device=self.device)
        cond.scatter_(1, position.unsqueeze(1), 1.0)
        return cond, chosen

    def positions(self, n: int, gen: torch.Generator | None) -> torch.Tensor | None:
        """What :meth:`draw` draws (the same random numbers), as each vector's one-hot
        position (offset of its span + slot): sampling gathers the generator's weights at the
        position instead of multiplying by the one-hot vector. None, drawing nothing, when
        there is no conditional column (a table of numbers only)."""
        return self._draw_positions(n, gen)[0] if self.spans else None

    def _draw_positions(self, n: int, gen: torch.Generator | None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = torch.randint(len(self.spans), (n,), generator=gen, device=self.device)
        u = torch.rand(n, generator=gen, device=self.device, dtype=torch.float64)
        position = torch.searchsorted(self.flat_cdf, chosen + u, right=True)
        # position is the flat slot (offsets[k] + slot); clamp guards u's rounding at 1.0
        position = torch.minimum(position, self.offsets[chosen] + self.widths[chosen] - 1)
        return position, chosen


def padded_batch_size(expected: int, rows: int) -> int:
    """Capacity of a fixed-size Poisson batch: the expected size plus 6 standard deviations.

    A Poisson batch larger than this (probability below 1e-9) is never truncated: that step
    runs outside the CUDA graph at its true size, so the mechanism stays plain Poisson
    subsampling and the accounting is unchanged.
    """
    return min(rows, expected + math.ceil(6 * math.sqrt(expected)) + 16)


class GANTrainer:
    """Trains the generator against a DP discriminator on a table kept on the device.

    On CUDA the whole iteration (Poisson sampling by mask, the fused DP step, the generator
    step, the weight average) is captured once in CUDA graphs and replayed: for these small
    networks launch overhead, not arithmetic, is what an eager step spends its time on.
    """

    def __init__(
        self,
        encoder: TableEncoder,
        config: TrainingConfig,
        device: torch.device,
        seed: int | None = None,
        marginals: list[Marginal] | None = None,
    ) -> None:
        self.encoder = encoder
        self.config = config
        self.device = device
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed if seed is not None else fresh_seed())
        if seed is not None:
            torch.manual_seed(seed)
        # The generator every random draw of an iteration uses. Inside a CUDA graph only the
        # device's default generator can be replayed, so graph mode seeds that from self.gen.
        self._rng: torch.Generator | None = self.gen
        # DP-SGD's release (privacy/release.py) and its private generator: the Poisson draws,
        # the real rows' condition columns and the gradient noise, apart from the generator's
        # draws so that a replayed fit (which reads no row) draws the same generated rows
        self._seed = seed
        self._sgd: GradientRelease | None = None
        self._private_rng: torch.Generator | None = None
        self._resume_private_rng: torch.Tensor | None = None
        self.cond = ConditionSampler.for_encoder(encoder, device)
        # The marginal loss's groups: numeric bins split from one measured grid bin form one
        # group, since only the group's total was measured. One (one-hot columns x groups) 0/1
        # matrix for all spans, and the DP frequency of each group.
        blocks, targets = [], []
        for span, domain in zip(encoder.discrete_spans, encoder.learned, strict=True):
            slot_groups = domain.slot_groups or list(range(span.width))
            _, group_of = np.unique(slot_groups, return_inverse=True)
            onehot = torch.zeros(span.width, int(group_of.max()) + 1)
            onehot[torch.arange(span.width), torch.from_numpy(group_of)] = 1.0
            blocks.append(onehot)
            targets.append(torch.tensor(domain.frequencies, dtype=torch.float32) @ onehot)
        self._group_matrix = torch.block_diag(*blocks).to(device) if blocks else torch.zeros(
            0, 0, device=device)
        self._group_target = torch.cat(targets).to(device) if targets else torch.zeros(
            0, device=device)
        self._tables = _TableTargets(encoder, marginals or [], device)
        self.generator = Generator(config.noise_dim, self.cond.width, encoder.spans,
                                   config.g_hidden, encoder.empty_slots()).to(device)
        self.discriminator = Discriminator(encoder.width + self.cond.width, config.d_hidden,
                                           config.d_dropout).to(device)
        # capturable: Adam keeps its step counts on the device, so a graph can replay the step
        capturable = device.type == "cuda"
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr_g,
                                      betas=(0.5, 0.9), weight_decay=1e-6,
                                      capturable=capturable)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr_d,
                                      betas=(0.5, 0.9), capturable=capturable)
        self.step = 0
        # The weight average starts as a copy and follows with decay ema_decay, shortened for
        # short runs (its window is at most a tenth of the steps; see train()).
        self.ema: Generator | None = copy.deepcopy(self.generator) if config.ema_decay else None
        self.scalar_columns = torch.tensor(encoder.scalar_columns, dtype=torch.long,
                                           device=device)
        # which of the generator's softmax segments each conditional span is
        segment_of = {start: k for k, start in enumerate(self.generator.segments.starts)}
        self._cond_segment = torch.tensor([segment_of[sp.start] for sp in self.cond.spans],
                                          dtype=torch.long, device=device)
        self.uses_cuda_graphs = False
        self._resume_cuda_rng: torch.Tensor | None = None
        # wall and CPU seconds of the warm-up and the DP-SGD steps (synthgen/timing.py)
        self.timings: dict[str, float] = {}
        # the last generator step's rows and conditions: the next DP step's generated rows
        self._fakes: torch.Tensor | None = None

    # ------------------------------------------------------------------------- steps

    def _logits(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The generator's raw outputs for n fresh draws, with their conditional vectors."""
        cond, chosen = self.cond.draw(n, self._rng)
        z = torch.randn(n, self.config.noise_dim, generator=self._rng, device=self.device)
        return self.generator(z, cond), cond, chosen

    def _fake(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        raw, cond, chosen = self._logits(n)
        return self.generator.activate(raw, generator=self._rng), raw, cond, chosen

    def _generator_rows(self, batch: int) -> int:
        return max(1, min(batch, round(batch * self.config.generator_share)))

    def _generator_loss(self, batch: int) -> torch.Tensor:
        fake, raw, cond, chosen = self._fake(self._generator_rows(batch))
        rows = torch.cat([fake, cond], dim=1)
        self._keep_fakes(rows.detach())
        logits = self.discriminator(rows)
        loss = F.softplus(-logits).mean()
        loss = loss + self._condition_loss(raw, cond, chosen)
        if self.config.marginal_weight and not self._tables:  # the tables hold the 1-way
            loss = loss + self.config.marginal_weight * self._marginal_loss(fake)
        if self.config.table_weight and self._tables:
            loss = loss + self.config.table_weight * self._table_loss(
                raw[: self.config.table_rows])
        return loss

    def _table_loss(self, raw: torch.Tensor) -> torch.Tensor:
        """KL from the DP-measured tables to the generator's: the generator's slot
        probabilities given each row's noise are its exact conditional distribution (sampling
        draws from them), so their batch means are unbiased estimates of its marginals."""
        return self._tables.loss(self.generator.segments.softmax_raw(raw))

    def _table_warmup(self, batch: int) -> None:
        """Generator-only steps that fit the DP marginals (and the conditional vectors'
        cross-entropy) before the first DP-SGD step: post-processing, no row is read."""
        if not self._tables or not self.config.table_warmup_steps:
            return
        rows = min(batch, self.config.table_rows)
        for _ in range(self.config.table_warmup_steps):
            raw, cond, chosen = self._logits(rows)  # the fit needs logits only: no Gumbel draws
            loss = self._table_loss(raw) + self._condition_loss(raw, cond, chosen)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
        if self.ema is not None:
            self.ema.load_state_dict(self.generator.state_dict())

    def _condition_loss(
        self, raw: torch.Tensor, cond: torch.Tensor, chosen: torch.Tensor
    ) -> torch.Tensor:
        """Cross-entropy of the generator's logits on the conditioned column (as in CTGAN):
        log-sum-exp of the chosen span minus the logit of the conditioned slot."""
        if not self.cond.spans:
            return raw.new_zeros(())
        segments = self.generator.segments
        lse = segments.logsumexp_raw(raw)
        chosen_lse = lse.gather(1, self._cond_segment[chosen].unsqueeze(1)).squeeze(1)
        target = self.cond.source_cols[cond.argmax(1)]
        return (chosen_lse - raw.gather(1, target.unsqueeze(1)).squeeze(1)).mean()

    def _marginal_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """KL from the DP marginals to the batch's marginals: post-processing of DP counts.

        Every span at once: the batch's mean one-hot row, summed into measured groups by one
        block-diagonal matmul; the mean over spans of each span's KL."""
        segments = self.generator.segments
        q = (fake.index_select(1, segments.columns).mean(0) @ self._group_matrix).clamp_min(1e-6)
        t = self._group_target
        return (t * (t.clamp_min(1e-6).log() - q.log())).sum() / max(segments.count, 1)

    def _real_rows(self, index: torch.Tensor) -> torch.Tensor:
        """Dense encoded rows of the resident table (one-hot spans built here, on the device)."""
        rows = torch.zeros(index.shape[0], self.encoder.width, device=self.device)
        rows.scatter_(1, self._hot[index], 1.0)
        rows.index_copy_(1, self.scalar_columns, self._scalars[index])
        return rows

    def _keep_fakes(self, rows: torch.Tensor) -> None:
        """Keep the generator step's rows (with their conditions) for the next
        discriminator step, in one buffer (a CUDA graph replays its copy into it)."""
        if self._fakes is None or self._fakes.shape != rows.shape:
            self._fakes = rows.clone()
        else:
            self._fakes.copy_(rows)

    def _discriminator_step(
        self, real: torch.Tensor, real_weight: torch.Tensor | None, batch: int,
    ) -> torch.Tensor:
        """The only read of real rows: the fused DP step (clipped real rows, noise).

        Its generated rows are the previous generator step's (one update older than the
        generator now, as the one step before it): generating as many again was a quarter
        of a step on a CPU. The first step generates its own. There are
        ``generator_share`` * B of them, their loss weighted so that they weigh as B."""
        assert self._sgd is not None
        real_cond = self.cond.from_rows(real, self._private_rng)
        if self._fakes is None:
            with torch.no_grad():
                fake, _, fake_cond, _ = self._fake(self._generator_rows(batch))
            self._fakes = torch.cat([fake, fake_cond], 1)
        rows = torch.cat([torch.cat([real, real_cond], 1), self._fakes])
        return private_discriminator_step(
            self.discriminator, self.opt_d, rows, real.shape[0],
            release=self._sgd,
            expected_batch_size=batch,
            generator=self._private_rng,
            real_weight=real_weight,
            fake_weight=batch / self._fakes.shape[0],
        )

    def _iteration(
        self, index: torch.Tensor, real_weight: torch.Tensor | None, batch: int,
        ema_decay: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One DP discriminator step on the sampled rows, then the generator's steps.

        Free of host syncs, so that a CUDA graph can capture it. Returns the two losses as
        device tensors.
        """
        with self._matmuls(exact=True):
            d_loss = self._discriminator_step(self._real_rows(index), real_weight, batch)
        # -- generator: post-processing of the private discriminator
        self.discriminator.requires_grad_(False)
        g_loss = d_loss.new_zeros(())
        with self._matmuls(exact=not self.config.tf32_generator):
            for _ in range(self.config.generator_steps):
                loss = self._generator_loss(batch)
                self.opt_g.zero_grad(set_to_none=True)
                loss.backward()
                self.opt_g.step()
                if self.ema is not None:
                    self._update_ema(ema_decay)
                g_loss = loss.detach()
        self.discriminator.requires_grad_(True)
        return d_loss, g_loss

    @contextlib.contextmanager
    def _matmuls(self, *, exact: bool) -> Iterator[None]:
        """Full float32 (exact=True) or TF32 CUDA matmuls inside the block. A CUDA graph keeps
        the kernels chosen when it was captured, so the choice holds in every replay."""
        if self.device.type != "cuda":
            yield
            return
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = not exact
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before

    def _poisson_mask(self, rows: int, q: float) -> torch.Tensor:
        return torch.rand(rows, generator=self._private_rng, device=self.device) < q

    def train(
        self,
        data: EncodedTable,
        *,
        noise_multiplier: float | None = None,
        total_steps: int,
        sampling_rate: float,
        batch: int,
        epsilon_at: Callable[[int], float],
        on_progress: Callable[[TrainingProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        checkpoint: Callable[[TrainingState], None] | None = None,
        checkpoint_every_s: float = 60.0,
        progress_every: int | None = None,
        release: GradientRelease | None = None,
    ) -> int:
        """Run DP steps until ``total_steps``; returns the number of steps run in total.

        ``sampling_rate`` and ``batch`` (the expected real rows per step) come from a DP
        estimate of the row count, never from ``len(data)``: Poisson sampling at a public rate
        is what the accountant analyses. ``release`` is the fit's DP-SGD release (it holds the
        noise multiplier and clipping norm, and its ledger entry); without one (a trainer used
        on its own) one is made from ``noise_multiplier``.
        """
        if release is None:
            if noise_multiplier is None:
                raise ValueError("train() needs a release or a noise multiplier")
            release = GradientRelease(
                noise_multiplier, self.config.max_grad_norm, sampling_rate, self.device,
                seed=None if self._seed is None else int(
                    np.random.default_rng([self._seed, 2]).integers(2**62)))
        self._sgd = release
        if self._resume_private_rng is not None and release.generator is not None:
            release.generator.set_state(self._resume_private_rng)
            self._resume_private_rng = None
        self._private_rng = release.generator
        n = len(data)
        # The table stays on the device as (hot column per span, scalars): a few bytes per
        # cell instead of a float per one-hot slot.
        starts = torch.from_numpy(self.encoder.slot_starts).to(self.device)
        self._hot = torch.from_numpy(data.slots).to(self.device).long() + starts
        self._scalars = torch.from_numpy(np.ascontiguousarray(data.scalars)).to(self.device)
        q = sampling_rate
        clock = StageClock(self.timings)
        if self.step == 0:
            self._table_warmup(batch)
        clock.lap("warmup")
        ema_decay = max(min(self.config.ema_decay, 1 - 10 / total_steps), 0.0)
        step_args = (batch, ema_decay)
        start = time.monotonic()
        every = progress_every or max(1, total_steps // 100)
        self.generator.train()
        self.discriminator.train()
        # CUDA work runs on a stream of its own: graphs must be captured on a side stream, and
        # the eager steps before the capture warm up that same stream's cuBLAS workspace.
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            self._train_loop(n, q, total_steps, step_args, epsilon_at, on_progress,
                             should_stop, checkpoint, checkpoint_every_s, every, start)
        if stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(stream)
        clock.lap("dpsgd")
        self._rng = self.gen
        self._private_rng = release.generator
        del self._hot, self._scalars
        return self.step

    def _train_loop(
        self, n: int, q: float, total_steps: int, step_args: tuple[int, float],
        epsilon_at: Callable[[int], float],
        on_progress: Callable[[TrainingProgress], None] | None,
        should_stop: Callable[[], bool] | None,
        checkpoint: Callable[[TrainingState], None] | None,
        checkpoint_every_s: float, every: int, start: float,
    ) -> None:
        last_ckpt = start
        d_loss = g_loss = torch.full((), float("nan"))
        graphs = None
        while self.step < total_steps:
            if should_stop is not None and should_stop():
                break
            if graphs is None and self._graphs_wanted(total_steps):
                graphs = _IterationGraphs(self, n, q, step_args)
                self.uses_cuda_graphs = True
            if graphs is not None:
                d_loss, g_loss = graphs.step()
            elif self._sgd is not None and self._sgd.replaying:
                # a replayed step reads no row: the release returns the recorded noisy sum
                index = torch.zeros(0, dtype=torch.long, device=self.device)
                d_loss, g_loss = self._iteration(index, None, *step_args)
            else:
                index = self._poisson_mask(n, q).nonzero().squeeze(1)
                d_loss, g_loss = self._iteration(index, None, *step_args)
            self.step += 1

            now = time.monotonic()
            if on_progress is not None and (
                self.step % every == 0 or self.step == total_steps
            ):
                on_progress(TrainingProgress(
                    step=self.step, total_steps=total_steps, epoch=self.step * q,
                    epsilon=epsilon_at(self.step), d_loss=float(d_loss), g_loss=float(g_loss),
                    elapsed_s=now - start,
                ))
            if checkpoint is not None and now - last_ckpt >= checkpoint_every_s:
                checkpoint(self.state())
                last_ckpt = now

    def _graphs_wanted(self, total_steps: int) -> bool:
        """Capture after a few eager steps (they create Adam's state and cuBLAS's handles,
        and are real, accounted steps), when there are enough steps left to be worth it."""
        # recording and replaying releases is eager work (the replay test runs on a CPU)
        recorded = self._sgd is not None and (self._sgd.recording or self._sgd.replaying)
        return (self.device.type == "cuda" and self.config.cuda_graphs and not recorded
                and self.step >= _EAGER_WARMUP_STEPS
                and total_steps - self.step > _EAGER_WARMUP_STEPS)


    # ------------------------------------------------------------------------- state

    def final_generator(self) -> Generator:
        """The generator to sample from: the weight average if one is kept."""
        return self.ema if self.ema is not None else self.generator

    @torch.no_grad()
    def _update_ema(self, decay: float) -> None:
        assert self.ema is not None
        torch._foreach_lerp_(list(self.ema.parameters()), list(self.generator.parameters()),
                             1 - decay)
        # BatchNorm statistics of generated rows: the latest
        torch._foreach_copy_(list(self.ema.buffers()), list(self.generator.buffers()))

    def state(self) -> TrainingState:
        return TrainingState(
            step=self.step,
            generator=self.generator.state_dict(),
            discriminator=self.discriminator.state_dict(),
            opt_g=self.opt_g.state_dict(),
            opt_d=self.opt_d.state_dict(),
            torch_rng=self.gen.get_state(),
            ema=self.ema.state_dict() if self.ema is not None else None,
            cuda_rng=(torch.cuda.get_rng_state(self.device) if self._rng is None
                      and self.device.type == "cuda" else None),
            private_rng=(self._private_rng.get_state() if self._private_rng is not None
                         else None),
            fakes=self._fakes.detach().cpu().clone() if self._fakes is not None else None,
        )

    def load_state(self, state: TrainingState) -> None:
        self.step = state.step
        self.generator.load_state_dict(state.generator)
        self.discriminator.load_state_dict(state.discriminator)
        self.opt_g.load_state_dict(state.opt_g)
        self.opt_d.load_state_dict(state.opt_d)
        self.gen.set_state(state.torch_rng)
        if self.ema is not None and state.ema is not None:
            self.ema.load_state_dict(state.ema)
        self._resume_cuda_rng = state.cuda_rng
        self._resume_private_rng = state.private_rng
        self._fakes = state.fakes.to(self.device) if state.fakes is not None else None



_EAGER_WARMUP_STEPS = 3


class _TableTargets:
    """The DP-measured tables as tensors, laid out so that a batch's marginals cost three
    matmuls and a gather: one-way tables are the batch's mean slot probabilities summed into
    their cells (one vector for all columns), two-way tables blocks of the grouped
    probabilities' Gram matrix (one block-diagonal grouping matmul, then one product of the
    grouped batch with itself). Every table's cells land in one flat vector beside one flat
    target, so the loss is a handful of kernels however many tables there are (thirty small
    products and their backward passes had been most of a warm-up step on a CPU)."""

    def __init__(self, encoder: TableEncoder, marginals: list[Marginal],
                 device: torch.device) -> None:
        offsets = np.cumsum([0, *[s.width for s in encoder.discrete_spans]])
        slots = int(offsets[-1])
        # each column's grouping for two-way tables (all of a column's pairs group it alike)
        grouping: dict[int, list[int]] = {}
        for m in marginals:
            if len(m.columns) == 2:
                for c, g in zip(m.columns, m.groups, strict=True):
                    grouping.setdefault(c, g)
        cells = np.cumsum([0, *[max(grouping[c]) + 1 for c in sorted(grouping)]])
        where = {c: int(cells[i]) for i, c in enumerate(sorted(grouping))}
        width = int(cells[-1])
        matrix = torch.zeros(slots, width)
        for c, g in grouping.items():
            rows = int(offsets[c]) + torch.arange(len(g))
            matrix[rows, where[c] + torch.tensor(g)] = 1.0
        self.grouping = matrix.to(device)
        # one-way cells: a slot each, or (a thin numeric column's) groups of slots
        one_slots: list[np.ndarray] = []
        one_cells: list[np.ndarray] = []
        two_cells: list[np.ndarray] = []
        one_targets: list[np.ndarray] = []
        two_targets: list[np.ndarray] = []
        for m in marginals:
            target = np.asarray(m.target, dtype=np.float32).reshape(-1)
            if len(m.columns) == 1:
                c = m.columns[0]
                one_slots.append(np.arange(int(offsets[c]), int(offsets[c + 1])))
                one_cells.append(sum(len(t) for t in one_targets) + np.asarray(m.groups[0]))
                one_targets.append(target)
            else:
                a, b = m.columns
                ga, gb = max(grouping[a]) + 1, max(grouping[b]) + 1
                # cell (i, j) of the table: entry (a's group i, b's group j) of the Gram
                # matrix, row-major like the target
                i, j = np.meshgrid(where[a] + np.arange(ga), where[b] + np.arange(gb),
                                   indexing="ij")
                two_cells.append((i * width + j).reshape(-1))
                two_targets.append(target)
        self.tables = len(one_targets) + len(two_targets)

        def flat(parts: list[np.ndarray], dtype: torch.dtype) -> torch.Tensor:
            joined = np.concatenate(parts) if parts else np.zeros(0)
            return torch.as_tensor(joined, dtype=dtype, device=device)

        one_matrix = torch.zeros(slots, sum(len(t) for t in one_targets))
        if one_slots:
            one_matrix[torch.as_tensor(np.concatenate(one_slots)),
                       torch.as_tensor(np.concatenate(one_cells))] = 1.0
        self.one_matrix = one_matrix.to(device)
        self.one_target = flat(one_targets, torch.float32)
        self.two_cells, self.two_target = flat(two_cells, torch.long), flat(two_targets,
                                                                            torch.float32)

    def __bool__(self) -> bool:
        return self.tables > 0

    def loss(self, probs: torch.Tensor) -> torch.Tensor:
        """Mean KL(target || model) (plus L1) over the tables; ``probs`` is rows x flat
        softmax slots."""
        total = _kl(self.one_target, probs.mean(0) @ self.one_matrix)
        if len(self.two_cells):
            grouped = probs @ self.grouping
            gram = grouped.t() @ grouped / probs.shape[0]
            total = total + _kl(self.two_target,
                                gram.reshape(-1).index_select(0, self.two_cells))
        return total / self.tables


def _kl(target: torch.Tensor, model: torch.Tensor) -> torch.Tensor:
    """KL(target || model), plus the L1 distance, summed over the cells given (a sum of the
    tables' own): KL alone barely charges mass the model puts where the target has none (a
    value outside the real range, a null that never occurs)."""
    t = target.clamp_min(1e-8)
    kl = (target * (t.log() - model.clamp_min(1e-8).log())).sum()
    return kl + (model - target).abs().sum()


class _IterationGraphs:
    """Two CUDA graphs per iteration: Poisson sampling (a mask over the resident table, its
    row count, and the row indices padded to a fixed capacity) and the iteration itself.

    Between the two, the host reads the row count (one small sync a step): a batch over the
    capacity runs eagerly at its true size instead of being truncated, so privacy is exactly
    that of Poisson sampling.
    """

    def __init__(
        self, trainer: GANTrainer, rows: int, q: float, step_args: tuple[int, float]
    ) -> None:
        self.trainer = trainer
        self.step_args = step_args
        batch = step_args[0]
        self.capacity = padded_batch_size(batch, rows)
        # Graph replays draw from the device's default generator; seed it from the run's, or
        # (a resumed run) put back the state it had when the checkpoint was taken.
        if trainer._resume_cuda_rng is not None:
            torch.cuda.set_rng_state(trainer._resume_cuda_rng.cpu(), trainer.device)
            trainer._resume_cuda_rng = None
        else:
            seed = int(torch.randint(2**62, (1,), generator=trainer.gen, device=trainer.device))
            torch.cuda.manual_seed(seed)
        trainer._rng = None
        trainer._private_rng = None
        # Captured on the trainer's side stream (the current one), as CUDA graphs require.
        stream = torch.cuda.current_stream(trainer.device)
        self.sample_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.sample_graph, stream=stream):
            self.mask = trainer._poisson_mask(rows, q)
            self.count = self.mask.sum()
            self.index = torch.nonzero_static(self.mask, size=self.capacity,
                                              fill_value=0).squeeze(1)
            self.weight = (torch.arange(self.capacity, device=trainer.device)
                           < self.count).float()
        self.step_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.step_graph, stream=stream):
            self.losses = trainer._iteration(self.index, self.weight, *step_args)

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.sample_graph.replay()
        if int(self.count) <= self.capacity:
            self.step_graph.replay()
            return self.losses
        # Over capacity (p < 1e-9): the same step, eagerly, on every sampled row.
        index = self.mask.nonzero().squeeze(1)
        return self.trainer._iteration(index, None, *self.step_args)


def save_state(state: TrainingState, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state.__dict__, tmp)
    tmp.replace(path)


def load_state(path: Path) -> TrainingState:
    return TrainingState(**torch.load(path, weights_only=True))
