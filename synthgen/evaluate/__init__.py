"""Evaluating a synthetic table against the real one: quality, utility, privacy audit.

Everything here reads real rows without differential privacy: its output is for the data owner,
never for release with the synthetic table. :mod:`synthgen.evaluate.debug` holds a deliberately
NON-PRIVATE synthesizer, for testing that the audit can fail; it is not exported here.
"""

from synthgen.evaluate.audit import canary_attack, privacy_audit
from synthgen.evaluate.columns import evaluation_kinds
from synthgen.evaluate.holdout import DEFAULT_SHARE, Holdout, keep_head, split_holdout
from synthgen.evaluate.job import EvaluationPlan, evaluate_job, plan_evaluation
from synthgen.evaluate.quality import quality_report
from synthgen.evaluate.run import OWNER_ONLY, evaluate
from synthgen.evaluate.utility import train_synthetic_test_real

__all__ = [
    "DEFAULT_SHARE",
    "OWNER_ONLY",
    "EvaluationPlan",
    "Holdout",
    "canary_attack",
    "evaluate",
    "evaluate_job",
    "evaluation_kinds",
    "keep_head",
    "plan_evaluation",
    "privacy_audit",
    "quality_report",
    "split_holdout",
    "train_synthetic_test_real",
]
