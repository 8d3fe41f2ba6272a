"""The privacy ledger of one fit: every read of the raw table, and their composition."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from synthgen.privacy.accountant import History, check_accountant, epsilon_of


@dataclass(frozen=True)
class LedgerEntry:
    """One mechanism that read the raw table.

    ``noise_multiplier``, ``sampling_rate`` and ``steps`` describe it as a (subsampled) Gaussian
    mechanism with unit sensitivity; ``epsilon`` is its cost on its own at the ledger's accountant
    delta (for reading; the total is composed, not summed); ``extra_delta`` is failure probability
    outside the Gaussian analysis (e.g. releasing a key that only the added row has).
    """

    mechanism: str
    reads: str
    noise_multiplier: float
    sampling_rate: float
    steps: int
    epsilon: float
    extra_delta: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrivacyLedger:
    target_epsilon: float
    target_delta: float
    accountant: str = "prv"
    accountant_delta: float = 0.0
    entries: list[LedgerEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_accountant(self.accountant)
        if not self.accountant_delta:
            self.accountant_delta = self.target_delta

    def record(self, entry: LedgerEntry) -> None:
        self.entries.append(entry)

    def annotate(self, mechanism: str, **params: Any) -> None:
        """Add post-processing facts (what a release's noisy values decided) to the last entry
        of ``mechanism``; its noise and cost are unchanged."""
        i = max(i for i, e in enumerate(self.entries) if e.mechanism == mechanism)
        self.entries[i] = replace(self.entries[i], params={**self.entries[i].params, **params})

    def replace_last(self, entry: LedgerEntry) -> None:
        """Update the running DP-SGD entry as steps are taken."""
        self.entries[-1] = entry

    def history(self) -> History:
        return [(e.noise_multiplier, e.sampling_rate, e.steps) for e in self.entries]

    def epsilon(self) -> float:
        """The composed epsilon of every entry, at :attr:`accountant_delta`."""
        return epsilon_of(self.history(), self.accountant_delta, self.accountant)

    def delta(self) -> float:
        return self.accountant_delta + sum(e.extra_delta for e in self.entries)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_epsilon": self.target_epsilon,
            "target_delta": self.target_delta,
            "accountant": self.accountant,
            "accountant_delta": self.accountant_delta,
            "entries": [asdict(e) for e in self.entries],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrivacyLedger:
        entries = [LedgerEntry(**e) for e in data.get("entries", [])]
        return cls(
            target_epsilon=data["target_epsilon"],
            target_delta=data["target_delta"],
            accountant=data["accountant"],
            accountant_delta=data["accountant_delta"],
            entries=entries,
        )
