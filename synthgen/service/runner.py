"""The body of a training job, shared by the Celery task and the embedded supervisor's child.

It claims the job, heartbeats the lease from a thread (which also watches for a cancel and
copies each new training checkpoint to storage), trains with the library's checkpoints so that a
later attempt resumes instead of restarting, writes the outputs and settles the budget.

Fencing against a zombie attempt (one that lost its lease but runs on): it stops training once
its heartbeats have failed for a whole lease (the lease has then expired, and another attempt
may hold the job); it writes its outputs under keys of its own attempt, and only while its lease
is live; the job points at one attempt's outputs in the conditional UPDATE that settles it.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from synthgen.errors import SynthgenError, SynthgenWarning, warning_record
from synthgen.service.budget import ledger_epsilon, ledger_summary, sgd_steps
from synthgen.service.connections import check_destination, snapshot_for_job, write_destination
from synthgen.service.db import Database, Dataset, Job
from synthgen.service.jobs import (
    Claim,
    apply_retention,
    checkpoint_key,
    claim_job,
    delete_seed_rows,
    heartbeat,
    lease_is_ours,
    record_progress,
    seed_rows_key,
    settle,
)
from synthgen.service.scratch import sweep_scratch
from synthgen.service.settings import Settings
from synthgen.service.storage import Storage
from synthgen.service.versions import job_dataset

log = logging.getLogger("synthgen.service")


class _Heartbeat(threading.Thread):
    def __init__(self, db: Database, storage: Storage, claim: Claim, settings: Settings,
                 checkpoint: Path, checkpoint_key: str) -> None:
        super().__init__(name=f"heartbeat-{claim.job_id}", daemon=True)
        self.db, self.storage, self.claim, self.settings = db, storage, claim, settings
        self.checkpoint, self.checkpoint_key = checkpoint, checkpoint_key
        self.stop_training = threading.Event()
        self.lost = threading.Event()
        self.cancelled = threading.Event()
        self._done = threading.Event()
        self._synced = 0.0
        self._sync_lock = threading.Lock()
        self._last_ok = time.monotonic()

    def run(self) -> None:
        while not self._done.wait(self.settings.heartbeat_s):
            self.beat()

    def beat(self) -> None:
        try:
            ours, cancel = heartbeat(self.db, self.claim, self.settings.lease_s)
        except Exception:  # a database hiccup: the lease covers a few missed beats
            log.exception("heartbeat of job %s failed", self.claim.job_id)
            if time.monotonic() - self._last_ok >= self.settings.lease_s:
                # The lease has run out unrenewed: another worker may hold the job now, so
                # this attempt must stop instead of training on (and spending) as a zombie.
                log.error("job %s: no heartbeat for a whole lease; stopping", self.claim.job_id)
                self.lost.set()
                self.stop_training.set()
            return
        self._last_ok = time.monotonic()
        if not ours:
            self.lost.set()
            self.stop_training.set()
            return
        if cancel:
            self.cancelled.set()
            self.stop_training.set()
        self.sync_checkpoint()

    def sync_checkpoint(self) -> None:
        with self._sync_lock:  # the training thread syncs too (checkpointed())
            try:
                mtime = self.checkpoint.stat().st_mtime
            except FileNotFoundError:
                return
            if mtime > self._synced:
                try:
                    self.storage.put_file(self.checkpoint, self.checkpoint_key)
                    self._synced = mtime
                except FileNotFoundError:  # replaced or removed while copying: next beat
                    pass

    def checkpointed(self) -> bool:
        """Whether a checkpoint of this job is in storage (copied now if it is only on disk):
        the attempt's releases are then safe from a retry measuring them again."""
        if not self._synced:
            self.sync_checkpoint()
        return bool(self._synced)

    def finish(self) -> None:
        self._done.set()
        self.join(timeout=30)

    def ensure_live(self) -> None:
        """Raise :class:`LeaseLost` unless this attempt still holds an unexpired lease."""
        if self.lost.is_set() or not lease_is_ours(self.db, self.claim):
            self.lost.set()
            raise LeaseLost(self.claim.job_id)


