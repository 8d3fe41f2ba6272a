"""NOT PRIVATE. A synthesizer with differential privacy switched off, for tests of the audit.

An audit that cannot fail proves nothing. :class:`NonPrivateSynthesizer` trains the same
generator and discriminator as :class:`~synthgen.synthesizer.Synthesizer`, but:

- the column domains are measured exactly (every category seen, even once; bins from exact
  quantiles; exact frequencies), with no noise and no threshold;
- DP-SGD runs with noise multiplier 0 and a clipping norm no gradient reaches.

So it can, and on small tables does, leak rare rows and values, which the canary test in
``tests/test_audit_canary.py`` checks the audit detects. It has no ledger and no epsilon; its
:meth:`report` says ``"dp": false``; it refuses to be saved. It is deliberately not exported from
:mod:`synthgen` or :mod:`synthgen.evaluate`, and neither the CLI nor the service can reach it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from synthgen._version import __version__
from synthgen.io import check_table
from synthgen.models.trainer import GANTrainer
from synthgen.privacy.domains import ColumnDomain, category_labels, numeric_values
from synthgen.schema import ColumnKind, ColumnSpec, infer_kind, infer_schema, output_dtype
from synthgen.synthesizer import Synthesizer, resolve_device
from synthgen.transform import TableEncoder

NOT_PRIVATE = (
    "NOT DIFFERENTIALLY PRIVATE: a debug model trained without noise or clipping on exact "
    "domains, for testing the privacy audit. Never release its output."
)
# Far above any per-row gradient norm: clipping never binds.
_NO_CLIP = 1e9
_EXACT_BINS = 32


def exact_domain(spec: ColumnSpec, values: pd.Series) -> ColumnDomain:
    """A column's domain measured without noise (what the DP mechanisms estimate privately)."""
    if spec.kind is ColumnKind.AUTO:  # not private: the kind a dtype suggests
        spec = spec.model_copy(update={"kind": infer_kind(spec.name, values)})
    dtype = spec.dtype or output_dtype(spec.kind, bool(values.isna().any()))
    if spec.kind is ColumnKind.DROP:
        return ColumnDomain(spec.name, ColumnKind.DROP, "object", "dropped", note="dropped")
    if spec.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
        present = category_labels(values, spec.kind).dropna()
        counts = present.value_counts()
        categories = [False, True] if spec.kind is ColumnKind.BOOLEAN else list(counts.index)
        has_other = spec.kind is ColumnKind.CATEGORICAL
        freqs = [float(counts.get(c, 0)) for c in categories]
        freqs += [0.0] * has_other + [float(values.isna().sum())]
        return ColumnDomain(spec.name, spec.kind, dtype, "exact", categories=categories,
                            has_other=has_other, frequencies=_normalised(freqs))
    x = numeric_values(values, spec.kind)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        finite = np.zeros(1)
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, _EXACT_BINS + 1)))
    if edges.size == 1:
        bins = [(float(edges[0]), float(edges[0]))]
        counts = np.array([finite.size])
    else:
        bins = [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        counts = np.histogram(finite, bins=edges)[0]
    freqs = [*counts.astype(float).tolist(), float(np.isnan(x).sum())]
    return ColumnDomain(spec.name, spec.kind, dtype, "exact", bins=bins,
                        frequencies=_normalised(freqs))


def _normalised(freqs: list[float]) -> list[float]:
    total = sum(freqs)
    return [f / total for f in freqs] if total > 0 else [1.0 / len(freqs)] * len(freqs)


class NonPrivateSynthesizer(Synthesizer):
    """NOT PRIVATE (see the module docstring). Same constructor, minus the budget."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(epsilon=1.0, **kwargs)  # the epsilon is never used
        self.epsilon = math.inf

    def fit(self, df: pd.DataFrame, **_: Any) -> NonPrivateSynthesizer:
        df = check_table(df)
        schema = infer_schema(df, self.schema)
        self.schema = schema
        self.domains = [exact_domain(spec, df[spec.name]) for spec in schema.columns]
        self.encoder = TableEncoder(self.domains)
        device = resolve_device(self.device)
        data = self.encoder.encode(df)
        config = replace(self.config, max_grad_norm=_NO_CLIP)
        trainer = GANTrainer(self.encoder, config, device, self.seed)
        steps = config.steps(len(df))
        batch = config.expected_batch_size(len(df))
        ran = trainer.train(data, noise_multiplier=0.0, total_steps=steps,
                            sampling_rate=batch / len(df), batch=batch,
                            epsilon_at=lambda _step: math.inf)
        self.generator, self.cond = trainer.generator, trainer.cond
        self.ledger = None
        self.info = {"rows": len(df), "columns": list(df.columns), "dp": False,
                     "training": {"steps": ran, "noise_multiplier": 0.0,
                                  "max_grad_norm": _NO_CLIP}}
        return self

    @property
    def spent_epsilon(self) -> float:
        return math.inf

    def report(self) -> dict[str, Any]:
        """A report that cannot be mistaken for a DP one."""
        return {
            "dp": False,
            "synthgen_version": __version__,
            "warning": NOT_PRIVATE,
            "epsilon": None,
            "rows": self.info.get("rows"),
            "training": self.info.get("training", {}),
        }

    def save(self, path: Any) -> None:
        raise RuntimeError("a non-private debug model is never saved: " + NOT_PRIVATE)
