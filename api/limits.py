"""The server's limits per job, checked before anything is reserved (jobs, batches,
schedules)."""

from __future__ import annotations

from collections.abc import Sequence

from api.problems import Problem
from api.schemas import JobCreate
from synthgen.service.settings import Settings


def check_job_limits(settings: Settings, bodies: Sequence[JobCreate]) -> None:
    """Epsilon (``SYNTHGEN_MAX_JOB_EPSILON``) and synthetic rows (``SYNTHGEN_MAX_JOB_ROWS``) of
    each job: a 422 naming the dataset, nothing reserved."""
    for body in bodies:
        if body.epsilon > settings.max_job_epsilon:
            raise Problem(422, "epsilon-too-large", f"epsilon {body.epsilon:g} (dataset "
                          f"{body.dataset_id}) is over this server's limit of "
                          f"{settings.max_job_epsilon:g} per job")
        if body.rows is not None and body.rows > settings.max_job_rows:
            raise Problem(422, "too-many-rows", f"rows {body.rows:,} (dataset "
                          f"{body.dataset_id}) is over this server's limit of "
                          f"{settings.max_job_rows:,} synthetic rows per job "
                          "(SYNTHGEN_MAX_JOB_ROWS)")