class LeaseLost(Exception):
    """This attempt no longer holds the job's lease: it must write and settle nothing."""


def _load_table(storage: Storage, dataset: Dataset, settings: Settings) -> Any:
    from synthgen.service.tables import read_upload, stored_options

    raw = storage.read_bytes(dataset.storage_key)
    return read_upload(raw, dataset.name, dataset.format, settings.read_limits,
                       stored_options(dataset.format, dataset.csv_options))


def _current_ledger(synth: Any, step: int | None = None) -> dict[str, Any] | None:
    """The synthesizer's ledger so far, with the DP-SGD entry at ``step`` steps."""
    if synth is None or synth.ledger is None:
        return None
    summary = ledger_summary(synth.ledger)
    entries = synth.ledger.entries
    if step is not None and entries and entries[-1].mechanism == "dp_sgd":
        summary["history"][-1][2] = max(int(summary["history"][-1][2]), step)
    return summary


def execute_job(job_id: str, owner: str, settings: Settings) -> str:
    """Claim and run one job. Returns what happened (for logs): a terminal state, 'lost'
    (another worker holds the job now) or 'not-claimed' (a duplicate delivery)."""
    import torch

    threads = settings.training_threads  # the same policy in both engines and the CLI
    torch.set_num_threads(threads)
    db = Database(settings.db_url)
    storage = Storage(settings.objects_url)
    try:
        sweep_scratch(db, settings.scratch_dir)  # folders of attempts killed on this machine
        claim = claim_job(db, job_id, owner, settings.lease_s)
        if claim is None:
            log.info("job %s: nothing to claim (duplicate delivery or finished)", job_id)
            return "not-claimed"
        return _run(db, storage, settings, claim, threads)
    finally:
        db.dispose()


