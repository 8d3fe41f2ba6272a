"""The one door through which a fit reads its table's rows.

Every mechanism of a fit is a call on the fit's :class:`Releaser`: the call takes the exact
values, adds the noise, appends the ledger entry that pays for it and returns the noisy values,
all at once; DP-SGD's noisy gradient sums go through the :class:`GradientRelease` it opens, which
holds the ``dp_sgd`` entry. Nothing else in a fit adds privacy noise or writes the ledger, so a
release the ledger does not pay for cannot be written without bypassing this module.

A releaser can also *record* every value it returned, and *replay* a recording instead of reading
the table: a fit of a neighbouring table that replays the first fit's releases must come out
byte for byte the same (``tests/test_replay.py``). Any read of the rows outside this module (an
exact count, a dtype, a null share, a maximum) makes the two differ, whatever it is called.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from synthgen.privacy.accountant import epsilon_of, gaussian_epsilon
from synthgen.privacy.ledger import LedgerEntry, PrivacyLedger


@dataclass(frozen=True)
class Keys:
    """Counts over keys found in the data (a column's texts). Released by Gaussian partition
    selection: a key is released, with its noisy count, only when that count clears the
    release's threshold (or ``threshold``, the set's own: a column whose rows add more than 1
    to their key has a threshold scaled to match); the rest, and how many there were, are
    not."""

    labels: np.ndarray
    counts: np.ndarray
    threshold: float | None = None


Value = np.ndarray | Keys


@dataclass
class Recording:
    """What a fit's releases returned, in order: the Gaussian releases' values, and DP-SGD's
    noisy clipped gradient sum of every step (on the CPU)."""

    releases: list[tuple[str, list[Value]]] = field(default_factory=list)
    gradients: list[list[torch.Tensor]] = field(default_factory=list)


class ReplayError(RuntimeError):
    """A replaying fit asked for a release the recording does not have at that point: the
    sequence of releases itself depended on something read outside the ledger."""


class Releaser:
    """A fit's releases: the ledger, the noise generators, and (for the replay test) the
    recording or the replay.

    ``rng`` draws the noise; ``streams`` name further independent generators (the size probe
    draws from a stream of its own). ``record=True`` keeps every returned value in
    :attr:`recording`; ``replay`` returns a recording's values instead of reading.
    """

    def __init__(self, ledger: PrivacyLedger, rng: np.random.Generator, *,
                 streams: dict[str, np.random.Generator] | None = None, record: bool = False,
                 replay: Recording | None = None) -> None:
        self.ledger = ledger
        self.streams = {"main": rng, **(streams or {})}
        self.recording: Recording | None = Recording() if record else None
        self._replay = replay
        self._next_release = 0
        self._next_gradient = 0

    @property
    def replaying(self) -> bool:
        return self._replay is not None

    @classmethod
    def scratch(cls, rng: np.random.Generator, accountant_delta: float = 1e-6) -> Releaser:
        """A releaser outside a fit (a test, a benchmark): a ledger of its own."""
        return cls(PrivacyLedger(float("inf"), accountant_delta,
                                 accountant_delta=accountant_delta), rng)

    def gaussian(
        self, mechanism: str, reads: str, exact: Sequence[Value], *, noise_multiplier: float,
        sensitivity: float, threshold: float | None = None, extra_delta: float = 0.0,
        params: dict[str, Any] | None = None, stream: str = "main",
    ) -> list[Value]:
        """One Gaussian mechanism over ``exact`` (arrays, and :class:`Keys` released above
        ``threshold``) with L2 ``sensitivity`` (of all of them together) and noise of standard
        deviation ``noise_multiplier * sensitivity`` on every value; records its ledger entry
        and returns the noisy values, in the order given (the draws follow that order)."""
        sigma = noise_multiplier * sensitivity
        if any(isinstance(x, Keys) and x.threshold is None for x in exact) and threshold is None:
            raise ValueError(f"{mechanism}: discovered keys need a release threshold")
        if self._replay is not None:
            out = self._replayed(mechanism, exact)
        else:
            rng = self.streams[stream]
            out = []
            for x in exact:
                if isinstance(x, Keys):
                    noisy = x.counts.astype(np.float64) + rng.normal(0.0, sigma,
                                                                     size=x.counts.shape)
                    keep = noisy > cast(float, threshold if x.threshold is None
                                        else x.threshold)
                    out.append(Keys(x.labels[keep], noisy[keep]))
                else:
                    x = np.asarray(x)
                    out.append(x.astype(np.float64) + rng.normal(0.0, sigma, size=x.shape))
        self.ledger.record(LedgerEntry(
            mechanism=mechanism, reads=reads, noise_multiplier=noise_multiplier,
            sampling_rate=1.0, steps=1,
            epsilon=gaussian_epsilon(noise_multiplier, self.ledger.accountant_delta),
            extra_delta=extra_delta,
            params={"sigma": sigma, "l2_sensitivity": sensitivity,
                    **({} if threshold is None else {"threshold": threshold}), **(params or {})},
        ))
        if self.recording is not None:
            self.recording.releases.append((mechanism, copy.deepcopy(out)))
        return out

    def annotate(self, mechanism: str, **params: Any) -> None:
        """Add post-processing facts (what the noisy values decided) to a recorded entry."""
        self.ledger.annotate(mechanism, **params)

    def _replayed(self, mechanism: str, exact: Sequence[Value]) -> list[Value]:
        assert self._replay is not None
        if self._next_release >= len(self._replay.releases):
            raise ReplayError(f"{mechanism}: the recording has no release left")
        name, values = self._replay.releases[self._next_release]
        self._next_release += 1
        if name != mechanism or len(values) != len(exact):
            raise ReplayError(f"release {self._next_release}: recorded {name} of {len(values)} "
                              f"values, asked for {mechanism} of {len(exact)}")
        for recorded, asked in zip(values, exact, strict=True):
            # a vector's shape is public structure (grids, slots, candidate pairs); a shape
            # that differs was decided by something read outside the ledger
            if isinstance(asked, Keys) or isinstance(recorded, Keys):
                if not (isinstance(asked, Keys) and isinstance(recorded, Keys)):
                    raise ReplayError(f"{mechanism}: a value's kind differs from the recording")
            elif np.shape(asked) != np.shape(recorded):
                raise ReplayError(f"{mechanism}: a value's shape differs from the recording")
        return copy.deepcopy(values)

    # ------------------------------------------------------------------------- DP-SGD

    def dp_sgd(self, noise_multiplier: float, sampling_rate: float, planned_steps: int,
               max_grad_norm: float, device: torch.device, *, resume: bool = False,
               params: dict[str, Any] | None = None) -> GradientRelease:
        """Open DP-SGD: its ledger entry (no step charged yet; :meth:`GradientRelease.charge`
        charges the steps run) and the object every step's noisy gradient sum comes from.
        ``resume``: the entry is in the ledger already (a resumed run)."""
        release = GradientRelease(noise_multiplier, max_grad_norm, sampling_rate, device,
                                  self, planned_steps, params or {})
        if not resume:
            self.ledger.record(release.entry(0))
        return release

    def _gradient(self) -> list[torch.Tensor]:
        assert self._replay is not None
        if self._next_gradient >= len(self._replay.gradients):
            raise ReplayError("DP-SGD: the recording has no step left")
        self._next_gradient += 1
        return self._replay.gradients[self._next_gradient - 1]

    def torch_seed(self) -> int:
        """A seed for DP-SGD's private generator (Poisson sampling, the real rows' condition
        columns, the gradient noise), drawn from this releaser's noise generator."""
        return int(self.streams["main"].integers(2**62))


