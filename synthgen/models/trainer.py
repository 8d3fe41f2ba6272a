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

import copy
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from synthgen.models.dpsgd import private_discriminator_step
from synthgen.models.networks import Discriminator, Generator
from synthgen.transform import Span, TableEncoder


def fresh_seed() -> int:
    """A 63-bit seed from the OS's entropy, for runs without --seed. Not from numpy's global
    generator: any library calling ``np.random.seed`` would make the noise predictable."""
    return int.from_bytes(os.urandom(8), "little") >> 1


@dataclass
class TrainingConfig:
    epochs: float = 30.0
    batch_size: int | None = None  # expected real rows per step; default from the table size
    max_grad_norm: float = 1.0
    lr_d: float = 1e-3
    lr_g: float = 1e-3
    generator_steps: int = 1
    # Exponential moving average of the generator's weights, sampled from at the end
    # (post-processing: it reads no data). 0 turns it off.
    ema_decay: float = 0.95
    noise_dim: int = 64
    d_hidden: tuple[int, ...] = (128, 128)
    g_hidden: tuple[int, ...] = (256, 256)
    d_dropout: float = 0.0
    marginal_weight: float = 1.0

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
        max_w = max(widths) if widths else 1
        probs = torch.zeros(len(spans), max_w)
        for i, f in enumerate(frequencies):
            probs[i, : len(f)] = torch.tensor(f, dtype=torch.float32) + 1e-8
        self.probs = probs.to(device)
        self.offsets = torch.tensor(
            np.cumsum([0, *widths[:-1]]) if widths else [0], device=device
        )
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
        chosen = torch.randint(len(self.spans), (n,), generator=gen, device=self.device)
        slot = torch.multinomial(self.probs[chosen], 1, generator=gen).squeeze(1)
        cond = torch.zeros(n, self.width, device=self.device)
        cond[torch.arange(n, device=self.device), self.offsets[chosen] + slot] = 1.0
        return cond, chosen