def _run(db: Database, storage: Storage, settings: Settings, claim: Claim,
         threads: int) -> str:
    with db.read() as s:
        job = s.scalars(select(Job).where(Job.id == claim.job_id)).one()
        dataset = job_dataset(s, job)  # the version the job was accepted on
    scratch = settings.scratch_dir / f"{job.id}-{claim.attempt}"
    scratch.mkdir(parents=True, exist_ok=True)
    ckpt = scratch / "checkpoint.pt"
    ckpt_key = checkpoint_key(job)
    storage.get_file(ckpt_key, ckpt)  # resume where the last attempt's checkpoint left off
    beat = _Heartbeat(db, storage, claim, settings, ckpt, ckpt_key)
    beat.start()
    synth: Any = None
    progress: dict[str, Any] = {"step": 0}
    outcome = "lost"
    try:
        from synthgen.evaluate import plan_evaluation
        from synthgen.evaluate.holdout import public_split
        from synthgen.evaluate.job import evaluate_job
        from synthgen.schema import parse_schema
        from synthgen.synthesizer import Synthesizer

        options = job.options or {}
        # Built (its budget plan checked) before the table is read: a refused plan has read
        # nothing and is charged nothing.
        def build(ds: Dataset) -> Any:
            return Synthesizer(
                job.epsilon, job.delta,
                schema=parse_schema(ds.public_schema) if ds.public_schema else None,
                epochs=options.get("epochs"), batch_size=options.get("batch_size"),
                device=settings.device, seed=options.get("seed"),
                accountant=options.get("accountant", "prv"), threads=threads, progress=False)

        synth = build(dataset)
        # A dataset read from a source: the first attempt reads a snapshot (a new version when
        # the content changed; later attempts read the same one), its declared schema the
        # database's column types; a destination is checked before any budget is spent.
        snapshot = snapshot_for_job(db, storage, settings, job)
        column_types = None
        if snapshot is not None:
            job.dataset_version, column_types = snapshot
            with db.read() as s:
                dataset = job_dataset(s, job)
            synth = build(dataset)
        check_destination(db, settings, job)
        # The report's audit holds rows out of training. The split is decided before fit() and
        # is the same on every attempt (a secret seed of the job), so a resumed job trains on
        # the same rows its checkpoint was trained on.
        full = _load_table(storage, dataset, settings)
        plan = plan_evaluation(
            full, holdout_share=float(options.get("holdout_share", 0.1)),
            audit=bool(options.get("audit", True)), target=options.get("target"),
            seed=_split_seed(job))
        table = plan.training_table(full)

        resumed = storage.exists(ckpt_key)

        def on_progress(p: Any) -> None:
            # Nothing is published before the attempt's releases are checkpointed in storage
            # (the library writes a checkpoint before training starts): an attempt killed
            # before that has published nothing, and its retry measures again; once they are,
            # a retry resumes from them. Either way each release is published once.
            if not (resumed or beat.checkpointed()):
                return
            progress["step"] = p.step
            # What fit decided about the data, on the job from the first step on (the job
            # resource lists them while it runs; `synthgen remote jobs wait` prints them).
            told = {} if progress.get("warned") else {"warnings": [
                warning_record(w) for w in synth.info.get("warnings", [])]}
            # The per-step figure is an RDP upper bound of the PRV epsilon, which calibration
            # keeps under the target: the smaller of the two is still an upper bound.
            if record_progress(db, claim, step=p.step, total=p.total_steps, epoch=p.epoch,
                               epsilon=min(p.epsilon, job.epsilon),
                               ledger=_current_ledger(synth, p.step), **told):
                progress["warned"] = True

        with warnings.catch_warnings():
            # fit()'s warnings are DP outputs: the report carries them, a log line would be a
            # release of this attempt's
            warnings.simplefilter("ignore", SynthgenWarning)
            synth.fit(table, on_progress=on_progress, should_stop=beat.stop_training.is_set,
                      checkpoint_path=ckpt, checkpoint_every_s=settings.checkpoint_every_s)
        if beat.lost.is_set():
            return outcome
        report = synth.report()
        if plan.holdout is not None:  # what the guarantee covers; the split is not released
            report["split"] = public_split(plan.holdout.share)
        ledger = ledger_summary(synth.ledger)
        outputs = _Outputs(storage, job, claim.attempt, beat)
        if beat.cancelled.is_set() and not report["completed"]:
            outputs.write_json("report.json", report)
            outcome = "cancelled"
            settle(db, job.id, outcome, owner=claim.owner, ledger=ledger,
                   charged=float(report["epsilon"]), output_attempt=claim.attempt)
            return outcome
        sink = None
        if options.get("destination"):
            def sink(chunks: Any) -> None:
                beat.ensure_live()
                write_destination(db, settings, job, chunks, column_types)
        written = _write_outputs(outputs, job, dataset, synth, plan.held_out_share, report,
                                 scratch,
                                 evaluate=lambda doc, synthetic: evaluate_job(
                                     doc, plan, table, synthetic, seed=_split_seed(job)),
                                 sink=sink)
        outcome = "succeeded"
        if not settle(db, job.id, outcome, owner=claim.owner, ledger=ledger,
                      charged=float(report["epsilon"]), output_rows=written,
                      output_attempt=claim.attempt,
                      warnings=[warning_record(w) for w in report["warnings"]]):
            outcome = "lost"
        return outcome
    except Exception as exc:
        if beat.lost.is_set() or isinstance(exc, LeaseLost):
            return outcome
        code = exc.code if isinstance(exc, SynthgenError) else "training-failed"
        message = str(exc) if isinstance(exc, SynthgenError | ValueError) else (
            f"training failed: {type(exc).__name__}: {exc}")
        log.exception("job %s failed", job.id)
        known = _current_ledger(synth, progress["step"])
        if job.ledger and sgd_steps(job.ledger) > sgd_steps(known):
            known = job.ledger
        charged = min(ledger_epsilon(known), job.epsilon) if known and known["history"] else 0.0
        outcome = "failed"
        settle(db, job.id, outcome, owner=claim.owner, ledger=known, charged=charged,
               error=(code, message))
        return outcome
    finally:
        if outcome in ("succeeded", "failed", "cancelled"):
            apply_retention(db, storage, dataset.id, settings.retain_uploads)
        beat.finish()
        shutil.rmtree(scratch, ignore_errors=True)
        if outcome in ("succeeded", "failed", "cancelled"):
            storage.delete(ckpt_key)
            delete_seed_rows(storage, job)


