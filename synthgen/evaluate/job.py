"""The evaluation steps of one job (``synthgen run``, a service worker): what to hold out
before training, and the owner-only evaluation document to write beside the report after
sampling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from synthgen.evaluate.holdout import MAX_SHARE, MIN_HOLDOUT_ROWS, Holdout, split_holdout
from synthgen.evaluate.run import evaluate
from synthgen.models.conditions import rows_matching

# Fewer real rows meeting a conditioned sample's conditions than this: nothing to compare with.
MIN_CONDITIONED_ROWS = 50
# Synthetic rows the evaluation looks at (the first ones written; generation order is random).
EVALUATION_ROWS = 50_000


@dataclass
class EvaluationPlan:
    """Decided before training, from the options and the table's size only."""

    audit: bool
    target: str | None
    holdout: Holdout | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    # a holdout was split off but has too few rows for the audit and the utility test
    too_small: bool = False

    @property
    def held_out_share(self) -> float:
        """The public share of rows held out (0 without a holdout): an option, never a count."""
        return self.holdout.share if self.holdout is not None else 0.0

    def training_table(self, table: pd.DataFrame) -> pd.DataFrame:
        return self.holdout.train if self.holdout is not None else table


def plan_evaluation(
    table: pd.DataFrame,
    *,
    holdout_share: float,
    audit: bool = True,
    target: str | None = None,
    seed: int | None = None,
) -> EvaluationPlan:
    """Split off the holdout if the audit or a utility target needs one.

    A wrong ``target`` or share is an error (before any training); a table too small for a
    useful holdout is not: the sections that need one are skipped, and the report says so.
    """
    if target is not None and target not in map(str, table.columns):
        raise ValueError(f"--target {target!r} is not a column of the table; "
                         f"the columns are {', '.join(map(str, table.columns))}")
    if not 0 <= holdout_share <= MAX_SHARE:
        raise ValueError(f"--holdout-share must be between 0 and {MAX_SHARE}; got {holdout_share}")
    plan = EvaluationPlan(audit=audit, target=target)
    purposes = (["audit"] if audit else []) + (["utility"] if target else [])
    if not purposes or holdout_share == 0:
        if purposes:
            plan.skipped.update(dict.fromkeys(purposes, "no holdout (--holdout-share 0)"))
        return plan
    # Whether to split depends on the options only, never on the table's size: a split decided
    # by the row count would train on all rows of one table and on a subsample of its
    # neighbour. A holdout too small to use is still kept out of training.
    plan.holdout = split_holdout(table, holdout_share, seed)
    rows = len(plan.holdout.holdout)
    if rows < MIN_HOLDOUT_ROWS:
        why = (f"the holdout ({holdout_share:g} of the rows, drawn at random) has {rows} rows, "
               f"fewer than the {MIN_HOLDOUT_ROWS} needed; they were still kept out of training")
        plan.skipped.update(dict.fromkeys(purposes, why))
        plan.too_small = True
    return plan


def evaluate_job(
    report: dict[str, Any],
    plan: EvaluationPlan,
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    seed: int | None = None,
) -> dict[str, Any]:
    """The owner-only evaluation of a job (``report``, the public report, is left unchanged:
    nothing computed on real rows may enter it)."""
    from synthgen.report import build_evaluation

    kinds = {c["name"]: c["kind"] for c in report.get("columns", [])}
    holdout = plan.holdout
    usable = holdout is not None and not plan.too_small
    real_holdout = holdout.holdout if usable and holdout is not None else None
    sampling = report.get("sampling") or {}
    skip: dict[str, str] = {}
    if "seed_rows" in sampling:
        skip = dict.fromkeys(("quality", "utility", "audit"), "the output was generated from "
                             "seed rows (your own values in it): no real table to compare with")
    elif "rebalance" in sampling:
        skip["quality"] = ("the output was rebalanced: its shares differ from the real table's "
                           "by design")
    compared_with = None
    if sampling.get("conditions") and not skip:
        # like with like: the real rows that meet the same conditions
        train = train[rows_matching(train, sampling["conditions"], kinds)]
        if real_holdout is not None:
            real_holdout = real_holdout[rows_matching(real_holdout, sampling["conditions"],
                                                      kinds)]
        compared_with = (f"the {len(train):,} training rows (and holdout rows) that meet the "
                         f"conditions {', '.join(sampling['conditions'])}")
        if len(train) < MIN_CONDITIONED_ROWS:
            skip = dict.fromkeys(("quality", "utility", "audit"), f"only {len(train)} real "
                                 "rows meet the conditions: too few to compare with")
    evaluation = evaluate(
        train, synthetic,
        holdout=real_holdout,
        target=plan.target if usable else None,
        audit=plan.audit and usable,
        kinds=kinds or None, seed=seed, skip=tuple(skip),
    )
    skipped = evaluation.setdefault("skipped", {})
    skipped.update(plan.skipped)
    skipped.update(skip)
    if compared_with and not skip:
        evaluation["compared_with"] = compared_with
    if not plan.audit:
        skipped["audit"] = "turned off for this job (--no-audit)"
    purposes = [p for p in ("audit", "utility") if p in evaluation]
    described = holdout.describe(purposes) if holdout is not None else None
    return build_evaluation(report, evaluation, described)
