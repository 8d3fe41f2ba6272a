"""A dataset's privacy budget: reservations at admission, charges at settlement, composition.

Accounting rules (see docs/service.md, "Budget"):

* Accepting a job reserves its epsilon in the same transaction that checks the cap.
* Settling a job replaces the reservation by what it spent: the composed epsilon of the
  mechanisms its ledger holds (steps actually run; a cancelled job keeps what it ran).
* A dataset's spent epsilon composes every charged job's mechanisms (with the jobs' accountant,
  PRV when they differ) at the sum of their deltas, and is never more than the sum of the jobs'
  epsilons.
* Admission is conservative: composed spent + charges not yet composed + open reservations,
  for epsilon and for delta (each job's delta is fixed when it is accepted).
* The budget follows the content: datasets of one tenant uploaded with the same bytes (sha256)
  form a group whose first dataset, the *holder*, keeps the cap and the spend of all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from synthgen.privacy.accountant import epsilon_of
from synthgen.privacy.budget import default_delta
from synthgen.service.db import (
    Database,
    Dataset,
    DatasetSource,
    DatasetVersion,
    Job,
    new_id,
    now,
)

EPS_TOLERANCE = 1e-9
# A dataset's delta cap unless its upload names one: ten jobs at the default delta (<= 1e-6).
DEFAULT_BUDGET_DELTA = 1e-5
# The delta a job with no known delta is charged: the library's default delta.
MAX_DEFAULT_DELTA = default_delta()


class BudgetExceeded(Exception):
    """The cap would be exceeded. The message says what is left and nothing more: a privacy
    budget is spent for good, and no re-upload or new dataset of the same table restores it."""

    def __init__(self, cap: float, used: float, asked: float, dataset_id: str = "",
                 what: str = "epsilon") -> None:
        super().__init__(
            f"the request asks for {what} {asked:.4g} of dataset {dataset_id} but it has "
            f"{max(cap - used, 0):.4g} of its {what} cap {cap:.4g} left (spent or reserved: "
            f"{used:.4g}); the budget of this table is shared by every upload of the same "
            "content and does not come back")
        self.cap, self.used, self.asked, self.dataset_id = cap, used, asked, dataset_id
        self.what = what


def ledger_summary(ledger: Any) -> dict[str, Any]:
    """What the service keeps of a :class:`~synthgen.privacy.PrivacyLedger` to compose it."""
    return {
        "accountant": ledger.accountant,
        "accountant_delta": ledger.accountant_delta,
        "extra_delta": sum(e.extra_delta for e in ledger.entries),
        "history": [list(h) for h in ledger.history()],
    }


def ledger_epsilon(summary: dict[str, Any]) -> float:
    return epsilon_of([tuple(h) for h in summary["history"]], summary["accountant_delta"],
                      summary["accountant"])


def ledger_delta(summary: dict[str, Any] | None) -> float | None:
    """The delta a ledger spends (the accountant's, plus the thresholds' failure
    probability): the report's ``delta``, and a job's share of the budget's ``spent_delta``."""
    if not summary:
        return None
    return float(summary["accountant_delta"]) + float(summary.get("extra_delta", 0.0))


def sgd_steps(summary: dict[str, Any] | None) -> int:
    return int(summary["history"][-1][2]) if summary and summary["history"] else -1


def checkpoint_ledger(path: Path) -> dict[str, Any] | None:
    """The ledger inside a training checkpoint (None if the file cannot be read)."""
    import torch

    from synthgen.privacy import PrivacyLedger

    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
        return ledger_summary(PrivacyLedger.from_dict(state["extra"]["ledger"]))
    except Exception:  # a torn or foreign file: the caller falls back to other evidence
        return None


def holder_id(dataset: Dataset) -> str:
    return dataset.budget_group or dataset.id


def budget_holder(session: Session, dataset: Dataset) -> Dataset:
    """The dataset that keeps ``dataset``'s cap and spend (itself unless it joined a group)."""
    if holder_id(dataset) == dataset.id:
        return dataset
    return session.scalars(select(Dataset).where(Dataset.id == holder_id(dataset))).one()


def content_holder(session: Session, tenant_id: str, sha256: str) -> Dataset | None:
    """The holder of the tenant's budget group for this content, if the bytes were uploaded
    before (as a dataset or as any version of one, purged or not)."""
    earlier = select(Dataset.id).where(Dataset.tenant_id == tenant_id, Dataset.sha256 == sha256)
    versions = select(DatasetVersion.dataset_id).join(
        Dataset, Dataset.id == DatasetVersion.dataset_id).where(
        Dataset.tenant_id == tenant_id, DatasetVersion.sha256 == sha256)
    first = session.scalars(select(Dataset).where(
        or_(Dataset.id.in_(earlier), Dataset.id.in_(versions))).order_by(Dataset.seq)
        .limit(1)).first()
    return None if first is None else budget_holder(session, first)