class _Outputs:
    """Writes one attempt's outputs under its own keys, each only while its lease is live."""

    def __init__(self, storage: Storage, job: Job, attempt: int, beat: _Heartbeat) -> None:
        self.storage, self.job, self.attempt, self.beat = storage, job, attempt, beat

    def key(self, name: str) -> str:
        return Storage.attempt_key(self.job.tenant_id, self.job.id, self.attempt, name)

    def open(self, name: str, **kwargs: Any) -> Any:
        self.beat.ensure_live()
        return self.storage.open(self.key(name), "w", **kwargs)

    def put_file(self, local: Path, name: str) -> None:
        self.beat.ensure_live()
        self.storage.put_file(local, self.key(name))

    def write_json(self, name: str, doc: dict[str, Any]) -> None:
        with self.open(name, encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, default=str)


def _split_seed(job: Job) -> int:
    """The job's own seed, or its secret ``holdout_seed``: the same on every attempt, and never
    derived from the job id, which is public (a split anyone can recompute tells them which rows
    were held out of training)."""
    seed = (job.options or {}).get("seed")
    if seed is not None:
        return int(seed)
    return int(job.holdout_seed)


def _write_outputs(outputs: _Outputs, job: Job, dataset: Dataset, synth: Any,
                   held_out_share: float,
                   report: dict[str, Any], scratch: Path,
                   evaluate: Callable[[dict[str, Any], Any], Any],
                   sink: Callable[[Any], None] | None = None) -> int:
    import pandas as pd

    from synthgen.evaluate import keep_head
    from synthgen.evaluate.job import EVALUATION_ROWS
    from synthgen.io import escape_formulas, write_csv
    from synthgen.report import check_public, run_header

    options = job.options or {}
    seed_rows = None
    if options.get("seed_rows"):
        seed_rows = pd.DataFrame(json.loads(outputs.storage.read_bytes(seed_rows_key(job))))
    # default size: Synthesizer.default_rows, from the DP row count of the training rows and
    # the public holdout share (the rule of synthgen run too; the exact count is not public)
    rows = job.rows
    if rows is None and seed_rows is None:
        rows = synth.default_rows(held_out_share)
    # checked before the output is opened: a condition the model cannot honour writes nothing
    asked = synth.sample_chunks(rows, conditions=options.get("conditions"),
                                rebalance=options.get("rebalance"), seed_rows=seed_rows)
    with outputs.open("synthetic.csv", encoding="utf-8", newline="") as fh:
        chunks, kept = keep_head(asked, EVALUATION_ROWS)
        if sink is None:
            written = write_csv(chunks, fh)
        else:
            # one pass: the destination pulls each chunk after it is written to the CSV, so
            # neither output holds more than a chunk (the destination commits at the end)
            count = [0]

            def through_csv(chunks: Any) -> Any:
                for i, chunk in enumerate(chunks):
                    escape_formulas(chunk).to_csv(fh, index=False, header=(i == 0))
                    count[0] += len(chunk)
                    yield chunk

            sink(through_csv(chunks))
            written = count[0]
    delete_seed_rows(outputs.storage, job)  # used: kept no longer than needed (also at the end)
    report["output_rows"] = written
    if synth.sampling:
        report["sampling"] = synth.sampling
    # The owner-only evaluation (quality, audit) of the rows just released: its own file.
    evaluation = evaluate(report, pd.concat(kept, ignore_index=True) if kept else pd.DataFrame())
    outputs.write_json("evaluation.json", evaluation)
    model = scratch / "model.zip"
    synth.save(model)
    outputs.put_file(model, "model.zip")
    report["run"] = run_header(dataset.name, job_id=job.id)
    check_public(report)
    outputs.write_json("report.json", report)
    return written