class GANTrainer:
    def __init__(
        self,
        encoder: TableEncoder,
        config: TrainingConfig,
        device: torch.device,
        seed: int | None = None,
    ) -> None:
        self.encoder = encoder
        self.config = config
        self.device = device
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed if seed is not None else fresh_seed())
        if seed is not None:
            torch.manual_seed(seed)
        self.cond = ConditionSampler.for_encoder(encoder, device)
        self.marginal_spans = encoder.discrete_spans
        # Per span, a (slots x groups) 0/1 matrix: numeric bins split from one measured grid bin
        # form one group, since only the group's total was measured.
        self.marginal_groups: list[torch.Tensor] = []
        self.marginal_targets: list[torch.Tensor] = []
        for span, domain in zip(self.marginal_spans, encoder.learned, strict=True):
            slot_groups = [*domain.bin_groups, -1] if domain.bin_groups else list(
                range(span.width))
            _, group_of = np.unique(slot_groups, return_inverse=True)
            onehot = torch.zeros(span.width, int(group_of.max()) + 1)
            onehot[torch.arange(span.width), torch.from_numpy(group_of)] = 1.0
            freq = torch.tensor(domain.frequencies, dtype=torch.float32)
            self.marginal_groups.append(onehot.to(device))
            self.marginal_targets.append((freq @ onehot).to(device))
        self.generator = Generator(config.noise_dim, self.cond.width, encoder.spans,
                                   config.g_hidden).to(device)
        self.discriminator = Discriminator(encoder.width + self.cond.width, config.d_hidden,
                                           config.d_dropout).to(device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr_g,
                                      betas=(0.5, 0.9), weight_decay=1e-6)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr_d,
                                      betas=(0.5, 0.9))
        self.step = 0
        # The weight average starts as a copy and follows with decay ema_decay, shortened for
        # short runs (its window is at most a tenth of the steps; see train()).
        self.ema: Generator | None = copy.deepcopy(self.generator) if config.ema_decay else None

    # ------------------------------------------------------------------------- steps

    def _fake(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        cond, chosen = self.cond.draw(n, self.gen)
        z = torch.randn(n, self.config.noise_dim, generator=self.gen, device=self.device)
        raw = self.generator(z, cond)
        return self.generator.activate(raw), raw, cond, chosen

    def _generator_loss(self, batch: int) -> torch.Tensor:
        fake, raw, cond, chosen = self._fake(batch)
        logits = self.discriminator(torch.cat([fake, cond], dim=1))
        loss = F.softplus(-logits).mean()
        loss = loss + self._condition_loss(raw, cond, chosen)
        if self.config.marginal_weight:
            loss = loss + self.config.marginal_weight * self._marginal_loss(fake)
        return loss

    def _condition_loss(
        self, raw: torch.Tensor, cond: torch.Tensor, chosen: torch.Tensor
    ) -> torch.Tensor:
        """Cross-entropy of the generator's logits on the conditioned column (as in CTGAN)."""
        if not self.cond.spans:
            return raw.new_zeros(())
        losses = raw.new_zeros(raw.shape[0])
        offset = 0
        for k, span in enumerate(self.cond.spans):
            target = cond[:, offset : offset + span.width].argmax(1)
            ce = F.cross_entropy(raw[:, span.start : span.stop], target, reduction="none")
            losses = losses + ce * (chosen == k)
            offset += span.width
        return losses.mean()

    def _marginal_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """KL from the DP marginals to the batch's marginals: post-processing of DP counts."""
        total = fake.new_zeros(())
        for span, groups, target in zip(
            self.marginal_spans, self.marginal_groups, self.marginal_targets, strict=True
        ):
            q = (fake[:, span.start : span.stop].mean(0) @ groups).clamp_min(1e-6)
            total = total + (target * (target.clamp_min(1e-6).log() - q.log())).sum()
        return total / max(len(self.marginal_spans), 1)

    def train(
        self,
        data: torch.Tensor,
        *,
        noise_multiplier: float,
        total_steps: int,
        epsilon_at: Callable[[int], float],
        on_progress: Callable[[TrainingProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        checkpoint: Callable[[TrainingState], None] | None = None,
        checkpoint_every_s: float = 60.0,
        progress_every: int | None = None,
    ) -> int:
        """Run DP steps until ``total_steps``; returns the number of steps run in total."""
        n = data.shape[0]
        batch = self.config.expected_batch_size(n)
        q = batch / n
        start = time.monotonic()
        last_ckpt = start
        d_loss = g_loss = float("nan")
        every = progress_every or max(1, total_steps // 100)
        self.generator.train()
        self.discriminator.train()
        while self.step < total_steps:
            if should_stop is not None and should_stop():
                break
            # -- discriminator: the only read of real rows (Poisson sample, fused DP step)
            mask = torch.rand(n, generator=self.gen, device=self.device) < q
            real = data[mask]
            real_cond = self.cond.from_rows(real, self.gen)
            with torch.no_grad():
                fake, _, fake_cond, _ = self._fake(batch)
            rows = torch.cat([torch.cat([real, real_cond], 1), torch.cat([fake, fake_cond], 1)])
            d_loss = private_discriminator_step(
                self.discriminator, self.opt_d, rows, real.shape[0],
                noise_multiplier=noise_multiplier,
                max_grad_norm=self.config.max_grad_norm,
                expected_batch_size=batch,
                generator=self.gen,
            )
            self.step += 1
            # -- generator: post-processing of the private discriminator
            self.discriminator.requires_grad_(False)
            for _ in range(self.config.generator_steps):
                loss = self._generator_loss(batch)
                self.opt_g.zero_grad(set_to_none=True)
                loss.backward()
                self.opt_g.step()
                if self.ema is not None:
                    self._update_ema(min(self.config.ema_decay, 1 - 10 / total_steps))
                g_loss = float(loss.detach())
            self.discriminator.requires_grad_(True)

            now = time.monotonic()
            if on_progress is not None and (
                self.step % every == 0 or self.step == total_steps
            ):
                on_progress(TrainingProgress(
                    step=self.step, total_steps=total_steps, epoch=self.step * q,
                    epsilon=epsilon_at(self.step), d_loss=d_loss, g_loss=g_loss,
                    elapsed_s=now - start,
                ))
            if checkpoint is not None and now - last_ckpt >= checkpoint_every_s:
                checkpoint(self.state())
                last_ckpt = now
        return self.step

    # ------------------------------------------------------------------------- state

    def final_generator(self) -> Generator:
        """The generator to sample from: the weight average if one is kept."""
        return self.ema if self.ema is not None else self.generator

    @torch.no_grad()
    def _update_ema(self, decay: float) -> None:
        assert self.ema is not None
        decay = max(decay, 0.0)
        for avg, live in zip(self.ema.parameters(), self.generator.parameters(), strict=True):
            avg.lerp_(live, 1 - decay)
        for avg_buf, live_buf in zip(self.ema.buffers(), self.generator.buffers(), strict=True):
            avg_buf.copy_(live_buf)  # BatchNorm statistics of generated rows: the latest

    def state(self) -> TrainingState:
        return TrainingState(
            step=self.step,
            generator=self.generator.state_dict(),
            discriminator=self.discriminator.state_dict(),
            opt_g=self.opt_g.state_dict(),
            opt_d=self.opt_d.state_dict(),
            torch_rng=self.gen.get_state(),
            ema=self.ema.state_dict() if self.ema is not None else None,
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



@torch.no_grad()
def generate_slots(
    generator: Generator,
    cond: ConditionSampler,
    n: int,
    nullable: list[bool],
    *,
    chunk: int = 65536,
    gen: torch.Generator | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Synthetic rows in chunks, as (slot per one-hot span, tanh scalars); no real row is read.

    A slot is drawn from the span's softmax with the Gumbel-max trick (what CTGAN's hard
    Gumbel-softmax does), on the model's device, so only small integer arrays cross to the CPU.
    A span whose column cannot hold nulls never draws its null slot.
    """
    generator.eval()
    softmax = [s for s in generator.spans if s.activation == "softmax"]
    scalar_cols = torch.tensor([s.start for s in generator.spans if s.activation == "tanh"],
                               dtype=torch.long, device=cond.device)
    done = 0
    while done < n:
        m = min(chunk, n - done)
        c, _ = cond.draw(m, gen)
        z = torch.randn(m, generator.noise_dim, generator=gen, device=cond.device)
        raw = generator(z, c)
        slots = torch.empty(m, len(softmax), dtype=torch.long, device=cond.device)
        for k, (span, can_be_null) in enumerate(zip(softmax, nullable, strict=True)):
            stop = span.stop if can_be_null else span.stop - 1
            logits = raw[:, span.start : stop]
            gumbel = -torch.empty_like(logits).exponential_(generator=gen).log()
            slots[:, k] = (logits + gumbel).argmax(1)
        scalars = torch.tanh(raw[:, scalar_cols])
        yield slots.cpu().numpy(), scalars.cpu().numpy()
        done += m


def save_state(state: TrainingState, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state.__dict__, tmp)
    tmp.replace(path)


def load_state(path: Path) -> TrainingState:
    return TrainingState(**torch.load(path, weights_only=True))
