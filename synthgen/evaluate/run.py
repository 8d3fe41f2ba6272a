"""One call that computes a report's owner-only sections: quality, utility, audit."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from synthgen.evaluate.audit import privacy_audit
from synthgen.evaluate.columns import evaluation_kinds
from synthgen.evaluate.quality import quality_report
from synthgen.evaluate.utility import train_synthetic_test_real

# The quality section compares the synthetic rows with at most this many real training rows (a
# seeded random sample beyond it; the section's real_rows says how many). Its shares and
# correlations then carry ~0.5 % sampling error, and a 1 M-row, 50-column table's 1,225 column
# pairs take seconds instead of many minutes.
QUALITY_REAL_ROWS = 50_000

OWNER_ONLY = (
    "Computed on the real data (the training rows and the holdout), without differential "
    "privacy: for the data owner only. Do not publish this section with the synthetic table."
)


def evaluate(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    holdout: pd.DataFrame | None = None,
    target: str | None = None,
    audit: bool = True,
    kinds: Mapping[str, str] | None = None,
    seed: int | None = 0,
    skip: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The ``evaluation`` part of a report.

    ``train`` is the table the synthesizer was fitted on and ``holdout`` real rows it never saw
    (needed for the audit and for ``target``). ``kinds`` maps columns to synthgen kinds (the
    report's ``columns``); dropped columns are left out. A section that cannot run, or fails,
    says why in ``skipped`` instead of failing the whole report; ``skip`` names sections
    not to compute.
    """
    t0 = time.perf_counter()
    sdtypes = evaluation_kinds(train, kinds)
    out: dict[str, Any] = {"notice": OWNER_ONLY, "skipped": {}}
    real = (train if len(train) <= QUALITY_REAL_ROWS
            else train.sample(QUALITY_REAL_ROWS, random_state=seed or 0))
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "quality": lambda: quality_report(real, synthetic, sdtypes)}
    if target is not None:
        if holdout is None:
            out["skipped"]["utility"] = "a target needs a holdout to test on"
        else:
            sections["utility"] = lambda: train_synthetic_test_real(
                train, synthetic, holdout, target, sdtypes)
    if audit:
        if holdout is None:
            out["skipped"]["audit"] = "the audit needs a holdout"
        else:
            sections["audit"] = lambda: privacy_audit(train, holdout, synthetic, sdtypes,
                                                      seed=seed)
    for name in skip:  # the caller says why in its own "skipped"
        sections.pop(name, None)
        out["skipped"].pop(name, None)
    for name, compute in sections.items():
        # The privacy part of the report is worth writing even if an evaluation fails.
        try:
            out[name] = compute()
        except Exception as exc:  # reported in the document instead
            out["skipped"][name] = f"failed: {type(exc).__name__}: {exc}"
    out["seconds"] = time.perf_counter() - t0
    return out