class GradientRelease:
    """DP-SGD's releases: per step, the clipped gradient sum of the sampled real rows plus
    Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm``.

    ``generator`` is the private generator of the mechanism (the Poisson draws, the real rows'
    condition columns, the noise); None while CUDA graphs replay the step (they draw from the
    device's default generator).
    """

    def __init__(self, noise_multiplier: float, max_grad_norm: float, sampling_rate: float,
                 device: torch.device, releaser: Releaser | None = None,
                 planned_steps: int = 0, params: dict[str, Any] | None = None,
                 seed: int | None = None) -> None:
        self.noise_multiplier = noise_multiplier
        self.max_grad_norm = max_grad_norm
        self.sampling_rate = sampling_rate
        self.planned_steps = planned_steps
        self._releaser = releaser
        self._params = params or {}
        self.generator: torch.Generator | None = torch.Generator(device=device)
        if seed is None:
            seed = releaser.torch_seed() if releaser is not None else secrets.randbits(62)
        self.generator.manual_seed(seed)

    @property
    def replaying(self) -> bool:
        return self._releaser is not None and self._releaser.replaying

    @property
    def recording(self) -> bool:
        return self._releaser is not None and self._releaser.recording is not None

    def noisy_sum(self, clipped: list[torch.Tensor],
                  generator: torch.Generator | None) -> list[torch.Tensor]:
        """The release of one step: each summed clipped gradient plus its noise (drawn with
        ``torch.normal``, as Opacus's ``_generate_noise``)."""
        if self.replaying:
            assert self._releaser is not None
            return [g.to(c.device) for g, c in zip(self._releaser._gradient(), clipped,
                                                    strict=True)]
        std = self.noise_multiplier * self.max_grad_norm
        out = [g + torch.normal(mean=0.0, std=std, size=g.shape, device=g.device,
                                dtype=g.dtype, generator=generator) for g in clipped]
        if self.recording:
            assert self._releaser is not None and self._releaser.recording is not None
            self._releaser.recording.gradients.append([g.detach().cpu().clone() for g in out])
        return out

    def entry(self, steps: int) -> LedgerEntry:
        ledger = self._releaser.ledger if self._releaser is not None else None
        delta = ledger.accountant_delta if ledger is not None else 1e-6
        accountant = ledger.accountant if ledger is not None else "prv"
        return LedgerEntry(
            mechanism="dp_sgd",
            reads="Poisson-sampled rows of the encoded table, through the discriminator",
            noise_multiplier=self.noise_multiplier,
            sampling_rate=self.sampling_rate,
            steps=steps,
            epsilon=epsilon_of([(self.noise_multiplier, self.sampling_rate, steps)], delta,
                               accountant),
            params={"max_grad_norm": self.max_grad_norm, "planned_steps": self.planned_steps,
                    **self._params},
        )

    def charge(self, steps: int) -> None:
        """Charge the steps run so far (the entry is the ledger's last)."""
        if self._releaser is not None:
            self._releaser.ledger.replace_last(self.entry(steps))