def charged_to(holder: Dataset) -> ColumnElement[bool]:
    """The jobs that count against a holder's cap: those of every dataset in its group; of the
    holder's own, all (policy "shared": versions hold the same people) or those of its current
    version (policy "fresh")."""
    group = Job.dataset_id.in_(select(Dataset.id).where(
        or_(Dataset.id == holder.id, Dataset.budget_group == holder.id)))
    if holder.budget_policy == "fresh":
        return and_(group, or_(Job.dataset_id != holder.id,
                               Job.dataset_version == holder.version))
    return group


def delta_cap(holder: Dataset) -> float:
    return holder.budget_delta if holder.budget_delta is not None else DEFAULT_BUDGET_DELTA


def job_delta(job: Job) -> float:
    return job.delta if job.delta is not None else MAX_DEFAULT_DELTA


def used_budget(session: Session, holder: Dataset) -> tuple[float, float]:
    """(epsilon, delta): spent (composed) + charged but not yet composed + reserved by
    unsettled jobs."""
    delta = func.coalesce(Job.delta, MAX_DEFAULT_DELTA)
    # A job settled without a charge (cancelled while queued, failed before reading a row)
    # spent nothing: its reservation ends with it, delta included. It is never composed (only
    # a charge starts a composition), so "settled and not composed" alone would count its
    # delta for good.
    loose_eps, loose_delta = session.execute(
        select(func.coalesce(func.sum(Job.charged_epsilon), 0.0),
               func.coalesce(func.sum(delta), 0.0)).where(
            charged_to(holder), Job.settled.is_(True), Job.composed.is_(False),
            Job.charged_epsilon > 0)).one()
    reserved_eps, reserved_delta = session.execute(
        select(func.coalesce(func.sum(Job.epsilon), 0.0),
               func.coalesce(func.sum(delta), 0.0)).where(
            charged_to(holder), Job.settled.is_(False))).one()
    return (float(holder.spent_epsilon or 0.0) + float(loose_eps or 0.0)
            + float(reserved_eps or 0.0),
            float(holder.spent_delta or 0.0) + float(loose_delta or 0.0)
            + float(reserved_delta or 0.0))


class DatasetPurged(Exception):
    """The dataset's raw upload was deleted by the retention policy."""


class DatasetNotFound(Exception):
    """No such dataset for this tenant."""


def locked_dataset(session: Session, tenant_id: str, dataset_id: str) -> Dataset | None:
    """The tenant's dataset, locked for the rest of the write transaction (Postgres: FOR UPDATE;
    SQLite: the transaction already holds the database's write lock)."""
    return session.scalar(select(Dataset).where(Dataset.id == dataset_id,
                                                Dataset.tenant_id == tenant_id)
                          .with_for_update())


def reserve_jobs(session: Session, tenant_id: str, specs: Sequence[dict[str, Any]]) -> list[Job]:
    """Insert jobs and reserve their epsilon in the caller's write transaction, all or none.

    Each spec holds a job's fields (``dataset_id``, ``epsilon``, ...). Every dataset named is
    locked (in a fixed order) and checked against the sum its jobs ask for before any job is
    added; raises :class:`DatasetNotFound`, :class:`DatasetPurged` or :class:`BudgetExceeded`
    (naming the dataset). A job is pinned to its dataset's current version.
    """
    named = sorted({spec["dataset_id"] for spec in specs})
    # Lock the datasets named and their groups' holders together, in one fixed order (a group
    # never changes, so it can be read before the locks): concurrent admissions cannot deadlock.
    groups = session.execute(select(Dataset.id, Dataset.budget_group).where(
        Dataset.tenant_id == tenant_id, Dataset.id.in_(named))).all()
    locked = {dataset_id: locked_dataset(session, tenant_id, dataset_id)
              for dataset_id in sorted({*named, *(group for _, group in groups if group)})}
    datasets: dict[str, Dataset] = {}
    for dataset_id in named:
        dataset = locked[dataset_id]
        if dataset is None:
            raise DatasetNotFound(dataset_id)
        # (a dataset read from a source reads a new snapshot at job time: its last one purged
        # by the retention policy is no reason to refuse)
        if dataset.purged_at is not None and session.get(DatasetSource, dataset_id) is None:
            raise DatasetPurged(dataset_id)
        datasets[dataset_id] = dataset
    # A job's delta is fixed here (the library's default when none is given), so that it can be
    # reserved and the run cannot charge more than was reserved.
    specs = [{**spec, "delta": spec.get("delta") or default_delta()} for spec in specs]
    asked: dict[str, list[float]] = {}
    holders: dict[str, Dataset] = {}
    for spec in specs:
        holder = budget_holder(session, datasets[spec["dataset_id"]])
        holders[holder.id] = holder
        total = asked.setdefault(holder.id, [0.0, 0.0])
        total[0] += float(spec["epsilon"])
        total[1] += float(spec["delta"] or MAX_DEFAULT_DELTA)
    for hid in sorted(asked):
        holder = holders[hid]
        used_eps, used_delta = used_budget(session, holder)
        first = next(s["dataset_id"] for s in specs if holder_id(datasets[s["dataset_id"]]) == hid)
        if used_eps + asked[hid][0] > holder.budget_epsilon + EPS_TOLERANCE:
            raise BudgetExceeded(holder.budget_epsilon, used_eps, asked[hid][0], first)
        if used_delta + asked[hid][1] > delta_cap(holder) * (1 + EPS_TOLERANCE):
            raise BudgetExceeded(delta_cap(holder), used_delta, asked[hid][1], first, "delta")
    jobs = [Job(id=new_id("job"), tenant_id=tenant_id, dispatched_at=now(),
                dataset_version=datasets[spec["dataset_id"]].version, **spec) for spec in specs]
    session.add_all(jobs)
    return jobs


