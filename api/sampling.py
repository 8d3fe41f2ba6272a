"""Checking a job body's sampling request (conditions, rebalancing, seed rows) at submission,
against what is known before training: the dataset's column kinds and its public schema's
category lists. A category the model releases by DP is checked when the job samples."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.problems import Problem
from api.schemas import JobCreate
from synthgen.errors import ConditionError
from synthgen.models.conditions import ColumnFacts, check, check_seed_rows
from synthgen.schema import ColumnKind, TableSchema
from synthgen.service.db import Dataset


def dataset_facts(dataset: Dataset) -> dict[str, ColumnFacts]:
    declared = ({c.name: c.categories for c in
                 TableSchema.model_validate(dataset.public_schema).columns}
                if dataset.public_schema else {})
    return {c["name"]: ColumnFacts(ColumnKind(c["kind"]), declared.get(c["name"]))
            for c in dataset.columns}


def check_sampling(session: Session, tenant: str, bodies: Sequence[JobCreate], *,
                   seed_rows_allowed: bool = False) -> None:
    """422 problem+json for a request that cannot be honoured; nothing is admitted."""
    for body in bodies:
        if body.seed_rows is not None and not seed_rows_allowed:
            raise Problem(422, "invalid-condition", "seed rows are for a single job (POST "
                          "/v1/jobs): a batch or a schedule would store them beyond the job")
        if not (body.conditions or body.rebalance or body.seed_rows is not None):
            continue
        dataset = session.scalar(select(Dataset).where(Dataset.id == body.dataset_id,
                                                       Dataset.tenant_id == tenant))
        if dataset is None:
            continue  # admission answers 404
        facts = dataset_facts(dataset)
        try:
            spec = check(body.conditions, body.rebalance, facts)
            if body.seed_rows is not None:
                check_seed_rows(pd.DataFrame(body.seed_rows), facts, spec)
        except ConditionError as exc:
            raise Problem(422, exc.code, f"{exc} (dataset {dataset.id})") from exc