def admit_job(db: Database, tenant_id: str, dataset_id: str, **fields: Any) -> Job | None:
    """Insert a job and reserve its epsilon in one transaction, or raise
    :class:`BudgetExceeded` / :class:`DatasetPurged`. None: no such dataset for this tenant."""
    try:
        with db.write() as session:
            job = reserve_jobs(session, tenant_id, [{"dataset_id": dataset_id, **fields}])[0]
    except DatasetNotFound:
        return None
    return job


def compose_dataset(db: Database, dataset_id: str) -> None:
    """Recompute a dataset's composed spend from its settled jobs and store it.

    Settled sets only grow, so a computation over more jobs always wins the conditional write;
    two workers settling at once converge on the larger set.
    """
    with db.read() as session:
        dataset = budget_holder(
            session, session.scalars(select(Dataset).where(Dataset.id == dataset_id)).one())
        jobs = session.scalars(select(Job).where(charged_to(dataset), Job.settled.is_(True))
                               .order_by(Job.seq)).all()
    history: list[tuple[float, float, int]] = []
    delta = 0.0  # the accountant's delta of the composition
    extra = 0.0  # failure probability outside the Gaussian analysis, added
    opaque = 0.0
    total = 0.0
    for job in jobs:
        charged = float(job.charged_epsilon or 0.0)
        total += charged
        if job.ledger and job.ledger["history"]:
            history += [(float(h[0]), float(h[1]), int(h[2])) for h in job.ledger["history"]]
            delta += job.ledger["accountant_delta"]
            extra += job.ledger.get("extra_delta", 0.0)
        elif charged > 0:
            opaque += charged  # charged in full without a known ledger: added, not composed
            extra += job_delta(job)
    # One accountant for all: the jobs' own (so one job's spend equals its report), else PRV.
    accountants = {j.ledger["accountant"] for j in jobs if j.ledger and j.ledger["history"]}
    accountant = accountants.pop() if len(accountants) == 1 else "prv"
    composed = epsilon_of(history, delta, accountant) if history else 0.0
    spent = min(composed + opaque, total)
    fresh = [Dataset.version == dataset.version] if dataset.budget_policy == "fresh" else []
    with db.write() as session:
        done = session.execute(
            update(Dataset)
            # A new "fresh" version starts a new count: a composition of the old one loses.
            .where(Dataset.id == dataset.id, Dataset.composed_jobs < len(jobs), *fresh)
            .values(spent_epsilon=spent, spent_delta=delta + extra, composed_jobs=len(jobs)))
        if done.rowcount:  # type: ignore[attr-defined]
            session.execute(update(Job).where(Job.id.in_([j.id for j in jobs]))
                            .values(composed=True))


def budget_view(session: Session, dataset: Dataset) -> dict[str, Any]:
    holder = budget_holder(session, dataset)
    jobs = session.scalars(select(Job).where(charged_to(holder)).order_by(Job.seq)).all()
    loose = sum(float(j.charged_epsilon or 0) for j in jobs if j.settled and not j.composed)
    reserved = sum(j.epsilon for j in jobs if not j.settled)
    spent = float(holder.spent_epsilon) + loose
    _, used_delta = used_budget(session, holder)
    return {
        "dataset_id": dataset.id,
        "shared_with": sorted(session.scalars(select(Dataset.id).where(
            or_(Dataset.id == holder.id, Dataset.budget_group == holder.id),
            Dataset.id != dataset.id)).all()),
        "cap_epsilon": holder.budget_epsilon,
        "spent_epsilon": spent,
        "reserved_epsilon": reserved,
        "remaining_epsilon": max(holder.budget_epsilon - spent - reserved, 0.0),
        "spent_delta": float(holder.spent_delta),
        "cap_delta": delta_cap(holder),
        "remaining_delta": max(delta_cap(holder) - used_delta, 0.0),
        "composition": "the jobs' accountant (prv when they differ) over the mechanisms of "
                       "every charged job, at the sum of their deltas; never more than the sum "
                       "of the jobs' epsilons",
        "sum_of_charges": sum(float(j.charged_epsilon or 0) for j in jobs if j.settled),
        "jobs": [
            {
                "job_id": j.id,
                "state": j.state,
                "reserved_epsilon": 0.0 if j.settled else j.epsilon,
                "charged_epsilon": j.charged_epsilon if j.settled else None,
                "mechanisms": len(j.ledger["history"]) if j.ledger else 0,
            }
            for j in jobs if not j.settled or (j.charged_epsilon or 0.0) > 0
        ],
    }
